"""The tamper-evident audit trail: append rows, verify the hash chain, query, prune.

Each row's ``hash`` is SHA-256 over the previous row's hash and the row's own
fields, so editing or deleting a row breaks every hash after it. Rows are written
inside the caller's transaction (the action and its audit row commit together).
No web framework here: routes build an :class:`AuditContext` and pass it in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, delete, select

from dropline.server.audit.events import record_event
from dropline.server.storage import schema
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)

GENESIS = "0" * 64
OUTCOMES = ("success", "failure", "denied")

# The fields the hash covers, in order. Adding a field later means a new chain
# version, never a silent change to this tuple.
HASHED_FIELDS = (
    "id",
    "at",
    "tenant_id",
    "actor",
    "credential_id",
    "credential_kind",
    "source_ip",
    "action",
    "resource",
    "outcome",
    "request_id",
    "detail",
)


@dataclass(frozen=True, slots=True)
class AuditContext:
    """Who did it and from where; the same for every row one request writes."""

    tenant_id: str | None = None
    actor: str | None = None
    credential_id: str | None = None
    credential_kind: str | None = None
    source_ip: str | None = None
    request_id: str | None = None

    def with_actor(
        self,
        tenant_id: str | None,
        actor: str | None,
        credential_id: str | None = None,
        credential_kind: str | None = None,
    ) -> AuditContext:
        return replace(
            self,
            tenant_id=tenant_id,
            actor=actor,
            credential_id=credential_id,
            credential_kind=credential_kind,
        )


SYSTEM = AuditContext(actor="system", credential_kind="cli")


def _row_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps(
        [fields[name] for name in HASHED_FIELDS], separators=(",", ":"), ensure_ascii=True
    )
    return hashlib.sha256(f"{prev_hash}\n{canonical}".encode()).hexdigest()


_INSERT_EVENT = schema.audit_events.insert()


def _head(conn: Connection) -> str:
    row = conn.execute(
        select(schema.audit_events.c.hash).order_by(schema.audit_events.c.seq.desc()).limit(1)
    ).first()
    if row is not None:
        return str(row.hash)
    anchor = conn.execute(select(schema.audit_anchor.c.hash)).first()
    return str(anchor.hash) if anchor is not None else GENESIS


def record(
    conn: Connection,
    ctx: AuditContext,
    action: str,
    outcome: str,
    resource: str | None = None,
    detail: dict[str, Any] | None = None,
    *,
    tenant_id: str | None = None,
) -> str:
    """Append one audit row inside ``conn``'s transaction; returns its id.

    ``tenant_id`` overrides the context's tenant (an admin acting on a tenant).
    """
    fields = _fields(ctx, action, outcome, resource, detail, tenant_id, round(time.time(), 6))
    _append(conn, [fields])
    return str(fields["id"])


def record_many(
    conn: Connection,
    ctx: AuditContext,
    rows: Sequence[tuple[str, str, str | None, dict[str, Any] | None]],
) -> None:
    """Append ``rows`` (action, outcome, resource, detail), in order, in one statement:
    the chain's head is read once and each row's hash follows from the one before."""
    at = round(time.time(), 6)
    _append(conn, [_fields(ctx, *row, None, at) for row in rows])


def _fields(
    ctx: AuditContext,
    action: str,
    outcome: str,
    resource: str | None,
    detail: dict[str, Any] | None,
    tenant_id: str | None,
    at: float,
) -> dict[str, Any]:
    if outcome not in OUTCOMES:
        raise ValueError(f"outcome must be one of {OUTCOMES}, got {outcome!r}")
    return {
        "id": str(uuid.uuid4()),
        "at": at,
        "tenant_id": tenant_id if tenant_id is not None else ctx.tenant_id,
        "actor": ctx.actor,
        "credential_id": ctx.credential_id,
        "credential_kind": ctx.credential_kind,
        "source_ip": ctx.source_ip,
        "action": action,
        "resource": resource,
        "outcome": outcome,
        "request_id": ctx.request_id,
        "detail": json.dumps(detail or {}, sort_keys=True, separators=(",", ":")),
    }


def _append(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` after the chain's head, each hashed over the one before."""
    if not rows:
        return
    prev = _head(conn)
    for fields in rows:
        fields["prev_hash"] = prev
        fields["hash"] = prev = _row_hash(prev, fields)
    # One compiled statement with parameters: building ``.values(...)`` anew for every
    # row cost more CPU than the insert (a batch of small files writes one row a file).
    conn.execute(_INSERT_EVENT, rows)


def record_with_event(
    conn: Connection,
    ctx: AuditContext,
    action: str,
    outcome: str,
    event_type: str,
    resource: str | None = None,
    detail: dict[str, Any] | None = None,
) -> str:
    """An audit row plus its outbox event (``auth.failed``, ``policy.violated``) in one go."""
    audit_id = record(conn, ctx, action, outcome, resource, detail)
    payload = {
        "audit_id": audit_id,
        "action": action,
        "actor": ctx.actor,
        "credential_id": ctx.credential_id,
        "source_ip": ctx.source_ip,
        "resource": resource,
        "request_id": ctx.request_id,
        **(detail or {}),
    }
    record_event(conn, ctx.tenant_id, event_type, payload)
    return audit_id


@dataclass(frozen=True, slots=True)
class ChainReport:
    ok: bool
    rows: int
    head: str
    first_bad_seq: int | None = None
    problem: str | None = None


def verify_chain(db: Database) -> ChainReport:
    """Recompute every hash in order; the first row that does not match is reported."""
    with db.read() as conn:
        anchor = conn.execute(select(schema.audit_anchor)).first()
        prev = str(anchor.hash) if anchor is not None else GENESIS
        rows = 0
        for row in conn.execute(select(schema.audit_events).order_by(schema.audit_events.c.seq)):
            fields = {name: getattr(row, name) for name in HASHED_FIELDS}
            if row.prev_hash != prev:
                return ChainReport(
                    False, rows, prev, row.seq, "a row before this one was removed or altered"
                )
            if _row_hash(prev, fields) != row.hash:
                return ChainReport(False, rows, prev, row.seq, "this row was altered")
            prev = row.hash
            rows += 1
    return ChainReport(True, rows, prev)


def prune(db: Database, retention_days: int, now: float | None = None) -> int:
    """Delete rows older than the retention period, keeping the chain verifiable.

    The hash of the last pruned row becomes the anchor the remaining chain starts from.
    """
    cutoff = (now or time.time()) - retention_days * 86400
    with db.write() as conn:
        last = conn.execute(
            select(schema.audit_events.c.seq, schema.audit_events.c.hash)
            .where(schema.audit_events.c.at < cutoff)
            .order_by(schema.audit_events.c.seq.desc())
            .limit(1)
        ).first()
        if last is None:
            return 0
        count = conn.execute(
            delete(schema.audit_events).where(schema.audit_events.c.seq <= last.seq)
        ).rowcount
        conn.execute(delete(schema.audit_anchor))
        conn.execute(
            schema.audit_anchor.insert().values(
                id=1, seq=last.seq, hash=last.hash, pruned_at=time.time()
            )
        )
    log.info("pruned %s audit rows older than %s days", count, retention_days)
    return int(count)


@dataclass(frozen=True, slots=True)
class AuditFilter:
    since: float | None = None
    until: float | None = None
    actor: str | None = None
    action: str | None = None
    outcome: str | None = None
    resource: str | None = None


# What the audit API shows: every hashed field (the chain's own hashes stay inside).
PUBLIC_FIELDS = HASHED_FIELDS


def query(
    conn: Connection, tenant_id: str, flt: AuditFilter, after_seq: int, limit: int
) -> tuple[list[dict[str, Any]], int | None]:
    """One page of the tenant's rows after ``after_seq``; returns (rows, next seq or None)."""
    t = schema.audit_events
    q = select(t).where(t.c.tenant_id == tenant_id, t.c.seq > after_seq)
    if flt.since is not None:
        q = q.where(t.c.at >= flt.since)
    if flt.until is not None:
        q = q.where(t.c.at < flt.until)
    if flt.actor:
        q = q.where(t.c.actor == flt.actor)
    if flt.action:
        # "file." matches every file action; a full name matches itself.
        q = q.where(
            t.c.action.startswith(flt.action)
            if flt.action.endswith(".")
            else t.c.action == flt.action
        )
    if flt.outcome:
        q = q.where(t.c.outcome == flt.outcome)
    if flt.resource:
        q = q.where(t.c.resource.startswith(flt.resource))
    rows = conn.execute(q.order_by(t.c.seq).limit(limit + 1)).all()
    more = len(rows) > limit
    rows = rows[:limit]
    out = []
    for row in rows:
        item = {name: getattr(row, name) for name in PUBLIC_FIELDS}
        item["detail"] = json.loads(row.detail)
        out.append(item)
    return out, (rows[-1].seq if more and rows else None)


def iter_rows(conn: Connection, tenant_id: str | None = None) -> Iterator[dict[str, Any]]:
    """Every row in order (CLI export)."""
    t = schema.audit_events
    q = select(t).order_by(t.c.seq)
    if tenant_id is not None:
        q = q.where(t.c.tenant_id == tenant_id)
    for row in conn.execute(q):
        item = {name: getattr(row, name) for name in PUBLIC_FIELDS}
        item["detail"] = json.loads(row.detail)
        yield item


__all__ = [
    "SYSTEM",
    "AuditContext",
    "AuditFilter",
    "ChainReport",
    "prune",
    "query",
    "record",
    "record_many",
    "record_with_event",
    "verify_chain",
]
