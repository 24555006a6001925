"""Asynchronous transfers: accept, validate, store, report, cancel. No web framework here.

A transfer moves one or more of the caller's files to a destination: another folder
(copy or move), another user's inbox in the same tenant, a share link, or an
external HTTPS endpoint (push). Requests are checked in full before anything is
stored, so a bad one changes nothing; the job is then a row that
:mod:`dropline.server.transfers.worker` runs, and survives a restart. Final states write
``transfer.completed`` / ``transfer.failed`` to the events outbox in the same
transaction.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.exc import IntegrityError

from dropline.server.audit import trail
from dropline.server.files.entries import FileService
from dropline.server.files.names import join_path, normalize_path
from dropline.server.files.records import FILE, Entry
from dropline.server.guard import outbound
from dropline.server.identity.accounts import Principal, hash_password
from dropline.server.problems import Problem
from dropline.server.storage import leases, schema
from dropline.server.storage.db import Database
from dropline.server.transfers.queue import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    FINAL,
    LEASE_SECONDS,
    QUEUED,
    RUNNING,
    STATES,
    TransferQueue,
)
from dropline.server.transfers.requests import (
    DEFAULT_LINK_SECONDS,
    NAME_PLACEHOLDER,
    FolderDestination,
    InboxDestination,
    LinkDestination,
    PushDestination,
    TransferRequest,
    public_destination,
    request_fingerprint,
)

log = logging.getLogger(__name__)

T = schema.transfers


@dataclass(frozen=True, slots=True)
class Transfer:
    """A transfer as its owner sees it (no secrets)."""

    row: Any

    @property
    def id(self) -> str:
        return str(self.row.id)

    @property
    def state(self) -> str:
        return str(self.row.state)

    def to_json(self) -> dict[str, Any]:
        r = self.row
        file_ids = json.loads(r.file_ids)
        error = {"code": r.error_code, "message": r.error} if r.error else None
        return {
            "id": r.id,
            "state": r.state,
            "kind": r.kind,
            "file_ids": file_ids,
            "destination": json.loads(r.destination),
            "bytes_total": r.bytes_total,
            "bytes_done": r.bytes_done,
            "files_total": len(file_ids),
            "files_done": r.files_done,
            "error": error,
            "result": json.loads(r.result),
            "attempts": r.attempts,
            "next_attempt_at": r.next_attempt_at if r.state == QUEUED else None,
            "created_at": r.created_at,
            "updated_at": r.updated_at,
            "started_at": r.started_at,
            "finished_at": r.finished_at,
        }


def worker_principal(row: Any, user_id: str | None = None) -> Principal:
    """Who a worker acts as: the transfer's owner (or a recipient), with file scopes only."""
    return Principal(
        tenant_id=row.tenant_id,
        user_id=user_id or row.user_id,
        credential_id=row.credential_id or f"transfer:{row.id}",
        kind="transfer",
        scopes=frozenset({"files:read", "files:write"}),
    )


# Checks the caller's policy can add: (principal, action, path, size) -> None or raise Problem.
PolicyCheck = Callable[[Principal, str, str, int | None], None]


class TransferService(TransferQueue):
    def __init__(
        self,
        db: Database,
        files: FileService,
        *,
        allow_private: bool,
        inbox_path: str,
        wake: Callable[[], None] | None = None,
        on_final: Callable[[], None] | None = None,
        node: str = leases.NODE_ID,
        lease_seconds: float = LEASE_SECONDS,
    ) -> None:
        self.db = db
        # Which node this is, and how long its hold on a running job lasts unrenewed.
        self.node = node
        self.lease_seconds = lease_seconds
        self.files = files
        self.allow_private = allow_private
        self.inbox_path = normalize_path(inbox_path)
        self.wake = wake or (lambda: None)
        self.on_final = on_final or (lambda: None)

    # -- creating ----------------------------------------------------------------------

    def _sources(self, principal: Principal, file_ids: list[str]) -> list[Entry]:
        if len(set(file_ids)) != len(file_ids):
            raise Problem("validation", "a file id is listed twice")
        entries = []
        for file_id in file_ids:
            entry = self.files.get(principal, file_id)
            if entry.type != FILE:
                raise Problem("validation", f"{entry.path} is a folder; transfers take files")
            entries.append(entry)
        return entries

    def recipient_id(self, principal: Principal, email: str) -> str:
        """The id of an active user with ``email`` in the caller's own tenant."""
        users = schema.users
        with self.db.read() as conn:
            row = conn.execute(
                select(users.c.id).where(
                    users.c.tenant_id == principal.tenant_id,
                    users.c.email == email.strip().lower(),
                    users.c.is_active.is_(True),
                )
            ).first()
        if row is None:
            raise Problem("validation", f"no active user {email.strip().lower()} in your tenant")
        return str(row.id)

    async def check_push_url(self, url: str) -> None:
        probe = url.replace(NAME_PLACEHOLDER, "file")
        try:
            await outbound.check_target(probe, self.allow_private)
        except outbound.TargetRefused as exc:
            raise Problem("target-refused", str(exc)) from None

    def existing(self, principal: Principal, key: str, fingerprint: str) -> Transfer | None:
        """The transfer an earlier POST with this Idempotency-Key made, if any."""
        with self.db.read() as conn:
            row = conn.execute(
                select(T).where(
                    T.c.tenant_id == principal.tenant_id,
                    T.c.user_id == principal.user_id,
                    T.c.idempotency_key == key,
                )
            ).first()
        if row is None:
            return None
        if row.request_hash != fingerprint:
            raise Problem(
                "idempotency-key-reused",
                "this Idempotency-Key was used for a different request",
            )
        return Transfer(row)

    def create(
        self,
        principal: Principal,
        body: TransferRequest,
        *,
        idempotency_key: str | None,
        link_base: str,
        check: PolicyCheck | None = None,
        audit_ctx: trail.AuditContext | None = None,
    ) -> tuple[Transfer, bool]:
        """Validate everything, then store the job (queued). Returns (transfer, created);
        a retried POST with the same Idempotency-Key gets the first transfer back.
        Push URLs must have passed :meth:`check_push_url` already."""
        fingerprint = request_fingerprint(body)
        if idempotency_key is not None:
            found = self.existing(principal, idempotency_key, fingerprint)
            if found is not None:
                return found, False
        dest = body.destination
        sources = self._sources(principal, body.file_ids)
        total = sum(e.size for e in sources)
        secrets: dict[str, Any] = {}
        public = public_destination(dest)
        if check is not None:
            for entry in sources:
                check(principal, "download", entry.path, entry.size)
        if isinstance(dest, FolderDestination):
            folder = normalize_path(dest.path, allow_root=True)
            public["path"] = folder
            if check is not None:
                for entry in sources:
                    target = join_path(folder, entry.name)
                    check(
                        principal, "move" if dest.mode == "move" else "upload", target, entry.size
                    )
        elif isinstance(dest, InboxDestination):
            recipient = self.recipient_id(principal, dest.recipient)
            public["recipient"] = dest.recipient.strip().lower()
            secrets["recipient_id"] = recipient
            if check is not None:
                # The recipient's own policy decides what may land in their space.
                as_recipient = Principal(
                    principal.tenant_id,
                    recipient,
                    principal.credential_id,
                    "transfer",
                    frozenset(),
                )
                for entry in sources:
                    target = join_path(self.inbox_path, entry.name)
                    check(as_recipient, "upload", target, entry.size)
        elif isinstance(dest, LinkDestination):
            seconds = dest.expires_in or DEFAULT_LINK_SECONDS
            public["expires_in"] = seconds
            if dest.password is not None:
                secrets["password_hash"] = hash_password(dest.password)
            secrets["link_base"] = link_base.rstrip("/")
        elif isinstance(dest, PushDestination):
            if len(sources) > 1 and dest.method == "PUT" and NAME_PLACEHOLDER not in dest.url:
                raise Problem(
                    "validation",
                    "pushing several files with PUT needs {name} in the URL (one URL per file)",
                )
            secrets["headers"] = dest.headers
        now = time.time()
        transfer_id = str(uuid.uuid4())
        try:
            with self.db.write() as conn:
                conn.execute(
                    T.insert().values(
                        id=transfer_id,
                        tenant_id=principal.tenant_id,
                        user_id=principal.user_id,
                        credential_id=principal.credential_id,
                        kind=dest.type,
                        file_ids=json.dumps(body.file_ids),
                        destination=json.dumps(public, sort_keys=True),
                        secrets=json.dumps(secrets),
                        state=QUEUED,
                        bytes_total=total,
                        bytes_done=0,
                        files_done=0,
                        result="{}",
                        attempts=0,
                        next_attempt_at=now,
                        cancel_requested=False,
                        idempotency_key=idempotency_key,
                        request_hash=fingerprint,
                        created_at=now,
                        updated_at=now,
                    )
                )
                row = conn.execute(select(T).where(T.c.id == transfer_id)).one()
                if audit_ctx is not None:
                    trail.record(
                        conn,
                        audit_ctx,
                        "transfer.create",
                        "success",
                        f"/api/v1/transfers/{transfer_id}",
                        {"kind": dest.type, "file_ids": body.file_ids, "destination": public},
                    )
        except IntegrityError:
            # A concurrent POST with the same key won the race: answer with its transfer.
            assert idempotency_key is not None
            found = self.existing(principal, idempotency_key, fingerprint)
            if found is None:
                raise
            return found, False
        log.info(
            "transfer %s queued: %s, %s file(s), %s bytes",
            transfer_id,
            dest.type,
            len(sources),
            total,
        )
        self.wake()
        return Transfer(row), True

    # -- reading and cancelling --------------------------------------------------------

    @staticmethod
    def _row(conn: Connection, principal: Principal, transfer_id: str) -> Row[Any]:
        row = conn.execute(
            select(T).where(
                T.c.id == transfer_id,
                T.c.tenant_id == principal.tenant_id,
                T.c.user_id == principal.user_id,
            )
        ).first()
        if row is None:
            raise Problem("not-found", "no such transfer")
        return row

    def get(self, principal: Principal, transfer_id: str) -> Transfer:
        with self.db.read() as conn:
            row = self._row(conn, principal, transfer_id)
        if row.kind == "link" and row.state == COMPLETED and self._link_spent(row):
            with self.db.write() as conn:
                conn.execute(
                    update(T)
                    .where(T.c.id == row.id, T.c.state == COMPLETED)
                    .values(state=EXPIRED, updated_at=time.time())
                )
                row = self._row(conn, principal, transfer_id)
        return Transfer(row)

    def _link_spent(self, row: Any) -> bool:
        shares = schema.shares
        with self.db.read() as conn:
            share = conn.execute(select(shares).where(shares.c.transfer_id == row.id)).first()
        if share is None:
            return False
        if share.expires_at is not None and share.expires_at <= time.time():
            return True
        return share.max_downloads is not None and share.downloads >= share.max_downloads

    def list_transfers(
        self,
        principal: Principal,
        *,
        limit: int = 50,
        state: str | None = None,
        before: float | None = None,
    ) -> list[Transfer]:
        query = select(T).where(
            T.c.tenant_id == principal.tenant_id, T.c.user_id == principal.user_id
        )
        if state is not None:
            query = query.where(T.c.state == state)
        if before is not None:
            query = query.where(T.c.created_at < before)
        with self.db.read() as conn:
            rows = conn.execute(query.order_by(T.c.created_at.desc()).limit(limit)).all()
        return [Transfer(r) for r in rows]

    def cancel(
        self,
        principal: Principal,
        transfer_id: str,
        audit_ctx: trail.AuditContext | None = None,
    ) -> Transfer:
        """Queued: cancelled now. Running: asked to stop (the worker stops between
        chunks). A completed share link: the link is revoked. Other final states: 409."""
        now = time.time()
        with self.db.write() as conn:
            row = self._row(conn, principal, transfer_id)
            if row.state == QUEUED:
                conn.execute(
                    update(T)
                    .where(T.c.id == row.id)
                    .values(state=CANCELLED, finished_at=now, updated_at=now)
                )
            elif row.state == RUNNING:
                conn.execute(
                    update(T).where(T.c.id == row.id).values(cancel_requested=True, updated_at=now)
                )
            elif row.kind == "link" and row.state in (COMPLETED, EXPIRED):
                conn.execute(
                    update(schema.shares)
                    .where(schema.shares.c.transfer_id == row.id)
                    .values(revoked_at=now)
                )
                conn.execute(
                    update(T).where(T.c.id == row.id).values(state=CANCELLED, updated_at=now)
                )
            elif row.state != CANCELLED:
                raise Problem("conflict", f"the transfer is already {row.state}")
            if audit_ctx is not None and row.state != CANCELLED:
                trail.record(
                    conn,
                    audit_ctx,
                    "transfer.cancel",
                    "success",
                    f"/api/v1/transfers/{transfer_id}",
                    {"kind": row.kind, "state": row.state},
                )
            row = self._row(conn, principal, transfer_id)
        return Transfer(row)


__all__ = [
    "CANCELLED",
    "COMPLETED",
    "EXPIRED",
    "FAILED",
    "FINAL",
    "LEASE_SECONDS",
    "QUEUED",
    "RUNNING",
    "STATES",
    "PolicyCheck",
    "Transfer",
    "TransferService",
    "worker_principal",
]
