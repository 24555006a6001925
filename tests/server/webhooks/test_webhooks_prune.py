"""The dispatcher's housekeeping on a real database: old finished deliveries and the
outbox events it has already fanned out go; anything still owed stays."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import select, update

from dropline.server.audit.events import record_event
from dropline.server.storage import schema
from dropline.server.storage.db import Database
from dropline.server.storage.migrations import migrate
from dropline.server.webhooks.delivery import LOG_RETENTION_SECONDS, WebhookDispatcher
from dropline.server.webhooks.subscriptions import enqueue


def test_prune_keeps_what_is_still_owed(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'ops.db'}")
    try:
        migrate(db)
        dispatcher = WebhookDispatcher(
            db, schedule=(1.0,), timeout=1, allow_private=False, poll_seconds=1
        )
        old = time.time() - LOG_RETENTION_SECONDS - 60
        with db.write() as conn:
            fanned = [record_event(conn, "t1", "file.uploaded", {"n": i}) for i in range(3)]
            waiting = record_event(conn, "t1", "file.uploaded", {"n": 3})
            conn.execute(update(schema.events).values(created_at=old))
            conn.execute(
                schema.webhook_cursor.insert().values(name="outbox", last_event_id=fanned[-1])
            )
            done = enqueue(
                conn,
                endpoint_id="e1",
                tenant_id="t1",
                event_id=1,
                event_type="file.uploaded",
                data={},
                at=old,
            )
            owed = enqueue(
                conn,
                endpoint_id="e1",
                tenant_id="t1",
                event_id=2,
                event_type="file.uploaded",
                data={},
                at=old,
            )
            conn.execute(
                update(schema.webhook_deliveries)
                .where(schema.webhook_deliveries.c.id == done.id)
                .values(state="succeeded", updated_at=old)
            )
            conn.execute(
                update(schema.webhook_deliveries)
                .where(schema.webhook_deliveries.c.id == owed.id)
                .values(updated_at=old)
            )
            conn.execute(
                schema.webhook_attempts.insert().values(
                    delivery_id=done.id, endpoint_id="e1", attempt=1, at=old, outcome="success"
                )
            )
        dispatcher.prune()
        with db.read() as conn:
            events = [r.id for r in conn.execute(select(schema.events.c.id))]
            deliveries = [r.id for r in conn.execute(select(schema.webhook_deliveries.c.id))]
            attempts = conn.execute(select(schema.webhook_attempts)).all()
        assert events == [waiting]  # not fanned out yet: still owed to subscribers
        assert deliveries == [owed.id]  # pending: still owed to its receiver
        assert attempts == []
    finally:
        db.dispose()
