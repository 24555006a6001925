"""Helpers for the lease tests: a migrated database with one tenant and one webhook
subscription, pending deliveries to it, and a dispatcher node that can run in this
process or as a child process (``python -m tests.server.webhooks.leasing URL SECONDS``)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

from sqlalchemy import func, select

from dropline.server.identity.accounts import Identity, Principal
from dropline.server.storage import schema
from dropline.server.storage.db import Database
from dropline.server.storage.migrations import migrate
from dropline.server.webhooks.delivery import WebhookDispatcher
from dropline.server.webhooks.subscriptions import WebhookService, enqueue


def prepare(url: str, receiver_url: str, deliveries: int) -> Database:
    """Migrate ``url``, subscribe one endpoint at ``receiver_url`` and queue ``deliveries``
    pending messages to it, all due now."""
    db = Database(url)
    migrate(db)
    identity = Identity(db)
    tenant_id = identity.create_tenant("acme")
    user_id = identity.create_user("acme", "alice@example.com", None)
    alice = Principal(tenant_id, user_id, "test", "api_key", frozenset({"webhooks"}))
    webhooks = WebhookService(db, allow_private=True, overlap_seconds=60)
    endpoint, _secret = webhooks.create(alice, receiver_url + "/hook", ["file.uploaded"])
    with db.write() as conn:
        for n in range(deliveries):
            enqueue(
                conn,
                endpoint_id=endpoint.id,
                tenant_id=tenant_id,
                event_id=None,
                event_type="file.uploaded",
                data={"n": n},
                at=time.time(),
            )
    return db


def dispatcher(db: Database, node: str, lease_seconds: float = 30.0) -> WebhookDispatcher:
    return WebhookDispatcher(
        db,
        schedule=[0.2, 0.2],
        timeout=5.0,
        allow_private=True,
        poll_seconds=0.05,
        concurrency=4,
        node=node,
        lease_seconds=lease_seconds,
    )


def delivered(db: Database) -> int:
    with db.read() as conn:
        D = schema.webhook_deliveries
        return int(conn.execute(select(func.count()).where(D.c.state == "succeeded")).scalar_one())


async def run_for(dispatchers: list[WebhookDispatcher], seconds: float) -> None:
    tasks = [asyncio.create_task(d.run()) for d in dispatchers]
    try:
        await asyncio.sleep(seconds)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def main() -> None:
    """One node's dispatcher on the database at argv[1], for argv[2] seconds."""
    db = Database(sys.argv[1])
    try:
        asyncio.run(run_for([dispatcher(db, f"node-{sys.argv[3]}")], float(sys.argv[2])))
    finally:
        db.dispose()


if __name__ == "__main__":
    main()
