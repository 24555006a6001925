"""The ``uploads`` table: one row per tus upload (its owner, target, length, durable
offset, expiry and, once published, its entry), and the :class:`UploadState` a tus
answer reports. Every lookup is filtered by the caller's tenant and user."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, select, update

from dropline.server.files.records import Entry
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.storage import schema
from dropline.server.storage.db import Database
from dropline.server.uploads.tus import UploadTarget

U = schema.uploads
_INSERT = U.insert()  # built once: its compiled form is reused
_UPLOAD_ID = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class UploadState:
    """What a tus answer reports about one upload."""

    id: str
    length: int
    offset: int
    expires_at: float
    metadata: str
    entry_id: str | None = None
    rev: str | None = None
    entry: Entry | None = None  # the published entry, when this request published it


def state_of(row: Any) -> UploadState:
    return UploadState(
        id=row.id,
        length=int(row.length),
        offset=int(row.offset),
        expires_at=float(row.expires_at),
        metadata=row.metadata,
        entry_id=row.entry_id,
        rev=row.rev,
    )


class UploadRows:
    def __init__(self, db: Database) -> None:
        self.db = db

    def load(self, principal: Principal, upload_id: str) -> Any:
        """The caller's upload; anyone else's (or a malformed id) is "not found"."""
        if not _UPLOAD_ID.match(upload_id):
            raise Problem("not-found", "no such upload")
        with self.db.read() as conn:
            row = conn.execute(
                select(U).where(
                    U.c.id == upload_id,
                    U.c.tenant_id == principal.tenant_id,
                    U.c.user_id == principal.user_id,
                )
            ).first()
        if row is None:
            raise Problem("not-found", "no such upload")
        return row

    def insert(
        self,
        conn: Connection,
        principal: Principal,
        upload_id: str,
        length: int,
        offset: int,
        target: UploadTarget,
        metadata: str,
        now: float,
        expires_at: float,
        entry: Entry | None = None,
    ) -> None:
        conn.execute(
            _INSERT,
            {
                "id": upload_id,
                "tenant_id": principal.tenant_id,
                "space_id": principal.space_id,
                "user_id": principal.user_id,
                "length": length,
                "offset": offset,
                "target_path": target.path,
                "sha256": target.sha256,
                "mtime": target.mtime,
                "if_rev": target.if_rev,
                "metadata": metadata,
                "created_at": now,
                "expires_at": expires_at,
                "entry_id": entry.id if entry else None,
                "rev": entry.rev if entry else None,
            },
        )

    def record_offset(
        self, upload_id: str, offset: int, expires_at: float, sha256: str | None = None
    ) -> None:
        """The new durable offset (and a whole-file SHA-256 a PATCH declared)."""
        values: dict[str, Any] = {"offset": offset, "expires_at": expires_at}
        if sha256 is not None:
            values["sha256"] = sha256
        with self.db.write() as conn:
            conn.execute(update(U).where(U.c.id == upload_id).values(**values))

    @staticmethod
    def mark_published(conn: Connection, upload_id: str, entry: Entry, length: int) -> None:
        conn.execute(
            update(U)
            .where(U.c.id == upload_id)
            .values(entry_id=entry.id, rev=entry.rev, offset=length)
        )

    def delete(self, upload_id: str) -> None:
        with self.db.write() as conn:
            conn.execute(delete(U).where(U.c.id == upload_id))

    def expired_ids(self, now: float) -> list[str]:
        with self.db.read() as conn:
            return [r.id for r in conn.execute(select(U.c.id).where(U.c.expires_at < now))]

    def ids(self) -> set[str]:
        with self.db.read() as conn:
            return {r.id for r in conn.execute(select(U.c.id))}


__all__ = ["UploadRows", "UploadState", "state_of"]
