"""Resumable, verified transfers of one file: tus upload and Range download.

Usable without the engine. Uploads resume at the server's durable offset and send
large chunks read (and, where needed, hashed) in a worker thread while the previous
chunk is on the wire; downloads resume a partial file with ``Range`` + ``If-Range``,
verify SHA-256, fsync and rename into place, so a wrong file never lands.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Literal

from dropline.sdk.client import DroplineClient
from dropline.sdk.errors import (
    DroplineError,
    IntegrityError,
    NotFoundError,
    OffsetMismatch,
    PreconditionFailedError,
    ProtocolError,
    ValidationError,
)
from dropline.sdk.filewrite import HashingWriter, atomic_replace
from dropline.sdk.hashing import sha256_file, sha256_prefix
from dropline.sdk.models import Entry, Revision, UploadResult
from dropline.sdk.retry import NO_RETRY, failure_reason
from dropline.sdk.upload_reads import ChunkReader, Running, StreamedChunk

log = logging.getLogger(__name__)

DEFAULT_CHUNK_SIZE = 16 * 1024 * 1024
WRITE_BATCH = 4 * 1024 * 1024  # download bytes gathered before one write+hash in a thread
PARTIAL_SUFFIX = ".dropline-partial"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

ProgressCallback = Callable[[int, int], None]  # (bytes done, bytes in all)
Limiter = Callable[[int], Awaitable[None]]  # awaited with each chunk's size; may sleep
Commit = Callable[[Path, Path], None]  # (verified partial, destination)


def default_partial_path(dest: Path) -> Path:
    """Where a download of ``dest`` collects its bytes: hidden, beside it, same file system."""
    return dest.with_name(f".{dest.name}{PARTIAL_SUFFIX}")


# -- upload ---------------------------------------------------------------------------


def _checksum_digest(checksum: str) -> str:
    """The hex digest inside an ``Upload-Checksum: sha256 <base64>`` value."""
    return base64.b64decode(checksum.partition(" ")[2]).hex()


async def upload_file(
    client: DroplineClient,
    local_path: str | os.PathLike[str],
    remote_path: str,
    *,
    sha256: str | None = None,
    mtime: float | None = None,
    if_rev: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    resume_url: str | None = None,
    on_session: Callable[[str], None] | None = None,
    on_progress: ProgressCallback | None = None,
    limiter: Limiter | None = None,
) -> Entry:
    """Upload ``local_path`` to ``remote_path`` and return the published entry.

    Every byte is read once. ``sha256`` (hex), when the caller knows it, is declared at
    the start and the server publishes nothing unless the whole file matches it; the
    chunks then go without ``Upload-Checksum`` (a second SHA-256 of every byte on each
    side for no added guarantee: a chunk damaged on the way costs the whole file
    again, not a wrong file), and a connection cut mid-chunk keeps what the server made
    durable. Without it, each chunk is hashed for its ``Upload-Checksum`` as it is read;
    a file of one chunk declares that chunk's digest, a bigger one is hashed from the
    same reads as it goes and declares the result with its last chunk
    (``Repr-Digest``), after checking that the file did not change on disk meanwhile.
    ``resume_url`` continues an earlier upload at the server's offset; ``on_session(url)``
    is told the URL of a new upload before any byte is sent, so a caller can persist it.
    ``if_rev`` guards the target (``"none"``: only if nothing is there).
    """
    if chunk_size < 1:
        raise ValidationError("chunk_size must be positive")
    path = Path(local_path)
    try:
        st = path.stat()
    except OSError as exc:
        raise ValidationError(
            f"cannot read {path}: {exc.strerror}", title="Unreadable file"
        ) from exc
    length = st.st_size
    if mtime is None:
        mtime = st.st_mtime

    url: str | None = None
    offset = 0
    # Chunks carry Upload-Checksum unless the server holds the whole file's SHA-256 from
    # the upload's creation (then it checks every byte at publish anyway).
    checksummed = sha256 is None
    # What the last chunk declares as the whole file's SHA-256, for an upload that did
    # not declare it when it was created (None: nothing to declare).
    declare: Callable[[], str] | None = None
    if resume_url is not None:
        if sha256 is None:
            # Resuming needs the content's hash first, to tell whether the earlier upload
            # was of these very bytes.
            sha256 = await asyncio.to_thread(sha256_file, path)
        resumed = await _resume_status(client, resume_url, remote_path, length, sha256)
        if resumed is not None and resumed.complete:
            assert resumed.entry_id is not None
            return await _published(client, resumed.entry_id, sha256)
        if resumed is not None:
            url, offset = resume_url, resumed.offset
            if resumed.sha256 is None:
                declare = functools.partial(str, sha256)
                checksummed = True
            log.info("resuming upload of %s at byte %d of %d", remote_path, offset, length)

    with path.open("rb", buffering=0) as fh:
        running = Running() if sha256 is None and length > chunk_size else None
        reader = ChunkReader(fh.fileno(), length, chunk_size, running, checksummed)
        try:
            if url is None:
                # A file that fits in one chunk goes up with the creating POST itself; its
                # checksum is then the whole file's hash as well.
                single = 0 < length <= chunk_size
                first, checksum = await reader.read(0) if single else (b"", "")
                if sha256 is None and running is None:
                    sha256 = _checksum_digest(checksum) if single else EMPTY_SHA256
                if first and limiter is not None:
                    await limiter(len(first))
                session, entry = await client.start_upload(
                    remote_path,
                    length,
                    sha256=sha256,
                    mtime=mtime,
                    if_rev=if_rev,
                    data=first or None,
                    checksum=checksum or False,
                )
                url, offset = session.url, session.offset
                if on_session is not None:
                    on_session(url)
                if session.complete:
                    assert session.entry_id is not None
                    if on_progress is not None:
                        on_progress(length, length)
                    if entry is not None:
                        return _checked(entry, sha256)
                    return await _published(client, session.entry_id, sha256)
            if running is not None:
                declare = _declare_running(path, st, running)
            if on_progress is not None:
                on_progress(offset, length)
            entry_id = await _send_from(
                client, reader, url, offset, length, on_progress, limiter, declare
            )
        finally:
            await reader.discard()
    if sha256 is None and running is not None:
        sha256 = running.hexdigest()
    return await _published(client, entry_id, sha256)


def _declare_running(path: Path, before: os.stat_result, running: Running) -> Callable[[], str]:
    """The hash of every byte read, once the file on disk is confirmed to be the one that
    was read (same size, mtime and inode as when the upload started)."""

    def declare() -> str:
        try:
            now = path.stat()
        except OSError as exc:
            raise IntegrityError(
                f"{path.name} went away while it was being uploaded.",
                title="File changed during upload",
            ) from exc
        if (now.st_size, now.st_mtime_ns, now.st_ino) != (
            before.st_size,
            before.st_mtime_ns,
            before.st_ino,
        ):
            raise IntegrityError(
                f"{path.name} changed while it was being uploaded; it will be sent again.",
                title="File changed during upload",
            )
        return running.hexdigest()

    return declare


async def _resume_status(
    client: DroplineClient, url: str, remote_path: str, length: int, sha256: str
) -> UploadResult | None:
    """The earlier upload's state, or None when it is gone or was for other content."""
    try:
        status = await client.upload_status(url)
    except NotFoundError:  # expired, terminated, failed its final check, or never ours
        log.info("the earlier upload is gone; starting again")
        return None
    stale = (
        (status.length is not None and status.length != length)
        or (status.sha256 is not None and status.sha256 != sha256)
        or (status.path is not None and status.path != remote_path)
    )
    if stale:
        log.info("the earlier upload was for other content or another place; starting again")
        if not status.complete:
            await client.terminate_upload(url)
        return None
    return status


async def _send_from(
    client: DroplineClient,
    reader: ChunkReader,
    url: str,
    offset: int,
    length: int,
    on_progress: ProgressCallback | None,
    limiter: Limiter | None,
    declare: Callable[[], str] | None,
) -> str:
    """PATCH chunks from ``offset`` to the end; recover from lost or rejected chunks by
    asking the server for its offset. Returns the published entry's id.

    The last chunk carries ``declare()`` as the whole file's SHA-256 when given; if it
    raises (the file changed on disk), the upload is terminated rather than published.
    """
    policy = client.retry
    failures = 0
    while True:
        if offset >= length:
            status = await client.upload_status(url)
            if status.complete and status.entry_id is not None:
                return status.entry_id
            if status.offset < length:
                offset = status.offset
                continue
            # Every byte is staged but the publish never committed (the server died
            # during it): an empty PATCH at the end publishes from the staged bytes.
            digest = declare() if declare is not None else None
            done = await client.append(url, length, b"", retry=NO_RETRY, whole_sha256=digest)
            if done.complete and done.entry_id is not None:
                return done.entry_id
            raise ProtocolError("every byte arrived but the server did not publish the file")
        body: bytes | StreamedChunk
        if reader.streams:
            # Nothing needs the chunk whole before it goes: it streams from the file.
            body, checksum = reader.body(offset, limiter), ""
        else:
            body, checksum = await reader.read(offset)
        whole: str | None = None
        if declare is not None and offset + len(body) == length:
            try:
                whole = declare()
            except IntegrityError:
                with contextlib.suppress(DroplineError):
                    await client.terminate_upload(url)
                raise
        if limiter is not None and not reader.streams:
            await limiter(len(body))  # a streamed chunk is paced piece by piece
        try:
            result = await client.append(
                url, offset, body, checksum or False, retry=NO_RETRY, whole_sha256=whole
            )
        except DroplineError as err:
            recoverable = (
                err.retryable
                or isinstance(err, OffsetMismatch)
                or (err.problem_type == "checksum-mismatch")
            )
            failures += 1
            if not recoverable or failures >= policy.attempts:
                raise
            delay = (
                0.0
                if isinstance(err, OffsetMismatch)
                else policy.backoff(failures, err.retry_after)
            )
            log.warning(
                "upload chunk at byte %d failed (attempt %d of %d: %s); resuming in %.2f s",
                offset,
                failures,
                policy.attempts,
                failure_reason(err),
                delay,
            )
            await policy.pause(delay)
            offset = await client.upload_offset(url)
            continue
        if result.offset <= offset:
            raise ProtocolError(f"the server did not advance the upload past byte {offset}")
        offset = result.offset
        failures = 0  # progress: the failure budget is per stuck chunk, not per file
        if on_progress is not None:
            on_progress(offset, length)
        if result.complete and result.entry_id is not None:
            return result.entry_id


async def _published(client: DroplineClient, entry_id: str, sha256: str | None) -> Entry:
    """The entry an upload completed by PATCH published (a tus PATCH answers without a
    body, so this is the one request an upload adds)."""
    return _checked(await client.get(entry_id), sha256)


def _checked(entry: Entry, sha256: str | None) -> Entry:
    if sha256 is not None and entry.sha256 is not None and entry.sha256 != sha256:
        raise IntegrityError(
            f"The server holds {entry.path} with SHA-256 {entry.sha256}, not {sha256}."
        )
    return entry


# -- download -------------------------------------------------------------------------


async def download_file(
    client: DroplineClient,
    entry: Entry,
    dest: str | os.PathLike[str],
    *,
    partial_path: str | os.PathLike[str] | None = None,
    on_progress: ProgressCallback | None = None,
    limiter: Limiter | None = None,
    commit: Commit | None = None,
    rev: Revision | str | None = None,
) -> None:
    """Download ``entry`` to ``dest``: into ``partial_path`` first (resumed if it holds a
    prefix), SHA-256 verified against ``entry.sha256``, fsynced, mtime set, then moved
    into place by ``commit(partial, dest)`` (default: atomic rename). ``rev`` (a
    :class:`Revision` or its id) downloads that earlier revision instead, verified
    against its own SHA-256 and given its own mtime.

    A hash mismatch removes the partial file and raises :class:`IntegrityError`; a file
    that changed on the server since ``entry`` was read raises
    :class:`PreconditionFailedError` and leaves the partial file alone. Connection
    failures midway are resumed from the partial file within the client's retry budget.
    """
    if entry.is_folder:
        raise ValidationError(f"{entry.path} is a folder, not a file")
    pinned: str | None = None
    if rev is not None:
        found = rev if isinstance(rev, Revision) else await client.revision(entry.id, rev)
        pinned = found.rev
        entry = replace(entry, rev=pinned, size=found.size, sha256=found.sha256, mtime=found.mtime)
    if entry.sha256 is None:
        raise ProtocolError(f"the entry for {entry.path} has no sha256")
    target = Path(dest)
    partial = Path(partial_path) if partial_path is not None else default_partial_path(target)
    policy = client.retry
    failures = 0
    verified_fresh = False
    while True:
        before = _partial_size(partial, entry.size)
        try:
            await _fetch(client, entry, partial, on_progress, limiter, pinned)
        except IntegrityError:
            _remove(partial)
            if before == 0 or verified_fresh:
                raise
            # The kept prefix may have been the bad part: one more try from byte zero.
            log.warning("%s failed verification after resuming; downloading it whole", entry.path)
            verified_fresh = True
            continue
        except DroplineError as err:
            failures += 1
            if not err.retryable or failures >= policy.attempts:
                raise
            delay = policy.backoff(failures, err.retry_after)
            log.warning(
                "download of %s failed (attempt %d of %d: %s); resuming in %.2f s",
                entry.path,
                failures,
                policy.attempts,
                failure_reason(err),
                delay,
            )
            await policy.pause(delay)
            if _partial_size(partial, entry.size) > before:
                failures = 0
            continue
        break
    if entry.mtime is not None:
        os.utime(partial, (entry.mtime, entry.mtime))
    (commit or atomic_replace)(partial, target)


def _partial_size(partial: Path, size: int) -> int:
    """Bytes of ``partial`` worth keeping: none if it is missing or longer than the file."""
    try:
        have = partial.stat().st_size
    except FileNotFoundError:
        return 0
    if have > size:
        _remove(partial)
        return 0
    return have


def _remove(partial: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        partial.unlink()


async def _fetch(
    client: DroplineClient,
    entry: Entry,
    partial: Path,
    on_progress: ProgressCallback | None,
    limiter: Limiter | None,
    pinned: str | None = None,
) -> None:
    """Make ``partial`` hold the verified, fsynced content of ``entry`` (of its revision
    ``pinned`` when given)."""
    partial.parent.mkdir(parents=True, exist_ok=True)
    start = _partial_size(partial, entry.size)
    if start == entry.size:
        # Complete already (or empty): verify without asking the server for anything.
        if not partial.exists():
            partial.touch()
        digest = await asyncio.to_thread(sha256_prefix, partial, start)
        _verify(entry, digest.hexdigest())
        return
    async with client.open_content(entry.id, start, entry.rev, pinned) as stream:
        if stream.rev is not None and stream.rev != entry.rev:
            raise PreconditionFailedError(
                f"{entry.path} changed on the server after it was listed; "
                "it will be fetched again at its new revision."
            )
        if stream.resumed:
            digest = await asyncio.to_thread(sha256_prefix, partial, start)
            mode: Literal["ab", "wb"] = "ab"
        else:
            digest = hashlib.sha256()
            start = 0
            mode = "wb"
        done = start
        if on_progress is not None:
            on_progress(done, entry.size)
        with partial.open(mode, buffering=0) as fh:
            writer = HashingWriter(fh.fileno(), start, digest)
            pending: asyncio.Future[None] | None = None
            batch: list[bytes] = []
            batched = 0
            try:
                async for chunk in stream.chunks():
                    done += len(chunk)
                    if done > entry.size:
                        raise IntegrityError(
                            f"The server sent more than the {entry.size} bytes of {entry.path}."
                        )
                    batch.append(chunk)
                    batched += len(chunk)
                    if limiter is not None:
                        await limiter(len(chunk))
                    if batched >= WRITE_BATCH:
                        # One batch is written and hashed while the next one arrives.
                        if pending is not None:
                            await pending
                        pending = asyncio.ensure_future(asyncio.to_thread(writer.write, batch))
                        batch, batched = [], 0
                        if on_progress is not None:
                            on_progress(done, entry.size)
            finally:
                # Whatever arrived is kept on disk, so the next attempt resumes after it.
                if pending is not None:
                    await pending
                if batch:
                    await asyncio.to_thread(writer.write, batch)
                    if on_progress is not None:
                        on_progress(done, entry.size)
            await asyncio.to_thread(writer.sync)
    if done < entry.size:
        raise ProtocolError(f"the server ended {entry.path} after {done} of {entry.size} bytes")
    _verify(entry, digest.hexdigest())


def _verify(entry: Entry, actual: str) -> None:
    if actual != entry.sha256:
        raise IntegrityError(
            f"{entry.path} arrived with SHA-256 {actual}, expected {entry.sha256}; "
            "the download was discarded."
        )
