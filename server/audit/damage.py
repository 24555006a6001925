"""Telling the operator about damaged blobs: a ``blob.damaged`` audit row, in each tenant
whose files use the blob, naming the blob and those files, and an error log line.

The blob store calls :meth:`DamageLog.report` (``storage.damage``; the app plugs it in).
One report per blob per minute: a client retrying a damaged download must not flood
the audit trail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict

from sqlalchemy import select

from dropline.server.audit import trail
from dropline.server.storage import schema
from dropline.server.storage.db import Database
from dropline.server.storage.integrity import BlobDamaged

log = logging.getLogger(__name__)

REPORT_EVERY_SECONDS = 60.0
STORAGE_ACTOR = trail.AuditContext(actor="system", credential_kind="storage")


class DamageLog:
    """Writes the audit rows for damaged blobs."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def files_using(self, blob_id: str) -> dict[str | None, list[str]]:
        """Tenant -> ids of the files (current or earlier versions) stored in ``blob_id``."""
        E, R = schema.entries, schema.revisions
        with self.db.read() as conn:
            rows = conn.execute(
                select(E.c.tenant_id, E.c.id.label("file_id"))
                .where(E.c.blob_id == blob_id)
                .union(
                    select(R.c.tenant_id, R.c.entry_id.label("file_id")).where(
                        R.c.blob_id == blob_id
                    )
                )
            ).all()
        files: dict[str | None, list[str]] = defaultdict(list)
        for row in rows:
            files[row.tenant_id].append(row.file_id)
        return {tenant: sorted(set(ids)) for tenant, ids in files.items()}

    def report(self, damage: BlobDamaged) -> None:
        now = time.monotonic()
        with self._lock:
            last = self._last.get(damage.blob_id)
            if last is not None and now - last < REPORT_EVERY_SECONDS:
                return
            self._last[damage.blob_id] = now
        log.error("blob %s is damaged: %s", damage.blob_id, damage.reason)
        try:
            users = self.files_using(damage.blob_id) or {None: []}
            with self.db.write() as conn:
                for tenant_id, file_ids in users.items():
                    trail.record(
                        conn,
                        STORAGE_ACTOR,
                        "blob.damaged",
                        "failure",
                        damage.blob_id,
                        {"blob_id": damage.blob_id, "file_ids": file_ids, "reason": damage.reason},
                        tenant_id=tenant_id,
                    )
        except Exception:  # the read fails either way; a failed report must not hide why
            log.exception("could not record the damage of blob %s", damage.blob_id)


__all__ = ["DamageLog"]
