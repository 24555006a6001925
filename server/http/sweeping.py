"""The sweeper as both the running server and ``dropline-server sweep`` build it: its
parts, from the rooms that own them, in the order they must run (``files.sweeper``)."""

from __future__ import annotations

from collections.abc import Callable

from dropline.server.files.sweeper import KeptRevisions, OrphanBlobs, Sweeper, SweepPart
from dropline.server.settings import Settings
from dropline.server.storage.blob_url import Stores
from dropline.server.storage.db import Database
from dropline.server.transfers.shares import EndedShareLinks
from dropline.server.uploads.expiry import ExpiredUploads
from dropline.server.uploads.rows import UploadRows
from dropline.server.uploads.shared_staging import OrphanParts


def build_sweeper(
    settings: Settings,
    db: Database,
    stores: Stores,
    busy: Callable[[], set[str]] = set,
    grace: float | None = None,
) -> Sweeper:
    """``stores``: the unwrapped stores (the sweeper removes ciphertext as it is, by id);
    ``busy``: the uploads this process's requests are using (none from the CLI)."""
    store = stores.blobs
    parts: list[SweepPart] = [
        ExpiredUploads(UploadRows(db), settings.upload_dir, busy),
        EndedShareLinks(db),
        KeptRevisions(db, store),
        OrphanBlobs(db, store),
    ]
    if stores.staging is not None:  # parts of uploads in progress, in the object store
        parts.append(OrphanParts(db, stores.staging))
    return Sweeper(db, parts, settings.sweep_grace_seconds if grace is None else grace)


__all__ = ["build_sweeper"]
