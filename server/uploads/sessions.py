"""tus 1.0.0 upload sessions: create, append, report the offset, terminate, publish.

The protocol is written here rather than taken from a library. We looked at the
maintained Python tus servers (asgi-tus, tussi, tuspyserver, fastapi-tusd,
resumable-upload): each keeps its own storage layout and metadata files and
calls back once a file is done. None lets the last PATCH publish the revision in
our database transaction together with its change row, keeps a running
whole-file SHA-256 across PATCHes (so completion never re-reads the bytes), or
checks ownership against our credentials.

Bytes are staged in ``<upload_dir>/<id>.part``: buffered into pieces, written and
hashed off the event loop (hashlib releases the GIL), fsynced before the new
offset is recorded, so the offset ``HEAD`` reports is always durable. Receiving a
body is in ``uploads.receive``, the per-upload locks in ``uploads.live``, and removing
expired uploads in ``uploads.expiry``. With blobs in an object store, every PATCH's bytes
are kept there too (``uploads.shared_staging``), so the next PATCH may go to another node.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sqlalchemy import Connection

from dropline.server.files.entries import FileService
from dropline.server.files.records import Entry
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.storage.blobs import BlobStore
from dropline.server.storage.db import Database
from dropline.server.storage.integrity import ChunkSummer
from dropline.server.storage.space import insufficient_storage, out_of_space
from dropline.server.uploads.expiry import UploadExpiry
from dropline.server.uploads.live import LiveUpload, LiveUploads
from dropline.server.uploads.publish import Publisher
from dropline.server.uploads.receive import BodyCut, append
from dropline.server.uploads.rows import UploadRows, UploadState, state_of
from dropline.server.uploads.shared_staging import Known, SharedStaging
from dropline.server.uploads.staging import create_empty, rehash_staged, remove_quietly
from dropline.server.uploads.tus import (
    OFFSET_OCTET_STREAM,
    UploadTarget,
    parse_checksum,
    parse_metadata,
    parse_number,
    parse_repr_digest,
    target_from_metadata,
)

log = logging.getLogger(__name__)

EARLY_CHECK_BYTES = 1024 * 1024  # above this, preconditions are checked before any byte


class UploadService:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        files: FileService,
        upload_dir: Path,
        max_size: int,
        expiry_seconds: float,
        shared: SharedStaging | None = None,
    ) -> None:
        self.db = db
        self.shared = shared  # None: each upload is staged on this node's disk only
        self.blobs = blobs
        self.files = files
        self.upload_dir = upload_dir
        self.max_size = max_size
        self.expiry_seconds = expiry_seconds
        self.rows = UploadRows(db)
        self.publisher = Publisher(db, blobs, files)
        self.live = LiveUploads()
        self.expiry = UploadExpiry(self.rows, self.live, upload_dir, self._forget)

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The pool for upload disk work (batch uploads share it)."""
        return self.live.executor

    def close(self) -> None:
        self.live.close()

    def _staged_path(self, upload_id: str) -> Path:
        return self.upload_dir / f"{upload_id}.part"

    def _forget(self, upload_id: str) -> None:
        """Drop an upload's row and staged bytes."""
        if self.shared is not None:
            self.shared.forget(upload_id)
        self.rows.delete(upload_id)
        remove_quietly(self._staged_path(upload_id))

    # -- publishing --------------------------------------------------------------

    async def _complete(
        self,
        principal: Principal,
        upload_id: str,
        live: LiveUpload,
        length: int,
        target: UploadTarget,
        record: Callable[[Connection, Entry], None],
    ) -> Entry:
        entry = await self.live.run(
            self.publisher.complete,
            principal,
            upload_id,
            self._staged_path(upload_id),
            live.hasher.hexdigest(),
            # Sums taken while the bytes arrived, if they cover exactly the whole file.
            live.sums.sums() if live.sums is not None and live.sums.size == length else None,
            length,
            target,
            record,
            functools.partial(self._forget, upload_id),
        )
        if self.shared is not None:
            try:
                await self.live.run(self.shared.forget, upload_id)  # published: parts done
            except Exception as exc:  # published all the same; the sweeper drops them later
                log.warning("upload %s: its parts stay for the sweeper: %s", upload_id, exc)
        return entry

    def _rebuild(self, upload_id: str, offset: int, live: LiveUpload) -> tuple[Any, str | None]:
        """The staged file's first ``offset`` bytes made right again, their running SHA-256
        and the part they end with: from the parts in the object store (only those after
        this node's copy, while it is still a prefix), or cut back on this node's disk."""
        staged = self._staged_path(upload_id)
        if self.shared is not None:
            known = None if live.hasher is None else Known(live.offset, live.part, live.hasher)
            return self.shared.restore(upload_id, staged, offset, known)
        return rehash_staged(staged, offset), None

    # -- the tus operations ------------------------------------------------------

    async def create(
        self,
        principal: Principal,
        *,
        upload_length: str | None,
        defer_length: str | None,
        metadata: str | None,
        body: AsyncIterator[bytes] | None,
        content_length: int | None,
    ) -> UploadState:
        """tus creation (and creation-with-upload when ``body`` is given)."""
        if defer_length is not None:
            raise Problem("bad-request", "Upload-Defer-Length is not supported; send Upload-Length")
        length = parse_number(upload_length, "Upload-Length")
        if length is None:
            raise Problem("bad-request", "Upload-Length is required")
        if length > self.max_size:
            raise Problem(
                "too-large",
                f"uploads are limited to {self.max_size} bytes",
                headers={"Tus-Max-Size": str(self.max_size)},
            )
        target = target_from_metadata(parse_metadata(metadata))
        raw_metadata = (metadata or "").strip()
        if content_length is not None and content_length > length:
            raise Problem("too-large", "the body is longer than Upload-Length")
        data_follows = body is not None and (content_length is None or content_length > 0)
        if body is not None and data_follows and content_length == length <= EARLY_CHECK_BYTES:
            return await self._create_whole(principal, length, target, raw_metadata, body)
        early = length > EARLY_CHECK_BYTES or not data_follows or (content_length or 0) < length
        if early or self.files.hooks:

            def prechecks() -> None:
                self.files.check(principal, "upload", target.path, length)
                if early:
                    # Refuse before the bytes travel when the publish could not succeed.
                    self.files.check_publish(principal, target.path, target.if_rev)

            await asyncio.to_thread(prechecks)

        upload_id = uuid.uuid4().hex
        live = LiveUpload(hasher=hashlib.sha256(), sums=ChunkSummer(), offset=0, users=1)
        self.live.add(upload_id, live)
        persisted = False
        offset = 0
        try:
            async with live.lock:
                if data_follows and body is not None:
                    offset, cut = await append(
                        self.live, self._staged_path(upload_id), live, 0, length, None, body
                    )
                    if cut:
                        # The client never learns the upload URL from a cut POST: the
                        # bytes cannot be resumed, so keep nothing.
                        await self.live.run(remove_quietly, self._staged_path(upload_id))
                        raise BodyCut()
                elif length == 0 or not data_follows:
                    await self.live.run(create_empty, self._staged_path(upload_id))
                now = time.time()
                if offset == length:

                    def record(conn: Connection, entry: Entry) -> None:
                        self.rows.insert(
                            conn,
                            principal,
                            upload_id,
                            length,
                            length,
                            target,
                            raw_metadata,
                            now,
                            now + self.expiry_seconds,
                            entry,
                        )

                    entry = await self._complete(principal, upload_id, live, length, target, record)
                    persisted = True
                    return UploadState(
                        upload_id,
                        length,
                        length,
                        now + self.expiry_seconds,
                        raw_metadata,
                        entry.id,
                        entry.rev,
                        entry,
                    )

                part_id = None
                if self.shared is not None and offset > 0:
                    part_id = await self.live.run(
                        self.shared.save, self._staged_path(upload_id), 0, offset
                    )

                def insert() -> None:
                    with self.db.write() as conn:
                        if part_id is not None:
                            SharedStaging.add(conn, upload_id, 0, offset, part_id)
                        self.rows.insert(
                            conn,
                            principal,
                            upload_id,
                            length,
                            offset,
                            target,
                            raw_metadata,
                            now,
                            now + self.expiry_seconds,
                        )

                await self.live.run(insert)
                persisted = True
                live.part = part_id
                return UploadState(
                    upload_id, length, offset, now + self.expiry_seconds, raw_metadata
                )
        finally:
            live.users -= 1
            if not persisted or offset == length:
                self.live.discard(upload_id)
            if not persisted:
                await asyncio.shield(self.live.run(remove_quietly, self._staged_path(upload_id)))

    async def _create_whole(
        self,
        principal: Principal,
        length: int,
        target: UploadTarget,
        raw_metadata: str,
        body: AsyncIterator[bytes],
    ) -> UploadState:
        """Creation-with-upload of a whole small file: the body is gathered on the event
        loop (at most ``EARLY_CHECK_BYTES``), then checked, staged, fsynced, verified and
        published in one trip to a worker thread instead of one trip per step."""
        chunks: list[bytes] = []
        received = 0
        async for chunk in body:  # BodyCut propagates: nothing was staged
            received += len(chunk)
            if received > length:
                raise Problem("too-large", "more bytes than Upload-Length leaves room for")
            chunks.append(chunk)
        if received != length:
            raise Problem("bad-request", "the body is shorter than its Content-Length")
        upload_id = uuid.uuid4().hex
        now = time.time()
        # Registered while it runs, so the expiry sweep leaves its staged bytes alone.
        self.live.add(upload_id, LiveUpload(offset=0, users=1))
        expires_at = now + self.expiry_seconds

        def record(conn: Connection, entry: Entry) -> None:
            self.rows.insert(
                conn,
                principal,
                upload_id,
                length,
                length,
                target,
                raw_metadata,
                now,
                expires_at,
                entry,
            )

        try:
            entry = await self.live.run(
                self.publisher.publish_whole,
                principal,
                upload_id,
                self._staged_path(upload_id),
                chunks,
                target,
                record,
            )
        finally:
            self.live.discard(upload_id)
        return UploadState(
            upload_id,
            length,
            length,
            now + self.expiry_seconds,
            raw_metadata,
            entry.id,
            entry.rev,
            entry,
        )

    async def _fresh_row(self, principal: Principal, upload_id: str, live: LiveUpload) -> Any:
        """The upload's row, checked for expiry, with the running hash in step with it."""
        row = await asyncio.to_thread(self.rows.load, principal, upload_id)
        if row.entry_id is None and row.expires_at < time.time():
            raise Problem("upload-expired", "this upload expired; start a new one")
        if row.entry_id is None and (live.hasher is None or live.offset != row.offset):
            live.sums = None  # the blob store computes them at publish
            rebuilt = await self.live.run(self._rebuild, upload_id, int(row.offset), live)
            live.hasher, live.part = rebuilt
            live.offset = int(row.offset)
        return row

    async def head(self, principal: Principal, upload_id: str) -> UploadState:
        await asyncio.to_thread(self.rows.load, principal, upload_id)  # 404 before any waiting
        live = await self.live.lock(upload_id)
        keep = False
        try:
            row = await asyncio.to_thread(self.rows.load, principal, upload_id)
            if row.entry_id is None and row.expires_at < time.time():
                raise Problem("upload-expired", "this upload expired; start a new one")
            keep = live.hasher is not None and row.entry_id is None
            return state_of(row)
        finally:
            self.live.release(upload_id, live, keep)

    async def append(
        self,
        principal: Principal,
        upload_id: str,
        *,
        upload_offset: str | None,
        checksum: str | None,
        content_type: str | None,
        content_length: int | None,
        body: AsyncIterator[bytes],
        repr_digest: str | None = None,
    ) -> tuple[UploadState, bool]:
        """tus PATCH; returns (state, cut short).

        ``repr_digest`` (``Repr-Digest: sha-256=:...:``) declares the whole file's SHA-256
        when the upload was created without one (a client that hashes while it sends):
        checked when the last byte arrives exactly like a ``sha256`` in the metadata.
        """
        if (content_type or "").split(";")[0].strip().lower() != OFFSET_OCTET_STREAM:
            raise Problem(
                "unsupported-media-type", f"PATCH needs Content-Type: {OFFSET_OCTET_STREAM}"
            )
        offset = parse_number(upload_offset, "Upload-Offset")
        if offset is None:
            raise Problem("bad-request", "Upload-Offset is required")
        parsed_checksum = parse_checksum(checksum)
        declared = parse_repr_digest(repr_digest)
        await asyncio.to_thread(self.rows.load, principal, upload_id)  # 404 before any waiting
        live = await self.live.lock(upload_id)
        keep = True
        try:
            row = await self._fresh_row(principal, upload_id, live)
            state = state_of(row)
            if offset != state.offset:
                raise Problem(
                    "offset-mismatch",
                    f"the upload is at offset {state.offset}, not {offset}",
                    headers={"Upload-Offset": str(state.offset)},
                )
            if state.entry_id is not None:
                if content_length:
                    raise Problem("too-large", "the upload is already complete")
                keep = False
                return state, False
            if content_length is not None and offset + content_length > state.length:
                raise Problem("too-large", "more bytes than Upload-Length leaves room for")
            if declared is not None and row.sha256 is not None and declared != row.sha256:
                raise Problem(
                    "validation",
                    "Repr-Digest differs from the sha256 this upload declared; nothing was "
                    "written (start a new upload for other content)",
                )
            new_offset, cut = await append(
                self.live,
                self._staged_path(upload_id),
                live,
                offset,
                state.length,
                parsed_checksum,
                body,
            )
            recorded = declared if row.sha256 is None else None
            expires_at = time.time() + self.expiry_seconds
            try:
                if self.shared is not None and new_offset > offset:
                    live.part = await self._record_part(
                        upload_id, offset, new_offset, expires_at, recorded
                    )
                else:
                    await asyncio.to_thread(
                        self.rows.record_offset, upload_id, new_offset, expires_at, recorded
                    )
            except Exception as exc:
                # The row keeps the old offset; the next request cuts the staged bytes
                # back to it and rebuilds the hash.
                live.hasher = None
                if out_of_space(exc):
                    raise insufficient_storage("the chunk") from exc
                raise
            state = UploadState(state.id, state.length, new_offset, expires_at, state.metadata)
            if new_offset == state.length:
                target = UploadTarget(
                    row.target_path, row.sha256 or declared, row.mtime, row.if_rev
                )

                def record(conn: Connection, entry: Entry) -> None:
                    self.rows.mark_published(conn, upload_id, entry, state.length)

                keep = False
                try:
                    entry = await self._complete(
                        principal, upload_id, live, state.length, target, record
                    )
                except Problem as problem:
                    # A full disk, or an object store away: the client resends its last
                    # chunk later, and that publishes.
                    if problem.slug in ("insufficient-storage", "unavailable"):
                        keep = True
                        await self._rewind(upload_id, live, offset, expires_at)
                    raise
                state = UploadState(
                    state.id,
                    state.length,
                    state.length,
                    expires_at,
                    state.metadata,
                    entry.id,
                    entry.rev,
                    entry,
                )
            return state, cut
        except Problem as problem:
            if problem.slug in ("integrity", "precondition-failed", "already-exists", "conflict"):
                keep = False
            raise
        finally:
            self.live.release(upload_id, live, keep)

    async def _rewind(
        self, upload_id: str, live: LiveUpload, offset: int, expires_at: float
    ) -> None:
        """A publish the full disk refused: back to ``offset``, where this PATCH started,
        so a client resumes by sending its last chunk again (which publishes), and the
        chunk's bytes are freed now. If even that fails, the upload stays complete and
        unpublished, and an empty PATCH at its length publishes it."""
        try:
            await asyncio.to_thread(self.rows.record_offset, upload_id, offset, expires_at)
            if self.shared is not None:
                await self.live.run(self.shared.truncate, upload_id, offset)
            live.sums = None
            live.hasher = await self.live.run(rehash_staged, self._staged_path(upload_id), offset)
            live.offset = offset
            live.part = None  # the part before this PATCH's: not known here
        except Exception:
            live.hasher = None
            log.warning("upload %s: could not step back after a full disk", upload_id)

    async def _record_part(
        self, upload_id: str, offset: int, new_offset: int, expires_at: float, sha256: str | None
    ) -> str:
        """Keep this PATCH's bytes in the object store, then move the offset if no other
        node moved it meanwhile (``uploads.shared_staging``); returns the part's id."""
        assert self.shared is not None
        part_id = await self.live.run(
            self.shared.save, self._staged_path(upload_id), offset, new_offset
        )
        moved = await self.live.run(
            self.shared.record, upload_id, offset, new_offset, part_id, expires_at, sha256
        )
        if not moved:
            raise Problem(
                "offset-mismatch",
                "another request moved this upload on meanwhile; ask HEAD for its offset",
            )
        return part_id

    async def terminate(self, principal: Principal, upload_id: str) -> None:
        await asyncio.to_thread(self.rows.load, principal, upload_id)
        live = await self.live.lock(upload_id)
        try:
            await asyncio.to_thread(self.rows.load, principal, upload_id)
            await self.live.run(self._forget, upload_id)
        finally:
            self.live.release(upload_id, live, keep=False)

    # -- expiry --------------------------------------------------------------------

    async def cleanup_expired(self, now: float | None = None) -> int:
        """Remove expired uploads (rows and bytes); returns how many went."""
        now = time.time() if now is None else now
        return await self.expiry.cleanup(now, self.expiry_seconds)
