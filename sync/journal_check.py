"""The journal's health at open: an integrity check, and a damaged journal set aside
(kept for support, named with the date) so a new one can start in its place.

What counts as damage: SQLite finding the file is not a database, or its pages
malformed (``SQLITE_NOTADB``, ``SQLITE_CORRUPT``), or ``PRAGMA quick_check`` reporting
anything but "ok". A journal that is merely busy, unreadable for its permissions or on
a failing disk is not damage: that error goes up unchanged, and nothing is moved.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

_MOST_FINDINGS = 5  # enough to say what is wrong in the log; the check stops there
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26
# SQLite keeps these beside the database; a stale write-ahead log must never meet a
# new database of the same name (it would be replayed into it).
_COMPANIONS = ("-wal", "-shm", "-journal")


def is_damage(exc: sqlite3.Error) -> bool:
    """True when SQLite says the file itself is broken (not busy, not unreadable)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def check(conn: sqlite3.Connection) -> str | None:
    """What ``PRAGMA quick_check`` found wrong (None: nothing). Quick rather than the full
    integrity check: it reads every page but skips the index-against-table comparison,
    so a journal of 100,000 files is checked in a fraction of a second at each start."""
    rows = conn.execute(f"PRAGMA quick_check({_MOST_FINDINGS})").fetchall()
    found = [line for r in rows if r and r[0] != "ok" for line in str(r[0]).splitlines()]
    return "; ".join(found)[:500] if found else None


def open_sound(
    path: Path, connect: Callable[[Path], sqlite3.Connection]
) -> tuple[sqlite3.Connection, Path | None]:
    """Open the journal at ``path`` with ``connect`` and check it. A damaged one is set
    aside and a new, empty one opened in its place; returns the connection and where
    the damaged journal now lies (None when it was sound)."""
    problem: str | None
    conn: sqlite3.Connection | None = None
    try:
        conn = connect(path)
        problem = check(conn)
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            if conn is not None:
                conn.close()
            raise
        problem = str(exc)
    if problem is None:
        assert conn is not None
        return conn, None
    if conn is not None:
        conn.close()
    aside = set_aside(path)
    log.error(
        "the journal %s failed its integrity check (%s); it was kept as %s and a new one "
        "is rebuilt from the server and the disk",
        path,
        problem,
        aside,
    )
    return connect(path), aside


def set_aside(path: Path, now: float | None = None) -> Path:
    """Rename the journal (and its companion files) to ``NAME-damaged-DATE-TIME.EXT``,
    never over an earlier one; returns the new name of the journal itself."""
    stamp = time.strftime("%Y-%m-%d-%H%M%S", time.localtime(now))
    n = 1
    while True:
        suffix = "" if n == 1 else f"-{n}"
        target = path.with_name(f"{path.stem}-damaged-{stamp}{suffix}{path.suffix}")
        taken = [Path(f"{target}{c}") for c in ("", *_COMPANIONS)]
        if not any(os.path.lexists(t) for t in taken):
            break
        n += 1
    for companion in _COMPANIONS:
        src = Path(f"{path}{companion}")
        if os.path.lexists(src):
            os.rename(src, Path(f"{target}{companion}"))
    if os.path.lexists(path):
        os.rename(path, target)
    return target
