"""Starting the write-out of freshly written file bytes to the disk without waiting for it
(Linux's ``sync_file_range``), so a later fsync has little left to write."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from collections.abc import Callable

log = logging.getLogger(__name__)

SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start write-out of dirty pages, do not wait


def _sync_file_range() -> Callable[[int, int, int], None]:
    """Linux's ``sync_file_range`` (Python's ``os`` lacks it); elsewhere a no-op, and the
    fsync that follows writes everything, as it would anyway."""
    if not hasattr(os, "sched_getaffinity"):  # not Linux
        return lambda _fd, _offset, _length: None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return lambda _fd, _offset, _length: None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    call.restype = ctypes.c_int

    def start(fd: int, offset: int, length: int) -> None:
        # A hint: a failure only means the fsync at the end does all the writing.
        if length > 0 and call(fd, offset, length, SYNC_FILE_RANGE_WRITE) != 0:
            log.debug("sync_file_range failed: errno %d", ctypes.get_errno())

    return start


start_writeback = _sync_file_range()

__all__ = ["start_writeback"]
