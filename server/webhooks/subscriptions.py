"""Webhook subscriptions of a tenant: create, change, rotate secrets, read the delivery log.

No web framework here. Deliveries are signed per Standard Webhooks (``webhook-id``,
``webhook-timestamp``, ``webhook-signature``) with the ``standardwebhooks`` library;
:mod:`dropline.server.webhooks.delivery` sends them. Secrets (``whsec_...``) are shown once, at
creation and at rotation; no answer or log line carries them afterwards.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Row, delete, select, update
from standardwebhooks.webhooks import Webhook

from dropline.server.audit import trail
from dropline.server.guard import outbound
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.storage import schema
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)

EVENT_TYPES = (
    "file.uploaded",
    "file.deleted",
    "file.moved",
    "file.restored",
    "upload.failed",
    "transfer.completed",
    "transfer.failed",
    "auth.failed",
    "policy.violated",
)
PING = "webhook.ping"
MAX_ENDPOINTS_PER_TENANT = 50
MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 500
MAX_OVERLAP_SECONDS = 7 * 24 * 3600

PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"
CANCELLED = "cancelled"

W = schema.webhook_endpoints
D = schema.webhook_deliveries
A = schema.webhook_attempts


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")


def new_message_id() -> str:
    return "msg_" + uuid.uuid4().hex


def iso_time(ts: float) -> str:
    return (
        datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    )


def message_body(event_type: str, data: dict[str, Any], at: float) -> str:
    """The JSON a receiver gets: Standard Webhooks' ``type``, ``timestamp`` and ``data``."""
    return json.dumps(
        {"type": event_type, "timestamp": iso_time(at), "data": data},
        separators=(",", ":"),
        sort_keys=True,
    )


def sign(secrets_in_use: Sequence[str], msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value: one ``v1,<base64>`` per secret, space-separated,
    so a receiver holding either secret accepts the delivery during a rotation."""
    at = datetime.fromtimestamp(timestamp, tz=UTC)
    return " ".join(
        Webhook(secret).sign(msg_id=msg_id, timestamp=at, data=body) for secret in secrets_in_use
    )


def signing_secrets(row: Any, now: float) -> list[str]:
    """The endpoint's current secret, plus the previous one while its overlap lasts."""
    found = [str(row.secret)]
    if row.previous_secret and (row.previous_secret_expires_at or 0) > now:
        found.append(str(row.previous_secret))
    return found


@dataclass(frozen=True, slots=True)
class Endpoint:
    id: str
    url: str
    description: str
    event_types: list[str]
    active: bool
    disabled_reason: str | None
    created_at: float
    updated_at: float
    previous_secret_expires_at: float | None

    @classmethod
    def from_row(cls, row: Row[Any], now: float | None = None) -> Endpoint:
        now = time.time() if now is None else now
        overlap = row.previous_secret_expires_at
        return cls(
            id=row.id,
            url=row.url,
            description=row.description or "",
            event_types=json.loads(row.event_types),
            active=bool(row.active),
            disabled_reason=row.disabled_reason,
            created_at=row.created_at,
            updated_at=row.updated_at,
            previous_secret_expires_at=overlap
            if row.previous_secret and overlap and overlap > now
            else None,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "url": self.url,
            "description": self.description,
            "event_types": self.event_types,
            "active": self.active,
            "disabled_reason": self.disabled_reason,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "previous_secret_expires_at": self.previous_secret_expires_at,
        }


def delivery_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "event_type": row.event_type,
        "event_id": row.event_id,
        "state": row.state,
        "attempts": row.attempts,
        "next_attempt_at": row.next_attempt_at if row.state == PENDING else None,
        "last_status_code": row.last_status_code,
        "last_latency_ms": row.last_latency_ms,
        "last_error": row.last_error,
        "created_at": row.created_at,
        "delivered_at": row.delivered_at,
    }


def attempt_json(row: Row[Any]) -> dict[str, Any]:
    return {
        "attempt": row.attempt,
        "at": row.at,
        "outcome": row.outcome,
        "status_code": row.status_code,
        "latency_ms": row.latency_ms,
        "error": row.error,
    }


def check_event_types(types: Sequence[str]) -> list[str]:
    if not types:
        raise Problem("validation", "event_types must name at least one event type")
    unknown = sorted(set(types) - set(EVENT_TYPES))
    if unknown:
        raise Problem(
            "validation",
            f"unknown event type(s): {', '.join(unknown)}; known: {', '.join(EVENT_TYPES)}",
        )
    return sorted(set(types))


class WebhookService:
    """Subscriptions and their delivery log, always within the caller's tenant."""

    def __init__(
        self,
        db: Database,
        *,
        allow_private: bool,
        overlap_seconds: int,
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self.allow_private = allow_private
        self.overlap_seconds = overlap_seconds
        self.wake = wake or (lambda: None)

    # -- checks ------------------------------------------------------------------------

    async def check_url(self, url: str) -> str:
        if len(url) > MAX_URL_LENGTH:
            raise Problem("validation", f"the URL is longer than {MAX_URL_LENGTH} characters")
        try:
            await outbound.check_target(url, self.allow_private)
        except outbound.TargetRefused as exc:
            raise Problem("target-refused", str(exc)) from None
        return url

    @staticmethod
    def _row(conn: Connection, principal: Principal, endpoint_id: str) -> Row[Any]:
        row = conn.execute(
            select(W).where(W.c.tenant_id == principal.tenant_id, W.c.id == endpoint_id)
        ).first()
        if row is None:
            raise Problem("not-found", "no such webhook")
        return row

    # -- subscriptions -----------------------------------------------------------------

    def create(
        self,
        principal: Principal,
        url: str,
        event_types: Sequence[str],
        description: str = "",
        active: bool = True,
        audit_ctx: trail.AuditContext | None = None,
    ) -> tuple[Endpoint, str]:
        """A new subscription and its secret (the only time the secret is shown).
        ``url`` must have passed :meth:`check_url`."""
        types = check_event_types(event_types)
        if len(description) > MAX_DESCRIPTION_LENGTH:
            raise Problem("validation", f"description is over {MAX_DESCRIPTION_LENGTH} characters")
        now = time.time()
        secret = new_secret()
        endpoint_id = str(uuid.uuid4())
        with self.db.write() as conn:
            count = len(
                conn.execute(select(W.c.id).where(W.c.tenant_id == principal.tenant_id)).all()
            )
            if count >= MAX_ENDPOINTS_PER_TENANT:
                raise Problem(
                    "conflict", f"a tenant may have at most {MAX_ENDPOINTS_PER_TENANT} webhooks"
                )
            conn.execute(
                W.insert().values(
                    id=endpoint_id,
                    tenant_id=principal.tenant_id,
                    created_by=principal.user_id,
                    url=url,
                    description=description,
                    event_types=json.dumps(types),
                    active=active,
                    disabled_reason=None,
                    secret=secret,
                    created_at=now,
                    updated_at=now,
                )
            )
            row = self._row(conn, principal, endpoint_id)
            _audit(
                conn, audit_ctx, "webhook.create", endpoint_id, {"url": url, "event_types": types}
            )
        log.info("webhook %s created for tenant %s", endpoint_id, principal.tenant_id)
        return Endpoint.from_row(row), secret

    def list_endpoints(self, principal: Principal) -> list[Endpoint]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(W).where(W.c.tenant_id == principal.tenant_id).order_by(W.c.created_at)
            ).all()
        return [Endpoint.from_row(r) for r in rows]

    def get(self, principal: Principal, endpoint_id: str) -> Endpoint:
        with self.db.read() as conn:
            return Endpoint.from_row(self._row(conn, principal, endpoint_id))

    def update(
        self,
        principal: Principal,
        endpoint_id: str,
        *,
        url: str | None = None,
        event_types: Sequence[str] | None = None,
        description: str | None = None,
        active: bool | None = None,
        audit_ctx: trail.AuditContext | None = None,
    ) -> Endpoint:
        """Change fields; ``url`` must have passed :meth:`check_url`. Turning an endpoint
        back on clears why it was disabled."""
        values: dict[str, Any] = {}
        if url is not None:
            values["url"] = url
        if event_types is not None:
            values["event_types"] = json.dumps(check_event_types(event_types))
        if description is not None:
            if len(description) > MAX_DESCRIPTION_LENGTH:
                raise Problem(
                    "validation", f"description is over {MAX_DESCRIPTION_LENGTH} characters"
                )
            values["description"] = description
        if active is not None:
            values["active"] = active
            if active:
                values["disabled_reason"] = None
        with self.db.write() as conn:
            self._row(conn, principal, endpoint_id)
            if values:
                values["updated_at"] = time.time()
                conn.execute(update(W).where(W.c.id == endpoint_id).values(**values))
            if active is False:
                self._cancel_pending(conn, endpoint_id)
            if values:
                changed = {k: v for k, v in values.items() if k != "updated_at"}
                _audit(conn, audit_ctx, "webhook.update", endpoint_id, changed)
            row = self._row(conn, principal, endpoint_id)
        return Endpoint.from_row(row)

    def delete(
        self,
        principal: Principal,
        endpoint_id: str,
        audit_ctx: trail.AuditContext | None = None,
    ) -> None:
        with self.db.write() as conn:
            row = self._row(conn, principal, endpoint_id)
            _audit(conn, audit_ctx, "webhook.delete", endpoint_id, {"url": row.url})
            conn.execute(delete(A).where(A.c.endpoint_id == endpoint_id))
            conn.execute(delete(D).where(D.c.endpoint_id == endpoint_id))
            conn.execute(delete(W).where(W.c.id == endpoint_id))
        log.info("webhook %s deleted", endpoint_id)

    def rotate_secret(
        self,
        principal: Principal,
        endpoint_id: str,
        overlap_seconds: int | None = None,
        audit_ctx: trail.AuditContext | None = None,
    ) -> tuple[Endpoint, str]:
        """A new secret; the old one keeps signing (beside the new) for the overlap, so
        receivers can switch without dropping a delivery."""
        overlap = self.overlap_seconds if overlap_seconds is None else overlap_seconds
        if not 0 <= overlap <= MAX_OVERLAP_SECONDS:
            raise Problem(
                "validation", f"overlap_seconds must be between 0 and {MAX_OVERLAP_SECONDS}"
            )
        now = time.time()
        secret = new_secret()
        with self.db.write() as conn:
            row = self._row(conn, principal, endpoint_id)
            conn.execute(
                update(W)
                .where(W.c.id == endpoint_id)
                .values(
                    secret=secret,
                    previous_secret=row.secret if overlap > 0 else None,
                    previous_secret_expires_at=now + overlap if overlap > 0 else None,
                    updated_at=now,
                )
            )
            _audit(
                conn, audit_ctx, "webhook.rotate_secret", endpoint_id, {"overlap_seconds": overlap}
            )
            row = self._row(conn, principal, endpoint_id)
        log.info("webhook %s secret rotated (overlap %s s)", endpoint_id, overlap)
        return Endpoint.from_row(row), secret

    @staticmethod
    def _cancel_pending(conn: Connection, endpoint_id: str) -> None:
        conn.execute(
            update(D)
            .where(D.c.endpoint_id == endpoint_id, D.c.state == PENDING)
            .values(state=CANCELLED, next_attempt_at=None, updated_at=time.time())
        )

    # -- deliveries --------------------------------------------------------------------

    def deliveries(
        self,
        principal: Principal,
        endpoint_id: str,
        *,
        limit: int = 50,
        before: float | None = None,
        state: str | None = None,
    ) -> list[dict[str, Any]]:
        """The delivery log, newest first; page with ``before`` (a ``created_at``)."""
        with self.db.read() as conn:
            self._row(conn, principal, endpoint_id)
            query = select(D).where(D.c.endpoint_id == endpoint_id)
            if before is not None:
                query = query.where(D.c.created_at < before)
            if state is not None:
                query = query.where(D.c.state == state)
            rows = conn.execute(query.order_by(D.c.created_at.desc()).limit(limit)).all()
        return [delivery_json(r) for r in rows]

    def delivery(self, principal: Principal, endpoint_id: str, delivery_id: str) -> dict[str, Any]:
        """One delivery with every attempt (outcome, status code, latency)."""
        with self.db.read() as conn:
            self._row(conn, principal, endpoint_id)
            row = conn.execute(
                select(D).where(D.c.endpoint_id == endpoint_id, D.c.id == delivery_id)
            ).first()
            if row is None:
                raise Problem("not-found", "no such delivery")
            attempts = conn.execute(
                select(A).where(A.c.delivery_id == delivery_id).order_by(A.c.id)
            ).all()
        doc = delivery_json(row)
        doc["payload"] = json.loads(row.body)
        doc["attempt_log"] = [attempt_json(a) for a in attempts]
        return doc

    def redeliver(self, principal: Principal, endpoint_id: str, delivery_id: str) -> dict[str, Any]:
        """Send a delivery again now, with its original ``webhook-id`` (receivers that
        already handled it can tell). A failure after this is final: no new schedule."""
        now = time.time()
        with self.db.write() as conn:
            endpoint = self._row(conn, principal, endpoint_id)
            if not endpoint.active:
                raise Problem("conflict", "the webhook is disabled; turn it on first")
            row = conn.execute(
                select(D).where(D.c.endpoint_id == endpoint_id, D.c.id == delivery_id)
            ).first()
            if row is None:
                raise Problem("not-found", "no such delivery")
            conn.execute(
                update(D)
                .where(D.c.id == delivery_id)
                .values(state=PENDING, next_attempt_at=now, updated_at=now)
            )
            row = conn.execute(select(D).where(D.c.id == delivery_id)).one()
        self.wake()
        return delivery_json(row)

    def ping(self, principal: Principal, endpoint_id: str) -> dict[str, Any]:
        """Queue a ``webhook.ping`` to one endpoint, whatever event types it chose."""
        now = time.time()
        with self.db.write() as conn:
            endpoint = self._row(conn, principal, endpoint_id)
            if not endpoint.active:
                raise Problem("conflict", "the webhook is disabled; turn it on first")
            row = enqueue(
                conn,
                endpoint_id=endpoint_id,
                tenant_id=principal.tenant_id,
                event_id=None,
                event_type=PING,
                data={"webhook_id": endpoint_id},
                at=now,
            )
        self.wake()
        return delivery_json(row)


def _audit(
    conn: Connection,
    ctx: trail.AuditContext | None,
    action: str,
    endpoint_id: str,
    detail: dict[str, Any],
) -> None:
    """An audit row for a change to a subscription (never its secret)."""
    if ctx is not None:
        trail.record(conn, ctx, action, "success", f"/api/v1/webhooks/{endpoint_id}", detail)


def enqueue(
    conn: Connection,
    *,
    endpoint_id: str,
    tenant_id: str,
    event_id: int | None,
    event_type: str,
    data: dict[str, Any],
    at: float,
) -> Row[Any]:
    """Insert one pending delivery in ``conn``'s transaction; it is due at once."""
    delivery_id = new_message_id()
    now = time.time()
    conn.execute(
        D.insert().values(
            id=delivery_id,
            endpoint_id=endpoint_id,
            tenant_id=tenant_id,
            event_id=event_id,
            event_type=event_type,
            body=message_body(event_type, data, at),
            state=PENDING,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
            updated_at=now,
        )
    )
    return conn.execute(select(D).where(D.c.id == delivery_id)).one()


__all__ = [
    "EVENT_TYPES",
    "PING",
    "Endpoint",
    "WebhookService",
    "enqueue",
    "message_body",
    "new_secret",
    "sign",
    "signing_secrets",
]
