"""The journal's schema as small named migrations, applied in order, each in one
transaction together with its own "applied" record (the sqlite-utils habit).

Append new migrations at the end; never edit one that has shipped. The runner is a
dozen lines of our own rather than the ``sqlite-migrate`` plugin because that
plugin commits through ``with db.conn`` and we need each step in our explicit
``BEGIN IMMEDIATE`` transaction.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import sqlite_utils

log = logging.getLogger(__name__)

Migration = Callable[[sqlite_utils.Database], None]


def m001_base_and_queue(db: sqlite_utils.Database) -> None:
    db.table("folders").create(
        {"id": int, "local": str, "remote": str, "cursor": str, "added_at": float},
        pk="id",
        not_null={"local", "remote"},
    )
    db.table("folders").create_index(["local"], unique=True)
    db.table("base").create(
        {
            "folder_id": int,
            "path": str,
            "parent": str,
            "is_dir": int,
            "size": int,
            "mtime_ns": int,
            "inode": int,
            "sha256": str,
            "remote_id": str,
            "rev": str,
        },
        pk=("folder_id", "path"),
        not_null={"folder_id", "path", "parent", "is_dir", "remote_id", "rev"},
    )
    db.table("base").create_index(["folder_id", "parent"])
    db.table("base").create_index(["folder_id", "remote_id"])
    # Work not done yet: a path to look at again, from the disk ('local') or the feed
    # ('remote', with the server's state of that path as JSON, 'null' when gone).
    db.table("queue").create(
        {"folder_id": int, "path": str, "source": str, "remote": str, "added_at": float},
        pk=("folder_id", "path", "source"),
        not_null={"folder_id", "path", "source", "added_at"},
    )


def m002_transfers(db: sqlite_utils.Database) -> None:
    db.table("transfers").create(
        {
            "folder_id": int,
            "path": str,
            "direction": str,
            "url": str,  # tus upload URL
            "partial": str,  # partial download file key
            "sha256": str,  # the hash the finished transfer must have
            "size": int,
            "mtime_ns": int,
            "inode": int,
            "remote_id": str,
            "rev": str,
            "updated_at": float,
        },
        pk=("folder_id", "path", "direction"),
        not_null={"folder_id", "path", "direction", "updated_at"},
    )


def m003_issues_and_history(db: sqlite_utils.Database) -> None:
    db.table("issues").create(
        {
            "id": int,
            "folder_id": int,
            "path": str,
            "kind": str,
            "message": str,
            "hint": str,
            "since": float,
            "retry_at": float,
            "attempts": int,
            "related": str,
        },
        pk="id",
        not_null={"folder_id", "path", "kind", "message", "hint", "since", "attempts"},
    )
    db.table("issues").create_index(["folder_id", "path", "kind"], unique=True)
    db.table("history").create(
        {
            "id": int,
            "time": float,
            "folder": str,
            "path": str,
            "direction": str,
            "size": int,
            "duration": float,
            "result": str,
            "error": str,
        },
        pk="id",
        not_null={"time", "folder", "path", "direction", "size", "duration", "result"},
    )
    db.table("history").create_index(["time"])


def m004_queue_order(db: sqlite_utils.Database) -> None:
    # Rounds take the oldest queued work first.
    db.table("queue").create_index(["folder_id", "added_at"])


MIGRATIONS: list[tuple[str, Migration]] = [
    ("001_base_and_queue", m001_base_and_queue),
    ("002_transfers", m002_transfers),
    ("003_issues_and_history", m003_issues_and_history),
    ("004_queue_order", m004_queue_order),
]


def migrate(
    db: sqlite_utils.Database, migrations: list[tuple[str, Migration]] | None = None
) -> list[str]:
    """Apply every migration not applied yet; returns the names applied now.

    The connection must be in autocommit mode (``isolation_level=None``): each
    migration runs inside its own ``BEGIN IMMEDIATE ... COMMIT``.
    """
    conn = db.conn
    conn.execute(
        "CREATE TABLE IF NOT EXISTS journal_migrations (name TEXT PRIMARY KEY, applied_at REAL)"
    )
    done: list[str] = []
    for name, fn in MIGRATIONS if migrations is None else migrations:
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM journal_migrations WHERE name = ?", (name,)).fetchone():
                conn.execute("COMMIT")
                continue
            fn(db)
            conn.execute(
                "INSERT INTO journal_migrations (name, applied_at) VALUES (?, ?)",
                (name, time.time()),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        done.append(name)
        log.info("journal: applied migration %s", name)
    return done
