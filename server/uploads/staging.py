"""The staged bytes of an upload on disk: vectored writes hashed as they are written,
truncation, and rebuilding a running hash after a restart. Runs in worker threads,
never on the event loop."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REHASH_READ = 4 * 1024 * 1024


def feed(hashers: Sequence[Any], data: Sequence[bytes]) -> None:
    for hasher in hashers:
        for piece in data:
            hasher.update(piece)


class StagedFile:
    """The staged file of one upload."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = -1

    def write(
        self, data: Sequence[bytes], offset: int, hashers: Sequence[Any], final: bool
    ) -> None:
        """Write ``data`` (the received chunks, not joined: no copy on the event loop)
        at ``offset`` with one vectored write, feed every hasher, fsync if ``final``.

        The hashers are fed one after the other: hashing a chunk's checksum in a second
        thread meanwhile was measured and gained nothing (the write and the event loop's
        receiving set the pace, not the hashing).
        """
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        if data:
            total = sum(len(d) for d in data)
            done = os.pwritev(self.fd, data, offset)
            if done < total:  # a short write (full disk, signal): finish piece by piece
                rest = memoryview(b"".join(data))[done:]
                while rest:
                    n = os.pwrite(self.fd, rest, offset + done)
                    rest = rest[n:]
                    done += n
            feed(hashers, data)
        if final:
            os.fsync(self.fd)

    def truncate(self, size: int) -> None:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.ftruncate(self.fd, size)
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def create_empty(path: Path) -> None:
    """The empty, durable staged file of an upload created without bytes."""
    staged = StagedFile(path)
    try:
        staged.write([], 0, (), True)
    finally:
        staged.close()  # a raw descriptor: nothing else would ever close it


def rehash_staged(path: Path, offset: int) -> Any:
    """Rebuild the running SHA-256 of the first ``offset`` staged bytes (after a restart).

    Bytes past ``offset`` were never recorded as received, so they are cut off.
    """
    hasher = hashlib.sha256()
    with path.open("r+b") as handle:
        handle.truncate(offset)
        os.fsync(handle.fileno())
        handle.seek(0)
        remaining = offset
        while remaining > 0:
            chunk = handle.read(min(REHASH_READ, remaining))
            if not chunk:
                raise OSError(f"staged upload {path.name} is shorter than its recorded offset")
            hasher.update(chunk)
            remaining -= len(chunk)
    return hasher


def remove_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
