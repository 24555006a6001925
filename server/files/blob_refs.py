"""Which blobs may go: a blob is deleted only when no revision, entry (live or in the
trash) or live share link refers to it any more.

Callers delete rows inside their write transaction, ask :func:`unreferenced` in that same
transaction which of the blobs those rows named are now unused, and delete the blob
files with :func:`delete_blobs` after the commit: a publish that commits first keeps
its blob referenced, and a rollback leaves every blob in place. Share links pin the
blobs of the versions they serve (their snapshot in ``shares.files``), so the revision
rows of those blobs are kept while the link lives.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from sqlalchemy import Connection, or_, select

from dropline.server.storage import schema
from dropline.server.storage.blobs import BlobStore

log = logging.getLogger(__name__)

S = schema.shares
CHUNK = 500  # ids per IN (...) list: far below every database's parameter limit


def share_pinned(conn: Connection, tenant_id: str | None, now: float) -> set[str]:
    """The blobs that ``tenant_id``'s (None: every tenant's) share links live at ``now``
    serve (not revoked, not expired, downloads left)."""
    query = select(S.c.files).where(
        S.c.revoked_at.is_(None),
        or_(S.c.expires_at.is_(None), S.c.expires_at > now),
        or_(S.c.max_downloads.is_(None), S.c.downloads < S.c.max_downloads),
    )
    if tenant_id is not None:
        query = query.where(S.c.tenant_id == tenant_id)
    rows = conn.execute(query).all()
    pinned: set[str] = set()
    for row in rows:
        try:
            files = json.loads(row.files)
        except ValueError:
            continue
        pinned.update(f["blob_id"] for f in files if isinstance(f, dict) and f.get("blob_id"))
    return pinned


def _chunks(items: Iterable[str]) -> Iterable[list[str]]:
    batch: list[str] = []
    for item in items:
        batch.append(item)
        if len(batch) == CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def unreferenced(conn: Connection, candidates: Iterable[str]) -> set[str]:
    """Those of ``candidates`` no revision or entry row refers to (in ``conn``'s view)."""
    unused: set[str] = set()
    for batch in _chunks(sorted(set(candidates))):
        used = {
            row.blob_id
            for row in conn.execute(
                select(schema.revisions.c.blob_id)
                .where(schema.revisions.c.blob_id.in_(batch))
                .union(select(schema.entries.c.blob_id).where(schema.entries.c.blob_id.in_(batch)))
            )
        }
        unused.update(b for b in batch if b not in used)
    return unused


def delete_blobs(blobs: BlobStore, blob_ids: Iterable[str]) -> int:
    """Delete the blob files (after the commit that dropped their last rows); returns how
    many went. One that fails is logged and left: unreferenced, it harms nobody."""
    deleted = 0
    for blob_id in blob_ids:
        try:
            blobs.delete(blob_id)
        except (OSError, ValueError) as exc:
            log.warning("could not delete unreferenced blob %s: %s", blob_id, exc)
            continue
        deleted += 1
    return deleted


__all__ = ["delete_blobs", "share_pinned", "unreferenced"]
