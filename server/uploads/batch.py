"""Batch uploads of small files: many files in one ``multipart/form-data`` request.

One HTTP round trip per 4 KiB file costs more than the file itself, so
``POST /api/v1/uploads/batch`` takes a JSON manifest part followed by one part per
file. Each file is checked exactly like a tus upload (name, declared SHA-256,
``if_rev``, policy, quota) and every file that passes is published in ONE database
transaction (each in a savepoint of its own, so one bad file fails alone), with its
change row, audit row and ``file.uploaded`` event, after every file is fsynced (from
many threads at once, so the file system commits them together) and the blob
directories they went into.

The body is parsed with python-multipart's streaming parser in worker threads, a
piece at a time, as it arrives: nothing of it is held whole in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import logging
import math
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from dropline.server.files.entries import FileService
from dropline.server.files.events import record_upload_failed
from dropline.server.files.names import normalize_path
from dropline.server.files.records import Entry, Publication
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.storage.blobs import BlobStore, new_blob_id
from dropline.server.storage.db import Database
from dropline.server.storage.space import insufficient_storage, out_of_space

log = logging.getLogger(__name__)

MAX_FILES = 1000
MAX_BYTES = 64 * 1024 * 1024  # the files' bytes in one batch
MAX_MANIFEST_BYTES = 1024 * 1024
# Multipart framing around each part (boundary, headers) on top of the bytes above.
PART_OVERHEAD = 1024
MAX_BODY = MAX_BYTES + MAX_MANIFEST_BYTES + (MAX_FILES + 1) * PART_OVERHEAD
PIECE_SIZE = 1024 * 1024  # body bytes handed to the parsing thread at a time
# Threads that fsync and store a batch's files at once (see _store); a slice holds at
# least SYNC_SLICE_MIN files, so a small batch is not spread thinner than it pays.
SYNC_THREADS = 16
SYNC_SLICE_MIN = 4
STAGED_SUFFIX = ".batch"  # staged files in the upload directory; a crash's leftovers are swept

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_REV = re.compile(r"^[0-9A-Za-z_-]{1,32}$")
_MANIFEST_KEYS = frozenset({"path", "sha256", "mtime", "if_rev"})
T = TypeVar("T")
_SYNC_POOL = ThreadPoolExecutor(max_workers=SYNC_THREADS, thread_name_prefix="batch-sync")


@dataclass(slots=True)
class BatchItem:
    """One manifest entry and, once its part arrived, what was received for it."""

    index: int
    given_path: str
    path: str | None = None
    sha256: str | None = None
    mtime: float | None = None
    if_rev: str | None = None
    problem: Problem | None = None  # set as soon as this file cannot be published
    staged: Path | None = None
    size: int = 0
    digest: str | None = None
    entry: Entry | None = None  # set once published


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The outcome for one file, in manifest order: its entry or its problem."""

    index: int
    path: str
    entry: Entry | None = None
    problem: Problem | None = None

    def to_json(self) -> dict[str, Any]:
        if self.entry is not None:
            return {
                "index": self.index,
                "path": self.path,
                "status": 201,
                "entry": self.entry.to_json(),
            }
        assert self.problem is not None
        return {
            "index": self.index,
            "path": self.path,
            "status": self.problem.status,
            "problem": self.problem.body(),
        }


def parse_boundary(content_type: str | None) -> bytes:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data":
        raise Problem(
            "unsupported-media-type", "a batch upload is multipart/form-data (manifest, then files)"
        )
    boundary = options.get(b"boundary")
    if not boundary or len(boundary) > 70:
        raise Problem("bad-request", "the multipart boundary is missing or longer than 70 bytes")
    return boundary


def parse_manifest(raw: bytes) -> list[BatchItem]:
    """The manifest part: ``{"files": [{"path", "sha256", "mtime"?, "if_rev"?}, ...]}``.

    A malformed manifest fails the whole batch; a bad entry fails only its own file.
    """
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Problem("bad-request", "the manifest part is not JSON") from None
    files = doc.get("files") if isinstance(doc, dict) else None
    if not isinstance(files, list) or not files:
        raise Problem("validation", "the manifest needs a non-empty list 'files'")
    if len(files) > MAX_FILES:
        raise Problem("too-large", f"a batch holds at most {MAX_FILES} files")
    items: list[BatchItem] = []
    seen: set[str] = set()
    for index, spec in enumerate(files):
        given = spec.get("path") if isinstance(spec, dict) else None
        item = BatchItem(index, given if isinstance(given, str) else "")
        try:
            _fill(item, spec)
        except Problem as problem:
            item.problem = problem
        if item.path is not None and item.problem is None:
            if item.path in seen:
                item.problem = Problem("validation", f"{item.path} is in this batch twice")
            seen.add(item.path)
        items.append(item)
    return items


def _fill(item: BatchItem, spec: object) -> None:
    if not isinstance(spec, dict):
        raise Problem("validation", "each manifest entry is an object")
    unknown = sorted(set(spec) - _MANIFEST_KEYS)
    if unknown:
        raise Problem("validation", f"unknown manifest key(s): {', '.join(unknown)}")
    item.path = normalize_path(spec.get("path"))  # type: ignore[arg-type]
    sha256 = spec.get("sha256")
    if not isinstance(sha256, str) or not _SHA256.match(sha256.lower()):
        raise Problem("validation", "'sha256' (64 hex digits) is required for every file")
    item.sha256 = sha256.lower()
    mtime = spec.get("mtime")
    if mtime is not None:
        if isinstance(mtime, bool) or not isinstance(mtime, int | float):
            raise Problem("validation", "'mtime' must be seconds since the epoch")
        if not math.isfinite(mtime) or mtime < 0:
            raise Problem("validation", "'mtime' must be seconds since the epoch")
        item.mtime = float(mtime)
    if_rev = spec.get("if_rev")
    if if_rev is not None and (not isinstance(if_rev, str) or not _REV.match(if_rev)):
        raise Problem("validation", "'if_rev' must be a rev or 'none'")
    item.if_rev = if_rev


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    field_name: bytearray = field(default_factory=bytearray)
    field_value: bytearray = field(default_factory=bytearray)
    item: BatchItem | None = None
    fd: int = -1
    hasher: Any = None


class _Receiver:
    """The multipart body, parsed as it comes (always in a worker thread, one piece at a
    time): the manifest into items, every file part into a staged file of its own."""

    def __init__(self, boundary: bytes, staging: Path, batch_id: str) -> None:
        self.staging = staging
        self.batch_id = batch_id
        self.items: list[BatchItem] | None = None
        self.manifest = bytearray()
        self.parts = 0  # parts begun, the manifest included
        self.file_bytes = 0
        self.ended = False
        self.part = _Part()
        self.parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    def feed(self, pieces: Sequence[bytes]) -> None:
        for piece in pieces:
            if self.ended:
                return  # an epilogue after the closing boundary is ignored
            try:
                self.parser.write(piece)
            except MultipartParseError:
                raise Problem("bad-request", "the multipart body is malformed") from None

    def close_open_part(self) -> None:
        if self.part.fd >= 0:
            os.close(self.part.fd)
            self.part.fd = -1

    # -- parser callbacks -------------------------------------------------------------

    def _part_begin(self) -> None:
        self.part = _Part()
        self.parts += 1

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self.part.field_name += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self.part.field_value += data[start:end]

    def _header_end(self) -> None:
        part = self.part
        part.headers[bytes(part.field_name).strip().lower()] = bytes(part.field_value).strip()
        part.field_name.clear()
        part.field_value.clear()

    def _headers_finished(self) -> None:
        _kind, options = parse_options_header(self.part.headers.get(b"content-disposition"))
        name = options.get(b"name")
        if self.parts == 1:
            if name != b"manifest":
                raise Problem("validation", "the first part of a batch is the 'manifest'")
            return
        if name != b"file":
            raise Problem("validation", "every part after the manifest is a 'file'")
        assert self.items is not None  # the manifest part ended before this one began
        index = self.parts - 2
        if index >= len(self.items):
            raise Problem("validation", f"more file parts than the {len(self.items)} listed")
        item = self.items[index]
        item.staged = self.staging / f"{self.batch_id}-{index}{STAGED_SUFFIX}"
        self.part.item = item
        self.part.hasher = hashlib.sha256()
        self.part.fd = os.open(item.staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        part = self.part
        if part.item is None:
            if len(self.manifest) + end - start > MAX_MANIFEST_BYTES:
                raise Problem("too-large", f"the manifest is over {MAX_MANIFEST_BYTES} bytes")
            self.manifest += data[start:end]
            return
        self.file_bytes += end - start
        if self.file_bytes > MAX_BYTES:
            raise Problem("too-large", f"a batch holds at most {MAX_BYTES} bytes of files")
        view = memoryview(data)[start:end]
        part.hasher.update(view)
        part.item.size += len(view)
        while view:
            view = view[os.write(part.fd, view) :]

    def _part_end(self) -> None:
        part = self.part
        if part.item is None:
            self.items = parse_manifest(bytes(self.manifest))
            return
        part.item.digest = part.hasher.hexdigest()
        # Made durable at publish, all of the batch's files at once (see _store).
        self.close_open_part()

    def _end(self) -> None:
        self.ended = True


def _sync_and_put(blobs: BlobStore, items: Sequence[tuple[str, Path]]) -> None:
    for _blob_id, path in items:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # the bytes are durable before the store's rename publishes them
        finally:
            os.close(fd)
    blobs.put_many(items)


def _store(blobs: BlobStore, items: Sequence[tuple[str, Path]]) -> None:
    """Hand the staged files to the blob store, durably, in parallel slices.

    One file after another, each fsync (the file's, then its sums') waits for its own
    journal commit: about 360 a second on this kind of disk. Issued from many threads at
    once, the file system commits them together: over 5,000 a second. So the batch is cut
    into slices, each fsynced and stored by a thread of a pool that every batch shares.
    """
    if not items:
        return
    slices = min(SYNC_THREADS, math.ceil(len(items) / SYNC_SLICE_MIN))
    size = math.ceil(len(items) / slices)
    parts = [items[i : i + size] for i in range(0, len(items), size)]
    if len(parts) == 1:
        _sync_and_put(blobs, parts[0])
        return
    futures = [_SYNC_POOL.submit(_sync_and_put, blobs, part) for part in parts]
    errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error


class BatchUploads:
    """``POST /api/v1/uploads/batch``: receive, verify and publish many small files."""

    def __init__(
        self,
        db: Database,
        blobs: BlobStore,
        files: FileService,
        upload_dir: Path,
        executor: Executor,
    ) -> None:
        self.db = db
        self.blobs = blobs
        self.files = files
        self.staging = upload_dir
        self.executor = executor

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        # The request's context (request id, source address, tenant) goes along.
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, ctx.run, fn, *args)

    async def upload(
        self,
        principal: Principal,
        *,
        content_type: str | None,
        content_length: int | None,
        body: AsyncIterator[bytes],
    ) -> list[BatchResult]:
        """Receive the whole batch and publish what passes; results in manifest order.

        Errors of the batch as a whole (not multipart, a malformed manifest, over the
        limits, a body that ends early) raise a problem and publish nothing.
        """
        boundary = parse_boundary(content_type)
        if content_length is not None and content_length > MAX_BODY:
            raise Problem("too-large", f"a batch holds at most {MAX_BYTES} bytes of files")
        receiver = _Receiver(boundary, self.staging, uuid.uuid4().hex)
        received = 0
        try:
            pending: asyncio.Future[None] | None = None
            buf: list[bytes] = []
            buffered = 0
            try:
                async for chunk in body:
                    received += len(chunk)
                    if received > MAX_BODY:
                        raise Problem(
                            "too-large", f"a batch holds at most {MAX_BYTES} bytes of files"
                        )
                    buf.append(chunk)
                    buffered += len(chunk)
                    if buffered >= PIECE_SIZE:
                        if pending is not None:
                            await pending
                        # Parsed and written while the next piece arrives.
                        pending = asyncio.ensure_future(self._run(receiver.feed, buf))
                        buf, buffered = [], 0
            finally:
                if pending is not None:
                    await asyncio.wait({pending})
            if pending is not None:
                pending.result()
            return await self._run(self._finish, principal, receiver, buf)
        except BaseException as exc:
            await asyncio.shield(self._run(self._discard, receiver))
            if out_of_space(exc):
                raise insufficient_storage(
                    "the batch", "send it again once space is freed"
                ) from exc
            raise

    def _discard(self, receiver: _Receiver) -> None:
        receiver.close_open_part()
        for item in receiver.items or ():
            if item.staged is not None:
                with contextlib.suppress(FileNotFoundError):
                    item.staged.unlink()

    def _finish(
        self, principal: Principal, receiver: _Receiver, rest: list[bytes]
    ) -> list[BatchResult]:
        receiver.feed(rest)
        if not receiver.ended:
            raise Problem("bad-request", "the multipart body ended before its closing boundary")
        items = receiver.items
        if items is None:
            raise Problem("validation", "the batch has no manifest part")
        if receiver.parts - 1 != len(items):
            raise Problem(
                "validation",
                f"the manifest lists {len(items)} files but {receiver.parts - 1} file parts came",
            )
        ready: list[BatchItem] = []
        for item in items:
            if item.problem is None and item.digest != item.sha256:
                item.problem = Problem(
                    "integrity",
                    f"the bytes of {item.path} have SHA-256 {item.digest}, not the declared "
                    f"{item.sha256}; it was not published",
                )
                self._failed(principal, receiver, item)
            if item.problem is None:
                assert item.path is not None
                try:
                    # Policy (size, extension, folders, quota) before anything is stored.
                    self.files.check(principal, "upload", item.path, item.size)
                except Problem as problem:
                    item.problem = problem
            if item.problem is None:
                ready.append(item)
        try:
            self._publish(principal, receiver, ready)
        finally:
            self._discard(receiver)  # whatever was not published
        return [BatchResult(i.index, i.given_path, i.entry, i.problem) for i in items]

    def _publish(self, principal: Principal, receiver: _Receiver, ready: list[BatchItem]) -> None:
        if not ready:
            return
        # Every blob of the batch in one shard directory: one directory fsync for all.
        shard = new_blob_id()[:2]
        blob_ids = [shard + new_blob_id()[2:] for _ in ready]
        staged = [(blob_id, item.staged) for blob_id, item in zip(blob_ids, ready, strict=True)]
        try:
            _store(self.blobs, [(blob_id, path) for blob_id, path in staged if path is not None])
        except BaseException:
            for blob_id in blob_ids:
                self.blobs.delete(blob_id)
            raise
        for item in ready:
            item.staged = None  # the blob store owns those bytes now
        publications = [
            Publication(i.path or "", blob_id, i.size, i.digest or "", i.mtime, i.if_rev)
            for i, blob_id in zip(ready, blob_ids, strict=True)
        ]
        try:
            outcomes = self.files.publish_many(principal, publications)
        except BaseException:
            for blob_id in blob_ids:
                self.blobs.delete(blob_id)
            raise
        for item, blob_id, outcome in zip(ready, blob_ids, outcomes, strict=True):
            if isinstance(outcome, Problem):
                item.problem = outcome
                self.blobs.delete(blob_id)
                self._failed(principal, receiver, item)
            else:
                item.entry = outcome

    def _failed(self, principal: Principal, receiver: _Receiver, item: BatchItem) -> None:
        """``upload.failed`` for a file whose bytes arrived but could not be published,
        as for a tus upload; its ``upload_id`` names the batch and the file's place in it."""
        assert item.problem is not None
        record_upload_failed(
            self.db,
            principal,
            f"{receiver.batch_id}-{item.index}",
            item.path or item.given_path,
            item.problem.slug,
            item.problem.detail or item.problem.title,
        )


__all__ = ["MAX_BYTES", "MAX_FILES", "BatchResult", "BatchUploads", "parse_manifest"]
