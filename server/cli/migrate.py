"""``dropline-server migrate``: apply the schema migrations now and say which, for
operators who upgrade in steps (``serve`` applies them at start as well)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from dropline.server.cli._common import add_data_dir, say, settings
from dropline.server.storage.db import Database
from dropline.server.storage.lock import DataDirLock
from dropline.server.storage.migrations import applied, migrate, pending

if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[argparse.ArgumentParser]


def register(sub: Sub) -> None:
    p = sub.add_parser("migrate", help="apply pending schema migrations and list them")
    add_data_dir(p)
    p.set_defaults(func=run, services=False)


def _count(n: int) -> str:
    return f"{n} migration{'' if n == 1 else 's'}"


def run(args: argparse.Namespace) -> int:
    s = settings(args)
    s.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(s.database_url)
    try:
        if not pending(db):  # refuses a newer database before anything else
            say(f"the database is up to date ({_count(len(applied(db)))} applied)")
            return 0
        # A server running older code must not see its schema change under it.
        with DataDirLock(s.data_dir, "migrate"):
            done = migrate(db)
    finally:
        db.dispose()
    for name in done:
        say(f"applied {name}")
    say(f"{_count(len(done))} applied; the database is up to date")
    return 0
