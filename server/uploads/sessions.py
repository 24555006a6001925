"""tus 1.0.0 upload sessions: create, append, report the offset, terminate, expire, publish.

The protocol is written here rather than taken from a library. We looked at the
maintained Python tus servers (asgi-tus, tussi, tuspyserver, fastapi-tusd,
resumable-upload): each keeps its own storage layout and metadata files and
calls back once a file is done. None lets the last PATCH publish the revision in
our database transaction together with its change row, keeps a running
whole-file SHA-256 across PATCHes (so completion never re-reads the bytes), or
checks ownership against our credentials.

Bytes are staged in ``<upload_dir>/<id>.part``: buffered into pieces, written and
hashed off the event loop (hashlib releases the GIL), fsynced before the new
offset is recorded, so the offset ``HEAD`` reports is always durable.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import hashlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection

from dropline.server.files.entries import Entry, FileService
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.storage.blobs import BlobStore
from dropline.server.storage.db import Database
from dropline.server.uploads.publish import Publisher
from dropline.server.uploads.rows import UploadRows, UploadState, state_of
from dropline.server.uploads.staging import StagedFile, rehash_staged, remove_quietly
from dropline.server.uploads.tus import (
    CHECKSUMS,
    OFFSET_OCTET_STREAM,
    TUS_EXTENSIONS,
    TUS_VERSION,
    UploadTarget,
    parse_checksum,
    parse_metadata,
    parse_number,
    parse_repr_digest,
    target_from_metadata,
)

log = logging.getLogger(__name__)

# Body bytes gathered before one write+hash off the loop. Measured on 1 GiB: 1 MiB
# pieces cost about 1.7 s of server CPU, 4 MiB 2.6 s and 16 MiB 3.5 s: small pieces
# are still in the CPU cache when they are hashed after being written.
PIECE_SIZE = 1024 * 1024
MAX_PIECES = 512  # below IOV_MAX (1024) for one pwritev, even with tiny ASGI chunks
LOCK_WAIT_SECONDS = 10.0  # how long a request waits for another one on the same upload
EARLY_CHECK_BYTES = 1024 * 1024  # above this, preconditions are checked before any byte
BATCH_LEFTOVER_SECONDS = 3600.0

T = TypeVar("T")

__all__ = [
    "OFFSET_OCTET_STREAM",
    "TUS_EXTENSIONS",
    "TUS_VERSION",
    "BodyCut",
    "UploadService",
    "UploadState",
    "UploadTarget",
]


class BodyCut(Exception):
    """The client went away in the middle of the request body."""


@dataclass
class _Live:
    """In-memory state of one upload: its lock and the running whole-file hash."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    hasher: Any = None  # hashlib object covering bytes [0, offset); None: rebuild from disk
    offset: int = -1
    users: int = 0  # requests holding or waiting for the lock; forgotten only at zero


class UploadService:
    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        files: FileService,
        upload_dir: Path,
        max_size: int,
        expiry_seconds: float,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.files = files
        self.upload_dir = upload_dir
        self.max_size = max_size
        self.expiry_seconds = expiry_seconds
        self.rows = UploadRows(db)
        self.publisher = Publisher(db, blobs, files)
        self._live: dict[str, _Live] = {}
        # Our own pool: a slow disk must not starve the request thread pool, and
        # pipelined writes need a future we can start and await later.
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="upload-io")

    @property
    def executor(self) -> ThreadPoolExecutor:
        """The pool for upload disk work (batch uploads share it)."""
        return self._executor

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        # The request's context (request id, source address for audit rows) goes along.
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._executor, ctx.run, fn, *args)

    def _staged_path(self, upload_id: str) -> Path:
        return self.upload_dir / f"{upload_id}.part"

    def _forget(self, upload_id: str) -> None:
        """Drop an upload's row and staged bytes."""
        self.rows.delete(upload_id)
        remove_quietly(self._staged_path(upload_id))

    # -- receiving bytes ---------------------------------------------------------

    async def _receive(
        self,
        staged: StagedFile,
        start: int,
        room: int,
        body: AsyncIterator[bytes],
        hashers: Sequence[Any],
    ) -> tuple[int, bool]:
        """Append the body at ``start``; returns (bytes written and fsynced, cut short).

        Pieces are written while the next one is being received (one write in
        flight), so disk, hashing and the network overlap.
        """
        buf: list[bytes] = []
        buffered = 0
        written = 0
        pending: asyncio.Future[None] | None = None
        cut = False
        loop = asyncio.get_running_loop()
        try:
            try:
                async for chunk in body:
                    if written + buffered + len(chunk) > room:
                        raise Problem("too-large", "more bytes than Upload-Length leaves room for")
                    buf.append(chunk)
                    buffered += len(chunk)
                    if buffered >= PIECE_SIZE or len(buf) >= MAX_PIECES:
                        if pending is not None:
                            await pending
                        pending = loop.run_in_executor(
                            self._executor, staged.write, buf, start + written, hashers, False
                        )
                        written += buffered
                        buf = []
                        buffered = 0
            except BodyCut:
                cut = True
            if pending is not None:
                await pending
                pending = None
            await self._run(staged.write, buf, start + written, hashers, True)
            written += buffered
            return written, cut
        finally:
            if pending is not None and not pending.done():
                # Never leave a write running on a file about to be closed or truncated.
                await asyncio.wait({pending})

    async def _append(
        self,
        upload_id: str,
        live: _Live,
        start: int,
        length: int,
        checksum: tuple[str, bytes] | None,
        body: AsyncIterator[bytes],
    ) -> tuple[int, bool]:
        """Receive one request body into the upload; returns (new offset, cut short).

        A checksum mismatch, an oversize body or a cut connection under a checksum
        leaves the upload exactly as it was: bytes truncated, running hash restored.
        """
        staged = StagedFile(self._staged_path(upload_id))
        snapshot = live.hasher.copy()
        chunk_hasher = CHECKSUMS[checksum[0]]() if checksum else None
        hashers = [live.hasher] if chunk_hasher is None else [live.hasher, chunk_hasher]
        try:
            try:
                written, cut = await self._receive(staged, start, length - start, body, hashers)
                if chunk_hasher is not None and checksum is not None:
                    if cut:
                        raise BodyCut()
                    if chunk_hasher.digest() != checksum[1]:
                        raise Problem(
                            "checksum-mismatch",
                            f"the chunk's {checksum[0]} does not match Upload-Checksum; "
                            "it was discarded",
                        )
            except BaseException:
                await asyncio.shield(self._run(staged.truncate, start))
                live.hasher = snapshot
                live.offset = start
                raise
        finally:
            staged.close()  # closing a raw descriptor does no I/O worth a thread hop
        live.offset = start + written
        return start + written, cut

    # -- publishing --------------------------------------------------------------

    async def _complete(
        self,
        principal: Principal,
        upload_id: str,
        live: _Live,
        length: int,
        target: UploadTarget,
        record: Callable[[Connection, Entry], None],
    ) -> Entry:
        return await self._run(
            self.publisher.complete,
            principal,
            upload_id,
            self._staged_path(upload_id),
            live.hasher.hexdigest(),
            length,
            target,
            record,
            functools.partial(self._forget, upload_id),
        )

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
        live = _Live(hasher=hashlib.sha256(), offset=0, users=1)
        self._live[upload_id] = live
        persisted = False
        offset = 0
        try:
            async with live.lock:
                if data_follows and body is not None:
                    offset, cut = await self._append(upload_id, live, 0, length, None, body)
                    if cut:
                        # The client never learns the upload URL from a cut POST: the
                        # bytes cannot be resumed, so keep nothing.
                        await self._run(remove_quietly, self._staged_path(upload_id))
                        raise BodyCut()
                elif length == 0 or not data_follows:
                    await self._run(StagedFile(self._staged_path(upload_id)).write, [], 0, (), True)
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

                def insert() -> None:
                    with self.db.write() as conn:
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

                await self._run(insert)
                persisted = True
                return UploadState(
                    upload_id, length, offset, now + self.expiry_seconds, raw_metadata
                )
        finally:
            live.users -= 1
            if not persisted or offset == length:
                self._live.pop(upload_id, None)
            if not persisted:
                await asyncio.shield(self._run(remove_quietly, self._staged_path(upload_id)))

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
        self._live[upload_id] = _Live(offset=0, users=1)
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
            entry = await self._run(
                self.publisher.publish_whole,
                principal,
                upload_id,
                self._staged_path(upload_id),
                chunks,
                target,
                record,
            )
        finally:
            self._live.pop(upload_id, None)
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

    async def _locked(self, upload_id: str) -> _Live:
        live = self._live.setdefault(upload_id, _Live())
        live.users += 1
        try:
            await asyncio.wait_for(live.lock.acquire(), LOCK_WAIT_SECONDS)
        except TimeoutError:
            self._unuse(upload_id, live, keep=True)
            raise Problem("conflict", "another request is writing to this upload; retry") from None
        return live

    def _unuse(self, upload_id: str, live: _Live, keep: bool) -> None:
        live.users -= 1
        if not keep and live.users == 0 and self._live.get(upload_id) is live:
            self._live.pop(upload_id, None)

    async def _fresh_row(self, principal: Principal, upload_id: str, live: _Live) -> Any:
        """The upload's row, checked for expiry, with the running hash in step with it."""
        row = await asyncio.to_thread(self.rows.load, principal, upload_id)
        if row.entry_id is None and row.expires_at < time.time():
            raise Problem("upload-expired", "this upload expired; start a new one")
        if row.entry_id is None and (live.hasher is None or live.offset != row.offset):
            live.hasher = await self._run(
                rehash_staged, self._staged_path(upload_id), int(row.offset)
            )
            live.offset = int(row.offset)
        return row

    def _release(self, upload_id: str, live: _Live, keep: bool) -> None:
        live.lock.release()
        self._unuse(upload_id, live, keep)

    async def head(self, principal: Principal, upload_id: str) -> UploadState:
        await asyncio.to_thread(self.rows.load, principal, upload_id)  # 404 before any waiting
        live = await self._locked(upload_id)
        keep = False
        try:
            row = await asyncio.to_thread(self.rows.load, principal, upload_id)
            if row.entry_id is None and row.expires_at < time.time():
                raise Problem("upload-expired", "this upload expired; start a new one")
            keep = live.hasher is not None and row.entry_id is None
            return state_of(row)
        finally:
            self._release(upload_id, live, keep)

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
        live = await self._locked(upload_id)
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
            new_offset, cut = await self._append(
                upload_id, live, offset, state.length, parsed_checksum, body
            )
            recorded = declared if row.sha256 is None else None
            expires_at = time.time() + self.expiry_seconds
            await asyncio.to_thread(
                self.rows.record_offset, upload_id, new_offset, expires_at, recorded
            )
            state = UploadState(state.id, state.length, new_offset, expires_at, state.metadata)
            if new_offset == state.length:
                target = UploadTarget(
                    row.target_path, row.sha256 or declared, row.mtime, row.if_rev
                )

                def record(conn: Connection, entry: Entry) -> None:
                    self.rows.mark_published(conn, upload_id, entry, state.length)

                keep = False
                entry = await self._complete(
                    principal, upload_id, live, state.length, target, record
                )
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
            self._release(upload_id, live, keep)

    async def terminate(self, principal: Principal, upload_id: str) -> None:
        await asyncio.to_thread(self.rows.load, principal, upload_id)
        live = await self._locked(upload_id)
        try:
            await asyncio.to_thread(self.rows.load, principal, upload_id)
            await self._run(self._forget, upload_id)
        finally:
            self._release(upload_id, live, keep=False)

    # -- expiry --------------------------------------------------------------------

    def _sweep_orphans(self, now: float, busy: set[str]) -> int:
        """Staged files with no upload row (a server stopped mid-POST) are removed once old."""
        known = self.rows.ids()
        removed = 0
        for path in self.upload_dir.glob("*.part"):
            upload_id = path.stem
            if upload_id in known or upload_id in busy:
                continue
            try:
                if path.stat().st_mtime < now - self.expiry_seconds:
                    remove_quietly(path)
                    removed += 1
            except FileNotFoundError:
                continue
        # Batch uploads (uploads.batch) stage as *.batch and finish within one request;
        # one an hour old was left by a server that stopped.
        for path in self.upload_dir.glob("*.batch"):
            try:
                if path.stat().st_mtime < now - BATCH_LEFTOVER_SECONDS:
                    remove_quietly(path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    async def cleanup_expired(self, now: float | None = None) -> int:
        """Remove expired uploads (rows and bytes); returns how many went."""
        now = time.time() if now is None else now
        removed = 0
        for upload_id in await asyncio.to_thread(self.rows.expired_ids, now):
            live = self._live.get(upload_id)
            if live is not None and live.users > 0:
                continue  # a request is using it right now; the next round decides
            self._live.pop(upload_id, None)
            await self._run(self._forget, upload_id)
            removed += 1
        busy = set(self._live)
        removed += await self._run(self._sweep_orphans, now, busy)
        if removed:
            log.info("removed %s expired uploads", removed)
        return removed

    async def expiry_loop(self, interval: float) -> None:
        while True:
            try:
                await self.cleanup_expired()
            except Exception:  # retried next round; never fatal to the server
                log.exception("upload cleanup failed")
            await asyncio.sleep(interval)
