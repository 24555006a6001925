"""Retention, applied: earlier versions and trash removed for good as each tenant's policy
says, and the blobs nothing refers to any more deleted.

The rules are policy keys (``version_retention_days``, ``max_versions``,
``trash_retention_days``; a user's own policy replaces the tenant's key by key). A
version goes when it was replaced more than N days ago or is beyond the file's M newest
revisions; the current revision never goes. Trash goes N days after its deletion. A
revision whose blob a live share link serves stays until the link ends.
``guard.usage`` counts storage by the same rules, so the quota sees what this keeps.
:meth:`Housekeeping.run_once` takes the time, so tests move the clock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from sqlalchemy import Connection, select

from dropline.server.audit import trail
from dropline.server.files.blob_refs import delete_blobs, share_pinned, unreferenced
from dropline.server.files.purge import drop_entries, drop_revisions, kept_for_shares
from dropline.server.storage import schema
from dropline.server.storage.blobs import BlobStore
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)

E = schema.entries
R = schema.revisions
DAY = 86400.0
RETENTION_KEYS = ("version_retention_days", "max_versions", "trash_retention_days")
INTERVAL_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class Retention:
    version_days: int | None = None
    max_versions: int | None = None
    trash_days: int | None = None

    @property
    def any(self) -> bool:
        return (self.version_days, self.max_versions, self.trash_days) != (None, None, None)


@dataclass(frozen=True, slots=True)
class Swept:
    """What one run removed."""

    versions: int = 0
    trashed: int = 0
    blobs: int = 0


def _retention(doc: dict[str, Any]) -> Retention:
    def number(key: str) -> int | None:
        value = doc.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return Retention(*(number(key) for key in RETENTION_KEYS))


def doomed_versions(
    history: list[tuple[int, float, str]], retention: Retention, now: float
) -> list[int]:
    """Of one file's revisions (row id, created_at, blob id), newest first, the row ids
    retention removes. The newest (current) one never goes."""
    doomed = []
    for n, (row_id, _created_at, _blob) in enumerate(history[1:], start=2):
        replaced_at = history[n - 2][1]  # when the next newer revision arrived
        too_many = retention.max_versions is not None and n > retention.max_versions
        too_old = (
            retention.version_days is not None and replaced_at < now - retention.version_days * DAY
        )
        if too_many or too_old:
            doomed.append(row_id)
    return doomed


class Housekeeping:
    def __init__(self, db: Database, blobs: BlobStore) -> None:
        self.db = db
        self.blobs = blobs

    def _spaces(self) -> dict[tuple[str, str], Retention]:
        """Every file space with a retention rule, and its effective rules."""
        with self.db.read() as conn:
            docs: dict[tuple[str, str | None], dict[str, Any]] = {}
            for row in conn.execute(select(schema.policies)):
                try:
                    doc = json.loads(row.rules)
                except ValueError:
                    continue
                kept = {k: doc[k] for k in RETENTION_KEYS if k in doc}
                if kept:
                    docs[(row.tenant_id, row.user_id)] = kept
            tenants = {tenant for tenant, _user in docs}
            if not tenants:
                return {}
            spaces = conn.execute(
                select(E.c.tenant_id, E.c.space_id).where(E.c.tenant_id.in_(tenants)).distinct()
            ).all()
        found: dict[tuple[str, str], Retention] = {}
        for tenant_id, space_id in spaces:
            merged = {**docs.get((tenant_id, None), {}), **docs.get((tenant_id, space_id), {})}
            retention = _retention(merged)
            if retention.any:
                found[(tenant_id, space_id)] = retention
        return found

    def run_once(self, now: float | None = None) -> Swept:
        """Apply every space's retention at ``now``; returns what went."""
        now = time.time() if now is None else now
        versions = trashed = blobs = 0
        for (tenant_id, space_id), retention in self._spaces().items():
            swept = self._space(tenant_id, space_id, retention, now)
            versions += swept.versions
            trashed += swept.trashed
            blobs += swept.blobs
        blobs += self._orphans(now)
        if versions or trashed or blobs:
            log.info(
                "retention removed %s versions, %s trashed entries, %s blobs",
                versions,
                trashed,
                blobs,
            )
        return Swept(versions, trashed, blobs)

    def _space(self, tenant_id: str, space_id: str, retention: Retention, now: float) -> Swept:
        """One space in one transaction; the blobs deleted after its commit."""
        with self.db.write() as conn:
            pinned = share_pinned(conn, tenant_id, now)
            named: set[str] = set()
            trashed: list[str] = []
            if retention.trash_days is not None:
                trashed = [
                    row.id
                    for row in conn.execute(
                        select(E.c.id).where(
                            E.c.tenant_id == tenant_id,
                            E.c.space_id == space_id,
                            E.c.trashed_at < now - retention.trash_days * DAY,
                        )
                    )
                ]
                named |= drop_entries(conn, tenant_id, trashed, pinned)
            doomed: list[tuple[int, str]] = []
            if retention.version_days is not None or retention.max_versions is not None:
                doomed = self._old_versions(conn, tenant_id, space_id, retention, now, pinned)
                named |= {blob for _row, blob in doomed}
                drop_revisions(conn, tenant_id, [row for row, _blob in doomed])
            unused = unreferenced(conn, named)
            if trashed or doomed:
                trail.record(
                    conn,
                    trail.SYSTEM,
                    "retention.apply",
                    "success",
                    None,
                    {
                        "user_id": space_id,
                        "versions": len(doomed),
                        "trashed": len(trashed),
                        "blobs": len(unused),
                    },
                    tenant_id=tenant_id,
                )
        return Swept(len(doomed), len(trashed), delete_blobs(self.blobs, sorted(unused)))

    def _old_versions(
        self,
        conn: Connection,
        tenant_id: str,
        space_id: str,
        retention: Retention,
        now: float,
        pinned: set[str],
    ) -> list[tuple[int, str]]:
        """(row id, blob id) of every revision in the space that retention removes."""
        histories: dict[str, list[tuple[int, float, str]]] = defaultdict(list)
        rows = conn.execute(
            select(R.c.id, R.c.entry_id, R.c.created_at, R.c.blob_id)
            .join(E, E.c.id == R.c.entry_id)
            .where(E.c.tenant_id == tenant_id, E.c.space_id == space_id, R.c.tenant_id == tenant_id)
            .order_by(R.c.entry_id, R.c.id.desc())
        )
        for row in rows:
            histories[row.entry_id].append((row.id, row.created_at, row.blob_id))
        doomed: list[tuple[int, str]] = []
        for history in histories.values():
            blob_of = {row_id: blob for row_id, _at, blob in history}
            doomed += [
                (row_id, blob_of[row_id])
                for row_id in doomed_versions(history, retention, now)
                if blob_of[row_id] not in pinned
            ]
        return doomed

    def _orphans(self, now: float) -> int:
        """Revision rows a purge kept for a share link's sake, once the link has ended."""
        deleted = 0
        with self.db.read() as conn:
            tenants = sorted({tenant for tenant, _row, _blob in kept_for_shares(conn)})
        for tenant_id in tenants:
            with self.db.write() as conn:
                pinned = share_pinned(conn, tenant_id, now)
                gone = [
                    (row, blob)
                    for _tenant, row, blob in kept_for_shares(conn, tenant_id)
                    if blob not in pinned
                ]
                drop_revisions(conn, tenant_id, [row for row, _blob in gone])
                unused = unreferenced(conn, {blob for _row, blob in gone})
            deleted += delete_blobs(self.blobs, sorted(unused))
        return deleted

    async def loop(self, interval: float = INTERVAL_SECONDS) -> None:
        """Run every ``interval`` seconds until cancelled (the first run after one interval,
        so a starting server is not slowed)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await anyio.to_thread.run_sync(self.run_once)
            except Exception:  # retried next round, never fatal to the server
                log.exception("housekeeping failed")


__all__ = ["Housekeeping", "Retention", "Swept", "doomed_versions"]
