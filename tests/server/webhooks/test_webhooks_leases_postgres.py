"""Webhook leases on PostgreSQL: several dispatcher processes on one database (as every
node runs one) deliver each message once, and claims made at the same moment skip each
other's locked rows instead of waiting for them."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

from sqlalchemy import and_

from dropline.server.storage import leases, schema
from dropline.server.storage.db import Database
from tests.server.webhooks.leasing import delivered, prepare
from tests.support.receiver import Receiver, wait_until

ROOT = Path(__file__).resolve().parents[3]
D = schema.webhook_deliveries


def test_three_dispatcher_processes_deliver_fifty_events_exactly_once(
    postgres_url: str, receiver: Receiver
) -> None:
    db = prepare(postgres_url, receiver.url, 50)
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.server.webhooks.leasing", postgres_url, "60", str(n)],
            cwd=ROOT,
        )
        for n in range(3)
    ]
    try:
        wait_until(lambda: delivered(db) == 50, timeout=60)
        time.sleep(1.0)  # a second sending of any message would show by now
    finally:
        for node in nodes:
            node.kill()
            node.wait(10)
        db.dispose()
    ids = Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert len(ids) == 50
    assert max(ids.values()) == 1, ids.most_common(3)


def test_a_claim_skips_rows_another_node_is_claiming_instead_of_waiting(
    postgres_url: str, receiver: Receiver
) -> None:
    db = prepare(postgres_url, receiver.url, 10)
    other = Database(postgres_url)
    try:
        now = time.time()
        due = and_(D.c.state == "pending", D.c.next_attempt_at <= now + 1)
        first: list[str] = []
        second: list[str] = []
        with db.engine.begin() as conn:  # node A's claim, its transaction still open
            first += leases.claim(
                conn,
                D,
                due=due,
                order_by=D.c.next_attempt_at,
                limit=4,
                owner="node-a",
                seconds=30,
                now=now,
            )

            def claim_b() -> None:
                with other.write() as conn_b:
                    second.extend(
                        leases.claim(
                            conn_b,
                            D,
                            due=due,
                            order_by=D.c.next_attempt_at,
                            limit=10,
                            owner="node-b",
                            seconds=30,
                            now=now,
                        )
                    )

            thread = threading.Thread(target=claim_b)
            thread.start()
            thread.join(10)
            # Node B did not wait for A's locked rows: it took the other six at once.
            assert not thread.is_alive()
        assert len(first) == 4
        assert len(second) == 6
        assert not set(first) & set(second)
    finally:
        other.dispose()
        db.dispose()
