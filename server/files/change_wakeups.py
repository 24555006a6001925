"""Long-poll wake-ups across nodes on PostgreSQL: each write that records changes sends
``NOTIFY dropline_changes, '<space id>'`` in its own transaction, and each node keeps one
``LISTEN`` connection that hands every notification to its own :class:`ChangeNotifier`.

LISTEN/NOTIFY because the nodes already share the database: no second service (Redis,
a message bus) to run, secure and keep up. PostgreSQL delivers a notification only when
its transaction commits, so a woken long-poll always finds the change it was woken for;
one notification per space and transaction is enough, as waiters re-read the database.
On SQLite (one process) none of this runs: the local notifier already sees every write.

A node hears its own notifications too, so its own waiters of that space wake a second
time, re-read and find nothing new (one query each). Left so: telling its own
notifications apart would mean tracking the backend pid of every pooled connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import psycopg
from sqlalchemy import Connection, text

from dropline.server.files.changes import ChangeNotifier
from dropline.server.files.records import Change, FileHook
from dropline.server.identity.accounts import Principal
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)

CHANNEL = "dropline_changes"
# How the listener shows in pg_stat_activity (an operator's query, and the tests').
APPLICATION_NAME = "dropline-change-wakeups"
FIRST_RETRY_SECONDS = 0.1
MAX_RETRY_SECONDS = 5.0

_NOTIFY = text(f"SELECT pg_notify('{CHANNEL}', :space_id)")
# conn.info key: the transaction (or savepoint) that last notified, and the spaces it did.
_SENT = "dropline.change_wakeups.sent"


class ChangeBroadcast:
    """A file hook that notifies the other nodes of each space a write transaction changed.

    Sent once per space and (sub)transaction: a savepoint rolled back takes its NOTIFY
    with it, so the next change after it is sent again.
    """

    def check(self, principal: Principal, action: str, path: str, size: int | None) -> None:
        return None

    def hides(self, principal: Principal, path: str) -> bool:
        return False

    def recorded(self, conn: Connection, principal: Principal, change: Change) -> None:
        transaction = conn.get_nested_transaction() or conn.get_transaction()
        sent: tuple[object, set[str]] | None = conn.info.get(_SENT)
        if sent is None or sent[0] is not transaction:
            sent = (transaction, set())
            conn.info[_SENT] = sent
        if principal.space_id not in sent[1]:
            conn.execute(_NOTIFY, {"space_id": principal.space_id})
            sent[1].add(principal.space_id)

    def recorded_many(
        self, conn: Connection, principal: Principal, changes: Sequence[Change]
    ) -> bool:
        if changes:
            self.recorded(conn, principal, changes[0])
        return True

    def undone(
        self, conn: Connection, principal: Principal, action: str, path: str, detail: dict[str, Any]
    ) -> None:
        return None


class ChangeListener:
    """This node's one LISTEN connection, fanning notifications out to its waiters.

    Runs as a task on the server's event loop, so shutdown cancels it at once. A dropped
    connection is opened again with backoff; after every (re)connect all local waiters
    are woken once, since a notification sent while nobody listened is lost: they re-read
    the database and so miss nothing.
    """

    def __init__(self, db: Database, notifier: ChangeNotifier) -> None:
        self.notifier = notifier
        _args, params = db.engine.dialect.create_connect_args(db.engine.url)
        params.pop("context", None)  # the engine's type adapters: nothing to adapt here
        params.setdefault("application_name", APPLICATION_NAME)
        self._params: dict[str, Any] = {**params, "autocommit": True}
        self.connected = asyncio.Event()

    async def run(self) -> None:
        """Listen until cancelled."""
        delay = FIRST_RETRY_SECONDS
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(**self._params)
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    self.connected.set()
                    delay = FIRST_RETRY_SECONDS
                    self.notifier.wake_all()
                    async for note in conn.notifies():
                        self.notifier.notify(note.payload)
            except (psycopg.Error, OSError) as exc:
                log.warning(
                    "listening for other nodes' changes failed (%s); retrying in %.1f s",
                    type(exc).__name__,
                    delay,
                )
            finally:
                self.connected.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_SECONDS)


def wire(db: Database, notifier: ChangeNotifier, hooks: list[FileHook]) -> ChangeListener | None:
    """On PostgreSQL, add the broadcast hook to the file service's ``hooks`` and return the
    listener to run with the server; on SQLite, nothing (``None``)."""
    if not db.is_postgres:
        return None
    hooks.append(ChangeBroadcast())
    return ChangeListener(db, notifier)


__all__ = ["APPLICATION_NAME", "CHANNEL", "ChangeBroadcast", "ChangeListener", "wire"]
