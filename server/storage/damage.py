"""Telling the operator about damaged blobs: a ``blob.damaged`` audit row, in each tenant
whose files use the blob, naming the blob and those files, and an error log line.

Readers report through :func:`reporting`, which wraps a blob reader so damage found on
any later read is reported too. One report per blob per minute: a client retrying a
damaged download must not flood the audit trail.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any, BinaryIO, cast

from sqlalchemy import select

from dropline.server.audit import trail
from dropline.server.storage import schema
from dropline.server.storage.db import Database
from dropline.server.storage.integrity import BlobDamaged

log = logging.getLogger(__name__)

REPORT_EVERY_SECONDS = 60.0
STORAGE_ACTOR = trail.AuditContext(actor="system", credential_kind="storage")

Report = Callable[[BlobDamaged], None]


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


class _Reporting:
    """A blob reader whose damage, found on any read, is reported before it is raised."""

    def __init__(self, inner: BinaryIO, report: Report) -> None:
        self._inner = inner
        self._report = report

    def read(self, size: int = -1) -> bytes:
        try:
            return self._inner.read(size)
        except BlobDamaged as damage:
            self._report(damage)
            raise

    def readinto(self, buffer: Any) -> int:
        try:
            return self._inner.readinto(buffer)  # type: ignore[attr-defined, no-any-return]
        except BlobDamaged as damage:
            self._report(damage)
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> _Reporting:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()

    def __iter__(self) -> Any:
        return iter(self._inner)


def reporting(open_blob: Callable[[], BinaryIO], report: Report) -> BinaryIO:
    """``open_blob()``, with damage found at open or on any later read reported."""
    try:
        handle = open_blob()
    except BlobDamaged as damage:
        report(damage)
        raise
    return cast(BinaryIO, _Reporting(handle, report))


__all__ = ["DamageLog", "reporting"]
