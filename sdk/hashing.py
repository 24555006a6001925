"""SHA-256 of files and streams, with large reads so hashing runs near memory speed."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

READ_SIZE = 4 * 1024 * 1024


def sha256_file(
    path: str | os.PathLike[str],
    *,
    on_bytes: Callable[[int], None] | None = None,
) -> str:
    """Hex SHA-256 of a whole file. ``on_bytes`` is told how many bytes each read hashed."""
    digest = hashlib.sha256()
    buf = bytearray(READ_SIZE)
    view = memoryview(buf)
    with Path(path).open("rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
            if on_bytes is not None:
                on_bytes(n)
    return digest.hexdigest()


def sha256_prefix(path: str | os.PathLike[str], length: int) -> hashlib._Hash:
    """A running SHA-256 over the first ``length`` bytes, to continue a resumed transfer."""
    digest = hashlib.sha256()
    remaining = length
    with Path(path).open("rb", buffering=0) as fh:
        while remaining > 0:
            chunk = fh.read(min(READ_SIZE, remaining))
            if not chunk:
                raise OSError(f"{path} is shorter than {length} bytes")
            digest.update(chunk)
            remaining -= len(chunk)
    return digest
