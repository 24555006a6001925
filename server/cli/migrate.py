"""``dropline-server migrate``: apply the schema migrations (Alembic revisions) now and
say which; ``--check`` says whether any are pending; ``--sql`` prints the SQL for a DBA
to review instead, without connecting. Run it once before rolling nodes onto a new
release (``serve`` applies pending ones at start too, under the same lock)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from dropline.server.cli._common import CliError, add_data_dir, say, settings
from dropline.server.storage.db import Database
from dropline.server.storage.lock import DataDirLock
from dropline.server.storage.migrations import NAMES, applied, migrate, offline_sql, pending

if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[argparse.ArgumentParser]


def register(sub: Sub) -> None:
    p = sub.add_parser("migrate", help="apply pending schema migrations and list them")
    add_data_dir(p)
    what = p.add_mutually_exclusive_group()
    what.add_argument(
        "--check",
        action="store_true",
        help="apply nothing; exit 1 if migrations are pending (listing them), 0 if none",
    )
    what.add_argument(
        "--sql",
        action="store_true",
        help="print the upgrade's SQL for the configured database's kind, without connecting",
    )
    p.add_argument(
        "--from",
        dest="start",
        metavar="MIGRATION",
        help="with --sql: the migration the database is at (default: a new, empty database)",
    )
    p.set_defaults(func=run, services=False)


def _count(n: int) -> str:
    return f"{n} migration{'' if n == 1 else 's'}"


def run(args: argparse.Namespace) -> int:
    s = settings(args)
    if args.start and not args.sql:
        raise CliError("--from goes with --sql")
    if args.sql:
        try:
            sys.stdout.write(offline_sql(s.database_url, args.start))
        except ValueError as exc:
            raise CliError(str(exc)) from exc
        return 0
    embedded = s.database_url.startswith("sqlite")
    if embedded:
        s.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(s.database_url)
    try:
        todo = pending(db)  # refuses a newer database before anything else
        if args.check:
            if todo:
                say(f"{_count(len(todo))} pending: {', '.join(todo)}")
                return 1
            say(f"the database is up to date ({_count(len(NAMES))} applied)")
            return 0
        if not todo:
            say(f"the database is up to date ({_count(len(applied(db)))} applied)")
            return 0
        if embedded:
            # A server running older code must not see its schema change under it.
            with DataDirLock(s.data_dir, "migrate"):
                done = migrate(db)
        else:
            # A shared database: nodes starting now wait on the advisory lock migrate
            # takes, and find nothing left to do.
            done = migrate(db)
    finally:
        db.dispose()
    for name in done:
        say(f"applied {name}")
    say(f"{_count(len(done))} applied; the database is up to date")
    return 0
