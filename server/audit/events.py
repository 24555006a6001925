"""The events outbox: durable domain events written in the caller's transaction.

Security code records ``policy.violated`` and ``auth.failed`` here in the same
transaction as their audit row; the file core records its own; the webhook
dispatcher delivers from this table, so an event is never lost between the
action and its delivery.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, select

from dropline.server.storage import schema

_INSERT_EVENT = schema.events.insert()


def record_event(
    conn: Connection, tenant_id: str | None, type: str, payload: dict[str, Any]
) -> int:
    """Append one event inside ``conn``'s transaction; returns its id (increasing)."""
    result = conn.execute(_INSERT_EVENT, _event_params(tenant_id, type, payload, time.time()))
    key = result.inserted_primary_key
    assert key is not None
    return int(key[0])


def record_events(
    conn: Connection, tenant_id: str | None, events: Sequence[tuple[str, dict[str, Any]]]
) -> None:
    """Append ``events`` (type, payload), in order, inside ``conn``'s transaction."""
    now = time.time()
    conn.execute(
        _INSERT_EVENT, [_event_params(tenant_id, type, payload, now) for type, payload in events]
    )


def _event_params(
    tenant_id: str | None, type: str, payload: dict[str, Any], now: float
) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "type": type,
        "payload": json.dumps(payload, sort_keys=True, separators=(",", ":")),
        "created_at": now,
    }


def events_after(
    conn: Connection, after_id: int = 0, limit: int = 100, tenant_id: str | None = None
) -> list[dict[str, Any]]:
    """Events with id above ``after_id``, oldest first (for dispatchers and tests)."""
    query = select(schema.events).where(schema.events.c.id > after_id)
    if tenant_id is not None:
        query = query.where(schema.events.c.tenant_id == tenant_id)
    rows = conn.execute(query.order_by(schema.events.c.id).limit(limit)).all()
    return [
        {
            "id": row.id,
            "tenant_id": row.tenant_id,
            "type": row.type,
            "payload": json.loads(row.payload),
            "created_at": row.created_at,
        }
        for row in rows
    ]


__all__ = ["events_after", "record_event", "record_events"]
