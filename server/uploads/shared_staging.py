"""tus uploads in progress kept in the object store, so any node can take the next PATCH.

With blobs in an object store (several nodes behind a load balancer), each PATCH's bytes,
once written and fsynced to the node's own staged file as always, are stored as one part:
a blob of the staging store (``<prefix>/staging/`` in the bucket, with chunk sums, and
sealed like any blob for a tenant with encryption at rest), named by an ``upload_parts``
row. The upload's offset moves only by compare-and-set from where the PATCH started, in
the transaction that adds the part's row: of two nodes taking a PATCH at one offset at
once, one wins and the other answers ``offset-mismatch`` and drops its part.

The node's staged file is then a cache. A node whose copy is not in step with the
database (another node took the previous PATCHes, or it restarted) rebuilds it from the
parts, hashing as it goes, so the last PATCH publishes from a whole local file with the
whole-file SHA-256 checked, as today. The parts go once the upload is published or gone.

Why whole parts and not an S3 multipart upload kept open (as tusd's S3 store does): the
parts of an open multipart upload cannot be read back, and a node must read them to
rebuild the running SHA-256 the publish checks; nor can a sealed blob be assembled from
parts sealed one by one. The cost: the bytes go up twice (the parts, then the blob).
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, delete, select, update

from dropline.server.files.sweeper import SweepItem
from dropline.server.problems import Problem
from dropline.server.storage import schema
from dropline.server.storage.blobs import BlobStore, SweptBlobStore, new_blob_id
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)

P = schema.upload_parts
U = schema.uploads
COPY_BLOCK = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Known:
    """What a node's staged copy of an upload holds: bytes [0, length), ending with the
    part ``part`` (None at 0), and their running SHA-256."""

    length: int
    part: str | None
    hasher: Any


def _still_a_prefix(known: Known, parts: Sequence[Any], offset: int) -> bool:
    if known.length > offset:
        return False
    if known.length == 0:
        return True
    return any(
        row.part_id == known.part and int(row.offset) + int(row.length) == known.length
        for row in parts
    )


class SharedStaging:
    """The parts of uploads in progress: stored, recorded, read back and dropped.

    ``parts``: the staging store as requests write it (sealing for tenants with
    encryption at rest); every method runs in a worker thread.
    """

    def __init__(self, db: Database, parts: BlobStore) -> None:
        self.db = db
        self.parts = parts

    def save(self, staged: Path, start: int, end: int) -> str:
        """Store bytes [start, end) of the staged file as a new part; returns its id."""
        part_id = new_blob_id()
        copy = staged.with_name(f"{staged.name}.{part_id}")
        try:
            with staged.open("rb") as src, copy.open("wb") as dst:
                src.seek(start)
                remaining = end - start
                while remaining > 0:
                    block = src.read(min(COPY_BLOCK, remaining))
                    if not block:
                        raise OSError(f"staged upload {staged.name} is shorter than {end}")
                    dst.write(block)
                    remaining -= len(block)
                dst.flush()
                os.fsync(dst.fileno())
            self.parts.put(part_id, copy)  # takes the copy
        finally:
            copy.unlink(missing_ok=True)
        return part_id

    @staticmethod
    def add(conn: Connection, upload_id: str, start: int, end: int, part_id: str) -> list[str]:
        """Record a part (in the caller's transaction); returns the parts it replaces (from
        a PATCH at or past ``start`` that was undone), to be dropped after the commit."""
        stale = [
            row.part_id
            for row in conn.execute(
                select(P.c.part_id).where(P.c.upload_id == upload_id, P.c.offset >= start)
            )
        ]
        if stale:
            conn.execute(delete(P).where(P.c.upload_id == upload_id, P.c.offset >= start))
        conn.execute(
            P.insert().values(
                upload_id=upload_id, offset=start, length=end - start, part_id=part_id
            )
        )
        return stale

    def record(
        self,
        upload_id: str,
        start: int,
        end: int,
        part_id: str,
        expires_at: float,
        sha256: str | None = None,
    ) -> bool:
        """Move the upload from ``start`` to ``end`` with this part, if it is still at
        ``start``; False (and the part dropped) when another request moved it first."""
        values: dict[str, Any] = {"offset": end, "expires_at": expires_at}
        if sha256 is not None:
            values["sha256"] = sha256
        with self.db.write() as conn:
            moved = conn.execute(
                update(U)
                .where(U.c.id == upload_id, U.c.offset == start, U.c.entry_id.is_(None))
                .values(**values)
            )
            stale = self.add(conn, upload_id, start, end, part_id) if moved.rowcount == 1 else []
        if moved.rowcount != 1:
            self._drop([part_id])
            return False
        self._drop(stale)
        return True

    def restore(
        self, upload_id: str, staged: Path, offset: int, known: Known | None = None
    ) -> tuple[Any, str | None]:
        """Make the staged file the upload's first ``offset`` bytes, from its parts;
        returns their running SHA-256 and the id of the part ending at ``offset``.

        ``known``: this node's copy (its length, the part it ends with, its running hash).
        While that part is still a row ending there, nothing before it changed (a step
        back drops every part from a PATCH's start on), so only the parts after it are
        fetched: a node taking every other PATCH reads each part once, not the whole
        upload again each time."""
        with self.db.read() as conn:
            parts = conn.execute(
                select(P.c.offset, P.c.length, P.c.part_id)
                .where(P.c.upload_id == upload_id, P.c.offset < offset)
                .order_by(P.c.offset)
            ).all()
        if known is not None and _still_a_prefix(known, parts, offset):
            # A copy of the hash: the node's own stays as it is if this fails half-way.
            position, last, hasher = known.length, known.part, known.hasher.copy()
        else:
            position, last, hasher = 0, None, hashlib.sha256()
        fd = os.open(staged, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.truncate(position)
            out.seek(position)
            for part in parts:
                if int(part.offset) < position:
                    continue
                if int(part.offset) != position:
                    break
                take = min(int(part.length), offset - position)
                with self.parts.open(part.part_id) as reader:
                    while take > 0:
                        block = reader.read(min(COPY_BLOCK, take))
                        if not block:
                            break
                        out.write(block)
                        hasher.update(block)
                        take -= len(block)
                        position += len(block)
                if take:
                    break
                last = part.part_id
            out.flush()
            os.fsync(out.fileno())
        if position != offset:
            log.error("upload %s: its parts reach byte %s of %s", upload_id, position, offset)
            raise Problem(
                "upload-expired",
                "the bytes of this upload received so far are no longer all there; "
                "start a new upload",
            )
        return hasher, last

    def truncate(self, upload_id: str, offset: int) -> None:
        """Drop the parts at or past ``offset`` (an upload stepped back there)."""
        self._forget_where(upload_id, P.c.offset >= offset)

    def forget(self, upload_id: str) -> None:
        """Drop every part of the upload (published, terminated or expired)."""
        self._forget_where(upload_id, None)

    def _forget_where(self, upload_id: str, condition: Any) -> None:
        where = [P.c.upload_id == upload_id] + ([condition] if condition is not None else [])
        with self.db.write() as conn:
            gone = [row.part_id for row in conn.execute(select(P.c.part_id).where(*where))]
            conn.execute(delete(P).where(*where))
        self._drop(gone)

    def _drop(self, part_ids: Iterable[str]) -> None:
        for part_id in part_ids:
            try:
                self.parts.delete(part_id)
            except OSError as exc:  # logged by the store; the sweeper removes it later
                log.warning("could not drop upload part %s: %s", part_id, exc)


class OrphanParts:
    """The sweeper's part for the staging store: parts whose upload is gone (the sweeper
    removed an expired upload's row) and stored parts no row names (a node stopped
    between storing a part and recording it), once older than the grace period."""

    def __init__(self, db: Database, store: SweptBlobStore) -> None:
        self.db = db
        self.store = store

    def sweep(self, now: float, grace: float, dry_run: bool) -> list[SweepItem]:
        cutoff = now - grace
        with self.db.read() as conn:
            rows = {
                row.part_id: row.upload_id
                for row in conn.execute(select(P.c.part_id, P.c.upload_id))
            }
            live = {row.id for row in conn.execute(select(U.c.id))}
        stored = [found for found in self.store.stored() if found.mtime < cutoff]
        unused = [
            found
            for found in stored
            if found.blob_id is not None and rows.get(found.blob_id, "") not in live
        ]
        leftovers = [found for found in stored if found.blob_id is None]
        items = [SweepItem("upload-part", str(found.blob_id), found.size) for found in unused]
        items += [
            SweepItem("leftover", self.store.leftover_name(found), found.size)
            for found in leftovers
        ]
        orphan_rows = [part for part, upload in rows.items() if upload not in live]
        if dry_run:
            return items
        if orphan_rows:
            with self.db.write() as conn:
                conn.execute(delete(P).where(P.c.part_id.in_(orphan_rows)))
        for found in unused:
            self.store.delete(str(found.blob_id))
        for found in leftovers:
            self.store.remove_leftover(found)
        return items


__all__ = ["Known", "OrphanParts", "SharedStaging"]
