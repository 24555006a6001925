"""Webhook deliveries are leased: with several dispatchers on one database (every node
runs one) each message goes out once, and one a dead node had claimed goes out when
its lease runs out. SQLite locks a data dir to one process, so here the dispatchers
share one process; the PostgreSQL tests run them as separate processes."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import select

from dropline.server.storage import schema
from tests.server.webhooks.leasing import delivered, dispatcher, prepare, run_for
from tests.support.receiver import Receiver


def test_two_dispatchers_deliver_fifty_events_exactly_once(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = prepare(f"sqlite:///{tmp_path / 'dropline.db'}", receiver.url, 50)
    try:
        nodes = [dispatcher(db, "node-a"), dispatcher(db, "node-b")]

        async def both() -> None:
            task = asyncio.create_task(run_for(nodes, 30))
            while delivered(db) < 50:
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)  # a second sending of any message would show by now
            task.cancel()

        asyncio.run(both())
        ids = Counter(r.headers["webhook-id"] for r in receiver.requests)
        assert len(ids) == 50
        assert max(ids.values()) == 1, ids.most_common(3)
        assert delivered(db) == 50
    finally:
        db.dispose()


def test_both_dispatchers_take_a_share_and_never_the_same_rows(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = prepare(f"sqlite:///{tmp_path / 'dropline.db'}", receiver.url, 20)
    try:
        a, b = dispatcher(db, "node-a"), dispatcher(db, "node-b")
        first = {item.id for item in a.claim_due(8)}
        second = {item.id for item in b.claim_due(50)}
        assert len(first) == 8
        assert len(second) == 12
        assert not first & second
        assert a.claim_due(50) == [] and b.claim_due(50) == []
    finally:
        db.dispose()


def test_a_dead_nodes_claim_is_taken_over_when_its_lease_runs_out(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = prepare(f"sqlite:///{tmp_path / 'dropline.db'}", receiver.url, 3)
    try:
        dead = dispatcher(db, "node-dead", lease_seconds=1.0)
        claimed = dead.claim_due(10)  # ...and the node dies before sending anything
        assert len(claimed) == 3
        live = dispatcher(db, "node-live")
        assert live.claim_due(10) == []  # held: not sent twice while the lease lasts
        time.sleep(1.1)
        taken = live.claim_due(10)
        assert {item.id for item in taken} == {item.id for item in claimed}
        D = schema.webhook_deliveries
        with db.read() as conn:
            owners = {row.lease_owner for row in conn.execute(select(D.c.lease_owner))}
        assert owners == {"node-live"}
        for item in taken:
            assert asyncio.run(live.deliver(item)) == "success"
        assert delivered(db) == 3
        assert sorted(r.headers["webhook-id"] for r in receiver.requests) == sorted(
            item.id for item in claimed
        )
        with db.read() as conn:
            owners = {row.lease_owner for row in conn.execute(select(D.c.lease_owner))}
        assert owners == {None}  # released with the attempt's record
    finally:
        db.dispose()


def test_a_restarted_embedded_server_frees_the_leases_it_left(
    tmp_path: Path, receiver: Receiver
) -> None:
    db = prepare(f"sqlite:///{tmp_path / 'dropline.db'}", receiver.url, 2)
    try:
        dispatcher(db, "node-before-the-crash", lease_seconds=3600).claim_due(10)
        after = dispatcher(db, "node-after-restart")
        assert after.claim_due(10) == []
        after.recover()  # SQLite: the data dir was locked to the process that died
        assert len(after.claim_due(10)) == 2
    finally:
        db.dispose()
