"""Removing rows for good: entries with their revisions (a trash purge, trash retention)
and single revisions (version retention), inside the caller's write transaction.

Each returns the blobs its rows named, so the caller can ask
``blob_refs.unreferenced`` which are now unused and delete those after the commit.
Revision rows whose blob a live share link serves are kept (as the blob's reference)
until the link ends; housekeeping removes them then, their entry long gone.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Connection, delete, select

from dropline.server.files.blob_refs import CHUNK
from dropline.server.storage import schema

E = schema.entries
R = schema.revisions


def _chunks(ids: list[str] | list[int]) -> Iterable[list[str] | list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield ids[start : start + CHUNK]


def drop_entries(
    conn: Connection, tenant_id: str, entry_ids: list[str], pinned: set[str]
) -> set[str]:
    """Delete the entries ``entry_ids`` of ``tenant_id`` and their revisions (but those of
    ``pinned`` blobs); returns the blobs they named, pinned ones left out."""
    named: set[str] = set()
    for batch in _chunks(entry_ids):
        revisions = conn.execute(
            select(R.c.id, R.c.blob_id).where(R.c.tenant_id == tenant_id, R.c.entry_id.in_(batch))
        ).all()
        named.update(r.blob_id for r in revisions)
        doomed = [r.id for r in revisions if r.blob_id not in pinned]
        drop_revisions(conn, tenant_id, doomed)
        entries = conn.execute(
            select(E.c.blob_id).where(
                E.c.tenant_id == tenant_id, E.c.id.in_(batch), E.c.blob_id.is_not(None)
            )
        ).all()
        named.update(e.blob_id for e in entries)
        conn.execute(delete(E).where(E.c.tenant_id == tenant_id, E.c.id.in_(batch)))
    return named - pinned


def kept_for_shares(conn: Connection, tenant_id: str | None = None) -> list[tuple[str, int, str]]:
    """(tenant id, row id, blob id) of the revision rows, of ``tenant_id`` or of every
    tenant, whose entry is gone: a purge kept them because a share link served their blob."""
    query = select(R.c.tenant_id, R.c.id, R.c.blob_id).outerjoin(E, E.c.id == R.c.entry_id)
    query = query.where(E.c.id.is_(None))
    if tenant_id is not None:
        query = query.where(R.c.tenant_id == tenant_id)
    rows = conn.execute(query.order_by(R.c.tenant_id, R.c.id))
    return [(row.tenant_id, row.id, row.blob_id) for row in rows]


def drop_revisions(conn: Connection, tenant_id: str, revision_ids: list[int]) -> None:
    """Delete the revision rows ``revision_ids`` (row ids) of ``tenant_id``."""
    for batch in _chunks(revision_ids):
        conn.execute(delete(R).where(R.c.tenant_id == tenant_id, R.c.id.in_(batch)))


__all__ = ["drop_entries", "drop_revisions", "kept_for_shares"]
