"""Putting downloaded bytes on disk: vectored writes hashed as they go, write-back started
as each batch lands (so the one fsync at the end has little left to do), and the durable
rename into place.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
from collections.abc import Callable
from pathlib import Path

IOV_MAX = 512  # buffers per writev; POSIX guarantees at least 16, Linux allows 1024
SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start write-out of dirty pages, do not wait


def _sync_file_range() -> Callable[[int, int, int], int] | None:
    """Linux's ``sync_file_range`` (Python's ``os`` lacks it), or None elsewhere."""
    if not hasattr(os, "sched_getaffinity"):  # not Linux
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> int:
        # A hint only: if it fails, the final fsync writes everything, as it would anyway.
        return int(call(fd, offset, length, SYNC_FILE_RANGE_WRITE))

    return start


start_writeback = _sync_file_range()


class HashingWriter:
    """Appends batches of bytes to an open file at ``offset`` on, feeding ``digest``.

    Each batch goes to the kernel as it arrived (``writev``: no copy into one buffer), and
    its write-out to the disk starts at once: without that, a 1 GiB download left the whole
    GiB dirty in the page cache for the final fsync to write while the caller waited
    (about 0.5 s here); with it the disk works while later batches arrive.
    """

    def __init__(self, fd: int, offset: int, digest: hashlib._Hash) -> None:
        self.fd = fd
        self.offset = offset
        self.digest = digest

    def write(self, chunks: list[bytes]) -> None:
        """Hash and write one batch (in a worker thread: hashlib and writev release the GIL)."""
        start = self.offset
        for chunk in chunks:
            self.digest.update(chunk)
        pending = [memoryview(c) for c in chunks]
        while pending:
            written = os.writev(self.fd, pending[:IOV_MAX])
            self.offset += written
            while written and pending:
                if written >= len(pending[0]):
                    written -= len(pending[0])
                    pending.pop(0)
                else:
                    pending[0] = pending[0][written:]
                    written = 0
        if start_writeback is not None and self.offset > start:
            start_writeback(self.fd, start, self.offset - start)

    def sync(self) -> None:
        os.fsync(self.fd)


def atomic_replace(partial: Path, dest: Path) -> None:
    os.replace(partial, dest)
    fsync_dir(dest.parent)


def fsync_dir(directory: Path) -> None:
    # Makes the rename durable; some platforms cannot open a directory, which is fine.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


__all__ = ["HashingWriter", "atomic_replace", "fsync_dir"]
