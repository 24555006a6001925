"""The change feed under concurrent writers on several nodes: a reader polling all the
while sees every change exactly once, in order, even when transactions that took their
sequence number early commit late (PostgreSQL: the writer lock in storage.db)."""

from __future__ import annotations

import random
import threading
import time
import uuid
from pathlib import Path

from dropline.server.files.changes import ChangeFeed, ChangeNotifier
from dropline.server.files.records import FOLDER, Entry
from dropline.server.files.rows import EntryRows
from dropline.server.identity.accounts import Principal
from dropline.server.storage import schema
from dropline.server.storage.db import Database
from dropline.server.storage.migrations import migrate
from tests.support.postgres import PostgresCluster

NODES = 3
WRITERS_PER_NODE = 2
CHANGES_PER_WRITER = 30


def _principal() -> Principal:
    return Principal(
        tenant_id="t1",
        user_id="u1",
        credential_id="k1",
        kind="api_key",
        scopes=frozenset({"files:read", "files:write"}),
    )


def _write_changes(db: Database, principal: Principal, errors: list[BaseException]) -> None:
    rows = EntryRows([])
    rng = random.Random()
    try:
        for _ in range(CHANGES_PER_WRITER):
            with db.write() as conn:
                entry = Entry(
                    id=str(uuid.uuid4()),
                    name="f",
                    path=f"/f-{uuid.uuid4().hex[:8]}",
                    type=FOLDER,
                    size=0,
                    sha256=None,
                    rev="1",
                    mtime=None,
                    parent_id=None,
                )
                rows.record(conn, principal, "created", entry, time.time())
                # Hold the transaction open after the change row took its number, so
                # without ordering later numbers would commit before this one.
                time.sleep(rng.uniform(0, 0.004))
    except BaseException as exc:  # reported by the test, not lost in the thread
        errors.append(exc)


def _run(url: str) -> None:
    first = Database(url)
    migrate(first)
    nodes = [first, *(Database(url) for _ in range(NODES - 1))]
    reader_db = Database(url)
    principal = _principal()
    feed = ChangeFeed(reader_db, ChangeNotifier(), retention_seconds=86400, max_wait=1)
    errors: list[BaseException] = []
    writers = [
        threading.Thread(target=_write_changes, args=(db, principal, errors))
        for db in nodes
        for _ in range(WRITERS_PER_NODE)
    ]
    seen: list[int] = []
    cursor: str | None = None
    try:
        for thread in writers:
            thread.start()
        while any(t.is_alive() for t in writers):
            page = feed.page(principal, cursor, limit=7)
            seen += [c.seq for c in page.changes]
            cursor = page.cursor
        for thread in writers:
            thread.join()
        while True:  # what committed after the last poll of the loop
            page = feed.page(principal, cursor, limit=50)
            if not page.changes:
                break
            seen += [c.seq for c in page.changes]
            cursor = page.cursor
        assert not errors, errors
        with reader_db.read() as conn:
            committed = [r.seq for r in conn.execute(schema.changes.select()).all()]
    finally:
        for db in [*nodes, reader_db]:
            db.dispose()
    assert len(committed) == NODES * WRITERS_PER_NODE * CHANGES_PER_WRITER
    assert seen == sorted(committed), "the reader skipped or repeated a change"


def test_concurrent_writers_on_postgres_never_hide_a_change(
    postgres_cluster: PostgresCluster,
) -> None:
    with postgres_cluster.fresh_database() as url:
        _run(url)


def test_concurrent_writers_on_sqlite_never_hide_a_change(tmp_path: Path) -> None:
    _run(f"sqlite:///{tmp_path / 'feed.db'}")
