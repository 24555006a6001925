"""Leases on rows of background work (webhook deliveries, transfer jobs), so every node
may run the workers and each row is worked on by one node at a time.

A row is free when its ``lease_until`` is NULL or past. Claiming is one UPDATE of the
due, free rows that returns their ids: on PostgreSQL its subquery takes the rows
``FOR UPDATE SKIP LOCKED``, so nodes claiming at once each get different rows without
waiting on each other; SQLite has a single writer, so the plain UPDATE is already
atomic. A node renews its leases while it works; a node that dies stops renewing,
and once the lease runs out another node claims the row again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping
from typing import Any

from sqlalchemy import ColumnElement, Connection, Table, or_, select, update

log = logging.getLogger(__name__)


def new_node_id() -> str:
    """``host-pid-random``: names this process in ``lease_owner`` (and in logs), and
    differs on every start, so a restarted node never mistakes a dead one's lease for
    its own."""
    return f"{socket.gethostname()[:60]}-{os.getpid()}-{secrets.token_hex(4)}"


class LeaseLost(Exception):
    """Another node holds the row now (this node's lease ran out): stop, write nothing.

    Not retryable here: the node holding the lease carries the work on."""


# One identity per process: its dispatcher and its workers hold leases under one name.
NODE_ID = new_node_id()


def free(table: Table, now: float) -> ColumnElement[bool]:
    """The rows nobody holds: never leased, released, or the lease ran out."""
    return or_(table.c.lease_until.is_(None), table.c.lease_until < now)


def claim(
    conn: Connection,
    table: Table,
    *,
    due: ColumnElement[bool],
    order_by: ColumnElement[Any],
    limit: int,
    owner: str,
    seconds: float,
    now: float,
    values: Mapping[str, Any] | None = None,
) -> list[str]:
    """Lease up to ``limit`` rows that are ``due`` and free to ``owner`` for ``seconds``
    (setting ``values`` too), in one statement; returns their ids, in ``order_by`` order."""
    if limit <= 0:
        return []
    pick = select(table.c.id).where(due, free(table, now)).order_by(order_by).limit(limit)
    if conn.dialect.name != "sqlite":
        pick = pick.with_for_update(skip_locked=True)
    taken = conn.execute(
        update(table)
        .where(table.c.id.in_(pick.scalar_subquery()), free(table, now))
        .values(lease_owner=owner, lease_until=now + seconds, **dict(values or {}))
        .returning(table.c.id)
    ).all()
    ids = {row.id for row in taken}
    if not ids:
        return []
    # RETURNING gives no order: read it back in the order the work is due.
    ordered = conn.execute(select(table.c.id).where(table.c.id.in_(ids)).order_by(order_by))
    return [row.id for row in ordered]


def renew(
    conn: Connection, table: Table, ids: Collection[str], owner: str, seconds: float
) -> set[str]:
    """Push ``owner``'s leases on ``ids`` forward; returns the ids it still held (a lease
    that ran out and was taken by another node is not taken back)."""
    if not ids:
        return set()
    now = time.time()
    held = conn.execute(
        update(table)
        .where(table.c.id.in_(list(ids)), table.c.lease_owner == owner)
        .values(lease_until=now + seconds)
        .returning(table.c.id)
    ).all()
    return {row.id for row in held}


def release(conn: Connection, table: Table, row_id: str, owner: str) -> bool:
    """Give ``row_id`` back if ``owner`` still holds it; returns whether it did."""
    count = conn.execute(
        update(table)
        .where(table.c.id == row_id, table.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None)
    ).rowcount
    return bool(count)


def release_owned(conn: Connection, table: Table, owner: str) -> int:
    """Give back every row ``owner`` holds (a node stopping cleanly), so another node
    need not wait for the leases to run out."""
    return int(
        conn.execute(
            update(table)
            .where(table.c.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
        ).rowcount
        or 0
    )


def release_all(conn: Connection, table: Table) -> int:
    """Free every lease. Only for the embedded shape: a SQLite data directory is locked to
    one process, so any lease found at start was left by a process that is gone."""
    return int(
        conn.execute(
            update(table)
            .where(table.c.lease_owner.is_not(None))
            .values(lease_owner=None, lease_until=None)
        ).rowcount
        or 0
    )


async def run_while_held(
    work: Coroutine[Any, Any, None], renew: Callable[[], Awaitable[bool]], every: float
) -> bool:
    """Run ``work``, calling ``renew`` every ``every`` seconds meanwhile. Returns True
    when the work ended; False when a renewal found the lease taken by another node
    (the work is then cancelled: that node carries it on). A renewal that fails (the
    database briefly away) is tried again next time: the lease may well still hold."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _pending = await asyncio.wait({task}, timeout=every)
            if done:
                task.result()
                return True
            try:
                held = await renew()
            except Exception:
                log.warning("could not renew a lease; trying again", exc_info=True)
                continue
            if not held:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return False
    finally:
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


__all__ = [
    "NODE_ID",
    "LeaseLost",
    "claim",
    "free",
    "new_node_id",
    "release",
    "release_all",
    "release_owned",
    "renew",
    "run_while_held",
]
