"""Room on the local disk for downloads: how much is free under a sync folder, the check a
download makes before its first byte, and the one error that says the disk is full.

Both a refusal up front and a disk that fills up midway become :class:`DiskFullError`,
which the folder turns into a per-file ``disk-full`` issue that is tried again by itself.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

# Left free beyond the file itself: the file system's own bookkeeping for the new blocks,
# and room for other programs' small writes (a full disk breaks more than Dropline).
HEADROOM = 1024 * 1024

# errno values that mean "no room": the disk is full, or the user's quota is used up.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFullError(OSError):
    """Not enough free space for a download. Nothing in the folder was replaced and no
    partial file is left behind. Retryable: once space is freed it goes through."""

    retryable = True
    hint = (
        "Free up space on that disk (empty the trash, move away files you no longer need). "
        "The download is tried again by itself; nothing in the folder was replaced."
    )

    def __init__(self, path: str, needed: int, free: int) -> None:
        super().__init__(errno.ENOSPC, "not enough free space", path)
        self.needed = needed
        self.free = free

    def __str__(self) -> str:  # what the history window shows for the failed try
        return self.message

    @property
    def message(self) -> str:
        return (
            f"Not enough free space to download this file: it needs {size_text(self.needed)}, "
            f"and the disk of the sync folder has {size_text(self.free)} free."
        )


def free_bytes(path: Path) -> int:
    """Bytes an ordinary user may still write on the file system holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def no_room(exc: BaseException) -> bool:
    """True when ``exc`` (or what it was raised from) is the disk or quota being full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _NO_ROOM:
            return True
        current = current.__cause__ or current.__context__
    return False


def ensure_room(where: Path, rel: str, needed: int) -> None:
    """Raise :class:`DiskFullError` unless ``needed`` bytes (and the headroom) fit under
    ``where``. A file system that cannot tell (statvfs fails) is given the benefit of the
    doubt: a full disk then shows up as ENOSPC while writing."""
    try:
        free = free_bytes(where)
    except OSError:
        return
    if needed + HEADROOM > free:
        raise DiskFullError(rel, needed, free)


def size_text(n: int) -> str:
    """A size as a person reads it: ``0 B``, ``512 KB``, ``23.8 MB`` (powers of 1024, as
    file managers show free space)."""
    value = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit in ("B", "KB") else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TB"
