"""Blobs in an S3-compatible object store (AWS S3, MinIO, Ceph RGW, Garage), for servers
that share their storage (``DROPLINE_BLOB_URL=s3://BUCKET/PREFIX``).

Layout under the prefix, as on disk: ``blobs/<id[:2]>/<id>`` holds a blob's stored bytes
(ciphertext for tenants with encryption at rest: ``storage.encryption`` seals before it
gets here) and ``checksums/<id[:2]>/<id>`` its chunk sums (``storage.integrity``). The sums
are a companion object, not object metadata: metadata is capped at 2 KiB and a 50 GiB
blob has 1.6 MiB of sums; a companion object also keeps the layout, the damage checks and
the sweeper's view the same as the local store's. Keys are built from validated blob ids
only, never from user input.

A put is one PUT (a managed multipart upload for big blobs), which S3 makes visible whole
or not at all: the atomic publish a rename gives on disk. The sums go first, so a reader
never finds a blob without them. A read is one ranged GET from the chunk the read starts
in, streamed (never buffered whole) and checked chunk by chunk as on disk.

The client comes from the standard AWS configuration only (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_REGION``, ``AWS_PROFILE`` and the
``~/.aws`` files), as every S3 tool reads it. Errors from the store are translated here,
at one boundary: a missing object is ``FileNotFoundError`` (as on disk); anything else
(unreachable, access denied, no credentials) is logged with its cause and becomes
:class:`ObjectStoreUnavailable`, an ``unavailable`` (503) problem.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, cast

import boto3
import boto3.exceptions
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from dropline.server.problems import Problem
from dropline.server.storage.blobs import SUMS_DIR, StoredFile, check_blob_id
from dropline.server.storage.integrity import SUM_CHUNK, CheckedReader, compute_sums
from dropline.server.storage.positioned import PositionedReader

log = logging.getLogger(__name__)

BLOBS_DIR = "blobs"
# Big blobs go up in parts, several at once; S3 allows 10,000 parts, so the part size
# grows with the blob (64 MiB parts carry the default 50 GiB upload limit in under 1,000).
MULTIPART_THRESHOLD = 64 * 1024 * 1024
MIN_PART = 16 * 1024 * 1024
MAX_PARTS = 9000
UPLOAD_THREADS = 4
PUT_MANY_THREADS = 8
_RELATIVE_BLOB = re.compile(r"^([0-9a-f]{2})/(\1[0-9a-f]{30})$")
_MISSING = {"NoSuchKey", "404", "NotFound"}


class ObjectStoreUnavailable(Problem, OSError):
    """The object store could not do what was asked (unreachable, access denied, no
    credentials, no such bucket). Retryable: answered as ``unavailable`` (503); an
    ``OSError`` too, so code that tolerates a failing disk tolerates this the same way."""

    def __init__(self, action: str, reason: str) -> None:
        super().__init__(
            "unavailable",
            "the server's file storage is not reachable just now; nothing was changed. "
            "Try again later",
            headers={"Retry-After": "30"},
        )
        self.action = action
        self.reason = reason


def _reason(exc: BaseException) -> str:
    """What went wrong, for the log: the S3 error code or the connection error (no
    credentials are in either)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{error.get('Code', 'error')} (HTTP {status}): {error.get('Message', '')}"
    return f"{type(exc).__name__}: {exc}"


def _is_missing(exc: BaseException) -> bool:
    if not isinstance(exc, botocore.exceptions.ClientError):
        return False
    return str(exc.response.get("Error", {}).get("Code")) in _MISSING


@contextmanager
def _translated(action: str, key: str) -> Iterator[None]:
    """The one place S3 errors become ours."""
    try:
        yield
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        if _is_missing(exc):
            raise FileNotFoundError(f"no object {key}") from None
        reason = _reason(exc)
        log.error("object store: could not %s %s: %s", action, key, reason)
        raise ObjectStoreUnavailable(action, reason) from exc
    except boto3.exceptions.Boto3Error as exc:  # S3UploadFailedError and its kin
        reason = _reason(exc.__cause__ or exc) if exc.__cause__ else _reason(exc)
        log.error("object store: could not %s %s: %s", action, key, reason)
        raise ObjectStoreUnavailable(action, reason) from exc


def s3_client() -> Any:
    """An S3 client from the standard AWS configuration (environment, config and
    credentials files, profiles; ``AWS_ENDPOINT_URL`` for S3-compatible stores), with
    bounded timeouts and the standard retry mode."""
    return boto3.session.Session().client(
        "s3",
        config=Config(
            connect_timeout=10,
            read_timeout=60,
            retries={"mode": "standard", "max_attempts": 5},
            max_pool_connections=32,
        ),
    )


class _ObjectReader(PositionedReader):
    """An object's bytes from a position on: one ranged GET streamed as it is read, a new
    one only after a seek elsewhere (or to resume once after a broken connection)."""

    def __init__(self, store: S3BlobStore, key: str, size: int, pos: int, body: Any) -> None:
        super().__init__(size, pos)
        self._store = store
        self._key = key
        self._body = body
        self._body_pos = pos

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size:
            return 0
        target = memoryview(buffer).cast("B")
        want = min(len(target), self._size - self._pos)
        for attempt in (1, 2):
            if self._body is None or self._body_pos != self._pos:
                self._drop_body()
                self._body, _size = self._store.get_from(self._key, self._pos)
                self._body_pos = self._pos
                if self._body is None:
                    return 0  # shrunk since open: the chunk check reports it
            try:
                data = self._body.read(want)
            except (botocore.exceptions.BotoCoreError, OSError) as exc:
                self._drop_body()
                if attempt == 2:
                    log.error("object store: reading %s failed: %s", self._key, _reason(exc))
                    raise ObjectStoreUnavailable("read", _reason(exc)) from exc
                continue
            n = len(data)
            target[:n] = data
            self._pos += n
            self._body_pos += n
            return n
        return 0  # not reached

    def close(self) -> None:
        self._drop_body()
        super().close()


class S3BlobStore:
    """Blobs as objects ``<prefix>/blobs/<id[:2]>/<id>`` with their sums beside them in
    ``<prefix>/checksums/``; see the module's docstring."""

    def __init__(self, bucket: str, prefix: str = "", client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.client = client if client is not None else s3_client()
        self.list_page = 1000  # objects per listing request (S3's most); tests shrink it
        base = f"{self.prefix}/" if self.prefix else ""
        self._blob_root = f"{base}{BLOBS_DIR}/"
        self._sums_root = f"{base}{SUMS_DIR}/"

    def __repr__(self) -> str:
        return f"S3BlobStore(s3://{self.bucket}/{self.prefix})"

    def key(self, blob_id: str) -> str:
        """The object key of a blob (the id is checked: keys come from 32 hex digits only)."""
        check_blob_id(blob_id)
        return f"{self._blob_root}{blob_id[:2]}/{blob_id}"

    def sums_key(self, blob_id: str) -> str:
        check_blob_id(blob_id)
        return f"{self._sums_root}{blob_id[:2]}/{blob_id}"

    # Reading.

    def get_from(self, key: str, start: int) -> tuple[Any, int]:
        """A ranged GET of ``key`` from ``start``: its streaming body (None past the end)
        and the object's whole size."""
        with _translated("read", key):
            try:
                reply = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-")
            except botocore.exceptions.ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "InvalidRange":
                    raise
                reply = None
        if reply is None:
            return None, self.size_of(key)  # at or past the end (or an empty object)
        content_range = reply.get("ContentRange") or ""
        total = content_range.rpartition("/")[2]
        size = int(total) if total.isdigit() else start + int(reply["ContentLength"])
        return reply["Body"], size

    def size_of(self, key: str) -> int:
        with _translated("look up", key):
            reply = self.client.head_object(Bucket=self.bucket, Key=key)
        return int(reply["ContentLength"])

    def _read_sums(self, blob_id: str) -> bytes | None:
        key = self.sums_key(blob_id)
        try:
            with _translated("read the checksums of", key):
                reply = self.client.get_object(Bucket=self.bucket, Key=key)
                return cast(bytes, reply["Body"].read())
        except FileNotFoundError:
            return None

    def open(self, blob_id: str, offset: int = 0) -> BinaryIO:
        key = self.key(blob_id)
        sums = self._read_sums(blob_id)
        # The GET starts where the checked reader will: at the chunk holding ``offset``.
        start = offset if sums is None else offset - offset % SUM_CHUNK
        body, size = self.get_from(key, start)
        raw = _ObjectReader(self, key, size, start, body)
        if sums is None:  # written by hand, without sums: served as it is
            raw.seek(offset)
            return cast(BinaryIO, io.BufferedReader(raw))
        try:
            reader = CheckedReader(blob_id, raw, sums, offset, size=size)
        except BaseException:
            raw.close()
            raise
        return cast(BinaryIO, io.BufferedReader(reader, buffer_size=SUM_CHUNK))

    def open_unchecked(self, blob_id: str) -> BinaryIO:
        """The stored bytes without the sums check, for a reader that authenticates them
        itself (a sealed blob: AES-GCM checks every chunk)."""
        key = self.key(blob_id)
        body, size = self.get_from(key, 0)
        return cast(BinaryIO, io.BufferedReader(_ObjectReader(self, key, size, 0, body)))

    def size(self, blob_id: str) -> int:
        return self.size_of(self.key(blob_id))

    # Writing.

    def put(self, blob_id: str, staged: Path, sums: bytes | None = None) -> None:
        key = self.key(blob_id)
        sums_key = self.sums_key(blob_id)
        with _translated("store the checksums of", sums_key):
            self.client.put_object(
                Bucket=self.bucket,
                Key=sums_key,
                Body=compute_sums(staged) if sums is None else sums,
            )
        try:
            with _translated("store", key):
                self.client.upload_file(
                    str(staged), self.bucket, key, Config=_transfer_config(staged.stat().st_size)
                )
        except BaseException:
            self._delete_quietly(sums_key)
            raise
        staged.unlink(missing_ok=True)

    def put_many(self, items: Sequence[tuple[str, Path]]) -> None:
        # Small files cost a round trip each, not bandwidth: several at once. S3 has no
        # batch put; each object is durable when its PUT returns.
        if len(items) <= 1:
            for blob_id, staged in items:
                self.put(blob_id, staged)
            return
        with ThreadPoolExecutor(min(PUT_MANY_THREADS, len(items))) as pool:
            for done in [pool.submit(self.put, blob_id, staged) for blob_id, staged in items]:
                done.result()  # the first error is raised; the caller deletes them all

    def delete(self, blob_id: str) -> None:
        # The blob first: sums without their blob are a leftover, a blob without its sums
        # would be served unchecked.
        for key in (self.key(blob_id), self.sums_key(blob_id)):
            with _translated("delete", key):
                self.client.delete_object(Bucket=self.bucket, Key=key)
        log.debug("deleted blob %s", blob_id)

    def _delete_quietly(self, key: str) -> None:
        try:
            with _translated("delete", key):
                self.client.delete_object(Bucket=self.bucket, Key=key)
        except OSError:
            pass  # logged; a stray sums object is a leftover the sweeper removes

    # The sweeper's view.

    def footprint(self, blob_id: str) -> int:
        """Bytes the blob takes in the bucket with its sums (0 when it is gone)."""
        total = 0
        for key in (self.key(blob_id), self.sums_key(blob_id)):
            try:
                total += self.size_of(key)
            except FileNotFoundError:
                continue
        return total

    def stored(self) -> Iterator[StoredFile]:
        """Every object of the store (for the sweeper): blobs with their id (the size
        counting their sums), and leftovers without one (objects that are not blobs, sums
        whose blob is gone). Both listings come in key order, so they are merged as they
        are paged, in constant memory."""
        sums = self._listing(self._sums_root)
        pending = next(sums, None)
        for rel, key, size, mtime in self._listing(self._blob_root):
            while pending is not None and pending[0] < rel:
                yield from self._orphan_sums(pending)
                pending = next(sums, None)
            if not _RELATIVE_BLOB.match(rel):
                yield StoredFile(PurePosixPath(key), None, size, mtime)
                continue
            extra = 0
            if pending is not None and pending[0] == rel:
                extra = pending[2]
                pending = next(sums, None)
            yield StoredFile(PurePosixPath(key), rel[3:], size + extra, mtime)
        while pending is not None:
            yield from self._orphan_sums(pending)
            pending = next(sums, None)

    def _orphan_sums(self, found: tuple[str, str, int, float]) -> Iterator[StoredFile]:
        rel, key, size, mtime = found
        match = _RELATIVE_BLOB.match(rel)
        if match:
            try:  # its blob may have been put since the blob listing passed it
                self.size(match.group(2))
                return
            except FileNotFoundError:
                pass
        yield StoredFile(PurePosixPath(key), None, size, mtime)

    def _listing(self, root: str) -> Iterator[tuple[str, str, int, float]]:
        """(key below ``root``, key, size, modification time) of every object under ``root``."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=root, PaginationConfig={"PageSize": self.list_page}
        )
        with _translated("list", root):
            for page in pages:
                for item in page.get("Contents", ()):
                    key = item["Key"]
                    yield key[len(root) :], key, int(item["Size"]), item["LastModified"].timestamp()

    def leftover_name(self, found: StoredFile) -> str:
        """A leftover's name for the sweeper's report: its key below the prefix."""
        key = str(found.path)
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def remove_leftover(self, found: StoredFile) -> None:
        self._delete_quietly(str(found.path))

    def reachable(self) -> bool:
        """Whether the bucket answers (for readiness checks)."""
        try:
            with _translated("reach the bucket", self.bucket):
                self.client.head_bucket(Bucket=self.bucket)
        except OSError:
            return False
        return True


def _transfer_config(size: int) -> TransferConfig:
    part = max(MIN_PART, -(-size // MAX_PARTS))
    return TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD,
        multipart_chunksize=part,
        max_concurrency=UPLOAD_THREADS,
        use_threads=True,
    )


__all__ = ["ObjectStoreUnavailable", "S3BlobStore", "s3_client"]
