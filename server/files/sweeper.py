"""The sweeper: removes what nothing needs any more, never what is in flight.

It runs parts, each owned by its room: expired tus uploads and stray staged files
(``uploads.expiry``), share links whose time is up (``transfers.shares``), the revision
rows a purge kept only for those links (here), and blob files no row names (here).
Everything must be older than a grace period (``DROPLINE_SWEEP_GRACE_SECONDS``, an
hour): a publish writes its blob before the row that names it, an upload's staged
bytes exist before its row, a download may still be reading a link's version. With
``dry_run`` each part reports what it would remove and removes nothing.
:meth:`Sweeper.run` takes the time, so tests move the clock.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import anyio.to_thread

from dropline.server.audit import trail
from dropline.server.files.blob_refs import delete_blobs, share_pinned, unreferenced
from dropline.server.files.purge import drop_revisions, kept_for_shares
from dropline.server.storage.blobs import SweptBlobStore
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)

DEFAULT_GRACE_SECONDS = 3600.0


@dataclass(frozen=True, slots=True)
class SweepItem:
    """One thing removed (or, in a dry run, to be removed), and the bytes it frees."""

    kind: str  # upload, staged-file, share-link, kept-revision, blob, leftover
    name: str
    size: int = 0


@dataclass(frozen=True, slots=True)
class SweepReport:
    items: tuple[SweepItem, ...]
    dry_run: bool

    @property
    def bytes(self) -> int:
        return sum(item.size for item in self.items)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(item.kind for item in self.items).items()))


class SweepPart(Protocol):
    def sweep(self, now: float, grace: float, dry_run: bool) -> list[SweepItem]:
        """What this part removes at ``now`` (only what is older than ``grace``)."""
        ...


class _DryRun(Exception):
    """Rolls a dry run's transaction back."""


class KeptRevisions:
    """Revision rows kept only because a share link served their blob, once every such
    link ended more than the grace period ago, and the blobs then unused."""

    def __init__(self, db: Database, store: SweptBlobStore) -> None:
        self.db = db
        self.store = store

    def sweep(self, now: float, grace: float, dry_run: bool) -> list[SweepItem]:
        items: list[SweepItem] = []
        with self.db.read() as conn:
            tenants = sorted({tenant for tenant, _row, _blob in kept_for_shares(conn)})
        for tenant_id in tenants:
            found: list[SweepItem] = []
            unused: set[str] = set()
            try:
                with self.db.write() as conn:
                    pinned = share_pinned(conn, tenant_id, now - grace)
                    gone = [
                        (row, blob)
                        for _tenant, row, blob in kept_for_shares(conn, tenant_id)
                        if blob not in pinned
                    ]
                    drop_revisions(conn, tenant_id, [row for row, _blob in gone])
                    unused = unreferenced(conn, {blob for _row, blob in gone})
                    found = [SweepItem("kept-revision", str(row)) for row, _blob in gone]
                    found += [
                        SweepItem("blob", blob, self.store.footprint(blob))
                        for blob in sorted(unused)
                    ]
                    if dry_run:
                        raise _DryRun  # what the drop would free, counted, then undone
            except _DryRun:
                pass
            else:
                delete_blobs(self.store, sorted(unused))
            items += found
        return items


class OrphanBlobs:
    """Blob files no revision, entry or live share link names, and the store's leftovers
    (temporary copies, sums without their blob), once older than the grace period."""

    def __init__(self, db: Database, store: SweptBlobStore) -> None:
        self.db = db
        self.store = store

    def _unused(self, candidates: set[str], cutoff: float) -> set[str]:
        with self.db.read() as conn:
            return unreferenced(conn, candidates) - share_pinned(conn, None, cutoff)

    def sweep(self, now: float, grace: float, dry_run: bool) -> list[SweepItem]:
        cutoff = now - grace
        stored = [found for found in self.store.stored() if found.mtime < cutoff]
        sizes = {found.blob_id: found.size for found in stored if found.blob_id}
        unused = self._unused(set(sizes), cutoff)
        leftovers = [found for found in stored if found.blob_id is None]
        items = [SweepItem("blob", blob, sizes[blob]) for blob in sorted(unused)]
        items += [
            SweepItem("leftover", self.store.leftover_name(found), found.size)
            for found in leftovers
        ]
        if dry_run:
            return items
        # Asked again just before deleting: a row naming one of them since is honoured.
        still = self._unused(unused, cutoff)
        delete_blobs(self.store, sorted(still))
        for found in leftovers:
            self.store.remove_leftover(found)
        return [item for item in items if item.kind != "blob" or item.name in still]


class Sweeper:
    """Runs its parts in order (links end before the rows they kept are released, and
    those before blobs are looked at) and records a ``sweep.run`` audit row."""

    def __init__(
        self, db: Database, parts: Sequence[SweepPart], grace: float = DEFAULT_GRACE_SECONDS
    ) -> None:
        self.db = db
        self.parts = list(parts)
        self.grace = grace

    def run(self, now: float | None = None, dry_run: bool = False) -> SweepReport:
        now = time.time() if now is None else now
        items: list[SweepItem] = []
        for part in self.parts:
            items += part.sweep(now, self.grace, dry_run)
        report = SweepReport(tuple(items), dry_run)
        if items and not dry_run:
            log.info("sweeper removed %s, freeing %s bytes", report.counts(), report.bytes)
            with self.db.write() as conn:
                trail.record(
                    conn,
                    trail.AuditContext(actor="system", credential_kind="sweeper"),
                    "sweep.run",
                    "success",
                    None,
                    {"removed": report.counts(), "bytes": report.bytes, "grace": self.grace},
                )
        return report

    async def loop(self, interval: float) -> None:
        """Run every ``interval`` seconds until cancelled (the first run after one interval,
        so a starting server is not slowed)."""
        while True:
            await asyncio.sleep(interval)
            try:
                await anyio.to_thread.run_sync(self.run)
            except Exception:  # retried next round, never fatal to the server
                log.exception("sweep failed")


__all__ = [
    "DEFAULT_GRACE_SECONDS",
    "KeptRevisions",
    "OrphanBlobs",
    "SweepItem",
    "SweepPart",
    "SweepReport",
    "Sweeper",
]
