"""The change feed: paging by cursor, long-poll wake-ups, and retention pruning.

A cursor is the last sequence number a client has seen. Long-polls sleep on an
in-process :class:`ChangeNotifier` that the write path wakes after each commit (and,
on PostgreSQL, other nodes' writes through ``change_wakeups``); they never poll the
database in a loop. Pruning keeps a per-space floor, and a
cursor below it has lost changes: 410 ``cursor-expired`` tells the client to rescan.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from sqlalchemy import Row, delete, func, select, update

from dropline.server.files.records import Change, Entry
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.storage import schema
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)

C = schema.changes
F = schema.change_floors

MAX_CURSOR_DIGITS = 19
# The long-polls one change wakes mostly hold the same cursor: those asking for a page
# within this long of the first share one read of it (PostgreSQL: 1,000 long-polls woken
# at once made 1,000 queries, and their answers took up to 2.2 s).
GATHER_SECONDS = 0.005


class ChangeNotifier:
    """Wakes long-polls of one space; :meth:`notify` may be called from any thread."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._lock = threading.Lock()
        self.closed = False

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def register(self, space_id: str) -> asyncio.Future[None]:
        """A future completed by the next change in ``space_id``. Register before reading,
        so a change committed between the read and the wait still wakes the waiter."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._waiters.setdefault(space_id, set()).add(future)
        return future

    def unregister(self, space_id: str, future: asyncio.Future[None]) -> None:
        with self._lock:
            waiters = self._waiters.get(space_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._waiters[space_id]

    def notify(self, space_id: str) -> None:
        with self._lock:
            if space_id not in self._waiters:
                return  # nobody is waiting: no wake-up scheduled at all
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._wake, space_id)

    def waiting(self) -> int:
        """How many long-polls are waiting right now, over all spaces."""
        with self._lock:
            return sum(len(waiters) for waiters in self._waiters.values())

    def wake_all(self) -> None:
        """Wake every waiter of every space (they re-read, so a spurious wake costs one
        read): for when changes may have been missed, such as another node's while the
        cross-node listener was reconnecting. Any thread."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with self._lock:
            spaces = list(self._waiters)
        for space_id in spaces:
            loop.call_soon_threadsafe(self._wake, space_id)

    def close(self) -> None:
        """Server shutdown: wake every long-poll now, so it answers instead of holding
        the shutdown for up to its whole timeout; clients simply poll again."""
        self.closed = True
        with self._lock:
            spaces = list(self._waiters)
        for space_id in spaces:
            self._wake(space_id)

    def _wake(self, space_id: str) -> None:
        with self._lock:
            waiters = self._waiters.pop(space_id, set())
        for future in waiters:
            if not future.done():
                future.set_result(None)


@dataclass(frozen=True, slots=True)
class ChangePage:
    changes: list[Change]
    cursor: str
    has_more: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "changes": [c.to_json() for c in self.changes],
            "cursor": self.cursor,
            "has_more": self.has_more,
        }


def parse_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    if not cursor.isascii() or not cursor.isdigit() or len(cursor) > MAX_CURSOR_DIGITS:
        raise Problem("bad-request", "the change cursor is malformed")
    return int(cursor)


def _change_from_row(row: Row[Any]) -> Change:
    m = row._mapping
    path: str = m["path"]
    entry = Entry(
        id=m["entry_id"],
        name=path.rpartition("/")[2],
        path=path,
        type=m["type"],
        size=int(m["size"] or 0),
        sha256=m["sha256"],
        rev=m["rev"],
        mtime=m["mtime"],
        parent_id=m["parent_id"],
    )
    return Change(seq=int(m["seq"]), action=m["action"], old_path=m["old_path"], entry=entry)


PageKey = tuple[str, str, str | None, int]  # tenant, space, cursor, limit


class SharedPageReads:
    """Reads of a page of the feed, each shared by every long-poll asking for that page
    before the read starts. Only a read not yet started is joined: one under way may
    have begun before the change a joiner was woken for committed."""

    def __init__(self, read: Callable[[Principal, str | None, int], ChangePage]) -> None:
        self._read = read
        self._gathering: dict[PageKey, asyncio.Future[ChangePage]] = {}
        self._running: set[asyncio.Future[ChangePage]] = set()  # strong refs until done

    async def page(self, principal: Principal, cursor: str | None, limit: int) -> ChangePage:
        key = (principal.tenant_id, principal.space_id, cursor, limit)
        shared = self._gathering.get(key)
        if shared is None:
            loop = asyncio.get_running_loop()
            shared = loop.create_future()
            # Retrieved here, so an error nobody awaits any more is not reported as lost.
            shared.add_done_callback(lambda done: done.cancelled() or done.exception())
            self._gathering[key] = shared
            loop.call_later(GATHER_SECONDS, self._start, key, principal, cursor, limit)
        # Shielded: a long-poll whose client went away must not cancel the others' read.
        return await asyncio.shield(shared)

    def _start(self, key: PageKey, principal: Principal, cursor: str | None, limit: int) -> None:
        shared = self._gathering.pop(key)
        reading = asyncio.ensure_future(
            anyio.to_thread.run_sync(self._read, principal, cursor, limit)
        )
        self._running.add(reading)
        reading.add_done_callback(self._running.discard)
        reading.add_done_callback(functools.partial(_settle, shared))


def _settle(shared: asyncio.Future[ChangePage], reading: asyncio.Future[ChangePage]) -> None:
    if reading.cancelled():
        shared.cancel()
    elif (error := reading.exception()) is not None:
        shared.set_exception(error)
    else:
        shared.set_result(reading.result())


class ChangeFeed:
    def __init__(
        self, db: Database, notifier: ChangeNotifier, retention_seconds: float, max_wait: float
    ) -> None:
        self.db = db
        self.notifier = notifier
        self.retention_seconds = retention_seconds
        self.max_wait = max_wait
        self.reads = SharedPageReads(self.page)

    def latest_cursor(self) -> str:
        # Sequence numbers are global and committed in order (writers are serialised),
        # so the highest one is a safe starting point for every space.
        with self.db.read() as conn:
            seq = conn.execute(select(func.max(C.c.seq))).scalar()
            floor = conn.execute(select(func.max(F.c.floor_seq))).scalar()
        return str(max(seq or 0, floor or 0))

    def page(self, principal: Principal, cursor: str | None, limit: int) -> ChangePage:
        after = parse_cursor(cursor)
        with self.db.read() as conn:
            floor = (
                conn.execute(
                    select(F.c.floor_seq).where(F.c.space_id == principal.space_id)
                ).scalar()
            ) or 0
            if after is None:
                after = floor
            elif after < floor:
                raise Problem(
                    "cursor-expired",
                    "changes after this cursor were pruned: list the space again, then "
                    "continue from /api/v1/changes/latest-cursor",
                )
            rows = conn.execute(
                select(C)
                .where(
                    C.c.tenant_id == principal.tenant_id,
                    C.c.space_id == principal.space_id,
                    C.c.seq > after,
                )
                .order_by(C.c.seq)
                .limit(limit + 1)
            ).all()
        changes = [_change_from_row(r) for r in rows[:limit]]
        next_cursor = str(changes[-1].seq) if changes else str(after)
        return ChangePage(changes=changes, cursor=next_cursor, has_more=len(rows) > limit)

    async def wait(
        self, principal: Principal, cursor: str | None, timeout: float, limit: int
    ) -> ChangePage:
        """The next page past ``cursor``, as soon as it is not empty, or empty after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(max(timeout, 0.0), self.max_wait)
        while True:
            future = self.notifier.register(principal.space_id)
            try:
                page = await self.reads.page(principal, cursor, limit)
                remaining = deadline - loop.time()
                if page.changes or remaining <= 0 or self.notifier.closed:
                    return page
                await asyncio.wait({future}, timeout=remaining)
                if not future.done():
                    return page
            finally:
                self.notifier.unregister(principal.space_id, future)

    def prune(self, now: float | None = None) -> int:
        """Drop changes older than the retention period; raise each space's floor."""
        cutoff = (now if now is not None else time.time()) - self.retention_seconds
        removed = 0
        with self.db.write() as conn:
            spaces = conn.execute(
                select(C.c.space_id, func.max(C.c.seq))
                .where(C.c.at < cutoff)
                .group_by(C.c.space_id)
            ).all()
            for space_id, max_seq in spaces:
                result = conn.execute(delete(C).where(C.c.space_id == space_id, C.c.seq <= max_seq))
                removed += result.rowcount
                current = conn.execute(
                    select(F.c.floor_seq).where(F.c.space_id == space_id)
                ).scalar()
                if current is None:
                    conn.execute(F.insert().values(space_id=space_id, floor_seq=max_seq))
                elif current < max_seq:
                    conn.execute(
                        update(F).where(F.c.space_id == space_id).values(floor_seq=max_seq)
                    )
        if removed:
            log.info("pruned %s change rows older than %.0f s", removed, self.retention_seconds)
        return removed

    async def retention_loop(self, interval: float = 3600.0) -> None:
        """Prune now and then every ``interval`` seconds, until cancelled."""
        while True:
            try:
                await anyio.to_thread.run_sync(self.prune)
            except Exception:  # a failed prune is retried next round, never fatal
                log.exception("change retention pruning failed")
            await asyncio.sleep(interval)
