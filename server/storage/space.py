"""Running out of space: which errors mean a full disk (the blob and upload directories',
or the database's), and the ``insufficient-storage`` problem (507) they become."""

from __future__ import annotations

import errno

from dropline.server.problems import Problem

_OUT_OF_SPACE = {errno.ENOSPC, errno.EDQUOT}
_SQLITE_FULL = "database or disk is full"  # SQLITE_FULL's message, as sqlite3 words it


def out_of_space(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the disk or a quota is full."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _OUT_OF_SPACE:
            return True
        if _SQLITE_FULL in str(current):
            return True
        # SQLAlchemy keeps the driver's error in .orig; Python keeps causes in __cause__.
        current = getattr(current, "orig", None) or current.__cause__ or current.__context__
    return False


def insufficient_storage(
    what: str, then: str = "resume the upload where it is once space is freed"
) -> Problem:
    """The 507 answer when ``what`` ("the chunk", "the file") could not be stored."""
    return Problem(
        "insufficient-storage",
        f"the server's storage is full, so {what} was not kept and nothing was published; {then}",
    )


__all__ = ["insufficient_storage", "out_of_space"]
