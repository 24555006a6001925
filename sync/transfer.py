"""Running uploads and downloads for the folders: shared slots (small files first),
bandwidth limits, batches of small files in one request each, and the journal
bookkeeping that lets a transfer resume after a restart (the tus URL before the first
byte goes; the partial download's key).

The byte-moving itself is the SDK's (:mod:`dropline.sdk.resumable`); this module
decides when a transfer may run, at what speed, and what is remembered about it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from dropline.sdk import (
    BatchItem,
    DroplineClient,
    DroplineError,
    Entry,
    EntryType,
    IntegrityError,
    download_file,
    upload_batch,
    upload_file,
)
from dropline.sync import disk_space, fs
from dropline.sync.journal import Journal, TransferRow
from dropline.sync.records import Base, Local, Remote
from dropline.sync.types import Direction

log = logging.getLogger(__name__)


class TokenBucket:
    """Bytes per second, shared by every transfer in one direction. A few lines of our
    own: aiolimiter counts acquisitions, not bytes of varying size."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self._tokens = 0.0
        self._stamp = time.monotonic()
        self._lock = asyncio.Lock()

    def set_rate(self, rate: int | None) -> None:
        self.rate = rate if rate and rate > 0 else None
        self._tokens = 0.0
        self._stamp = time.monotonic()

    async def take(self, n: int) -> None:
        if self.rate is None:
            return
        async with self._lock:
            rate = self.rate
            if rate is None:
                return
            now = time.monotonic()
            # At most one second of burst is saved up.
            self._tokens = min(float(rate), self._tokens + (now - self._stamp) * rate)
            self._stamp = now
            self._tokens -= n
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / rate)


class Slots:
    """At most ``n`` transfers at once across all folders; waiting ones go smallest first,
    so a small file is not stuck behind a big one."""

    def __init__(self, n: int) -> None:
        self.n = max(1, n)
        self.busy = 0
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @contextlib.asynccontextmanager
    async def slot(self, size: int) -> AsyncIterator[None]:
        if self.busy >= self.n or self._waiting:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (size, next(self._seq), fut)
            heapq.heappush(self._waiting, entry)
            try:
                await fut
            except BaseException:
                if entry in self._waiting:
                    self._waiting.remove(entry)
                    heapq.heapify(self._waiting)
                elif fut.done() and not fut.cancelled():
                    self._release()  # handed the slot as we were cancelled: pass it on
                raise
        else:
            self.busy += 1
        try:
            yield
        finally:
            self._release()

    def _release(self) -> None:
        while self._waiting:
            _size, _seq, fut = heapq.heappop(self._waiting)
            if not fut.done():
                fut.set_result(None)  # the slot passes straight to the smallest waiter
                return
        self.busy -= 1


@dataclass
class Counters:
    bytes_hashed: int = 0
    bytes_uploaded: int = 0
    bytes_downloaded: int = 0
    files_uploaded: int = 0
    files_downloaded: int = 0
    upload_batches: int = 0


class ChangedDuringUpload(IntegrityError):
    """The local file changed while it was going up: abandoned, to be sent again."""


@dataclass
class Shared:
    """What every folder's transfers share."""

    journal: Journal
    slots: Slots
    small: Slots  # small files are bound by round trips, not bandwidth: more at once
    up: TokenBucket
    down: TokenBucket
    counters: Counters
    chunk_size: int
    # False once the server answered that it has no batch endpoint (an older server):
    # small files then go up one request each.
    batches: bool = True


def entry_of(remote: Remote, remote_path: str) -> Entry:
    return Entry(
        id=remote.id,
        name=remote_path.rpartition("/")[2],
        path=remote_path,
        type=EntryType.FOLDER if remote.is_dir else EntryType.FILE,
        size=remote.size,
        sha256=remote.sha256,
        rev=remote.rev,
        mtime=remote.mtime,
        parent_id=None,
    )


def remote_of(entry: Entry) -> Remote:
    return Remote(entry.id, entry.is_folder, entry.size, entry.sha256, entry.rev, entry.mtime)


Progress = Callable[[int, int], None]

SMALL_FILE = 1024 * 1024  # at most this is sent with the request that creates the upload


async def upload(
    shared: Shared,
    client: DroplineClient,
    folder_id: int,
    root: Path,
    rel: str,
    remote_path: str,
    local: Local,
    if_rev: str,
    on_progress: Progress,
) -> tuple[Base, Remote]:
    """Upload one file; resumes an earlier upload of the same content at the server's
    offset. Raises :class:`ChangedDuringUpload` if the file changes meanwhile."""
    if local.size <= min(SMALL_FILE, shared.chunk_size):
        async with shared.small.slot(local.size):
            return await _upload_small(shared, client, root, rel, remote_path, local, if_rev)
    journal = shared.journal
    assert local.sha256 is not None
    earlier = journal.transfer(folder_id, rel, Direction.UP)
    resume = None
    if (
        earlier is not None
        and earlier.sha256 == local.sha256
        and earlier.size == local.size
        and earlier.rev == if_rev  # the precondition is fixed when the upload is created
    ):
        resume = earlier.url
    elif earlier is not None and earlier.url:
        with contextlib.suppress(Exception):
            await client.terminate_upload(earlier.url)
    path = fs.abspath(root, rel)
    sent_from: list[int] = []
    url_box: list[str] = [resume] if resume else []

    def on_session(url: str) -> None:
        url_box[:] = [url]
        sent_from[:] = [0]  # a new upload: every byte from zero goes up
        journal.put_transfer(
            folder_id,
            TransferRow(
                rel,
                Direction.UP,
                url,
                None,
                local.sha256,
                local.size,
                local.mtime_ns,
                local.inode,
                None,
                if_rev,
            ),
        )

    def progress(done: int, total: int) -> None:
        if not sent_from:
            sent_from.append(done)
        else:
            shared.counters.bytes_uploaded += max(0, done - sent_from[-1])
            sent_from.append(done)
        if done < total:
            # Reported after the last byte, the server has published what was hashed
            # (it checked the SHA-256): a change now is the next version, not a reason
            # to treat a published upload as failed (its echo would look like a conflict).
            try:
                st = os.stat(path)
            except OSError as exc:
                raise ChangedDuringUpload(f"{rel} went away while uploading") from exc
            if st.st_size != local.size or st.st_mtime_ns != local.mtime_ns:
                raise ChangedDuringUpload(f"{rel} changed while uploading; it is sent again")
        on_progress(done, total)

    async with shared.slots.slot(local.size):
        try:
            entry = await upload_file(
                client,
                path,
                remote_path,
                sha256=local.sha256,
                mtime=local.mtime_ns / 1e9,
                if_rev=if_rev,
                chunk_size=_chunk(shared, local.size),
                resume_url=resume,
                on_session=on_session,
                on_progress=progress,
                limiter=shared.up.take,
            )
        except DroplineError as err:
            # Kept for a resume only when trying again later can help (the server was
            # unreachable); a stale precondition or a changed file starts afresh.
            if isinstance(err, ChangedDuringUpload) or not err.retryable:
                if url_box:
                    with contextlib.suppress(Exception):
                        await client.terminate_upload(url_box[0])
                journal.drop_transfer(folder_id, rel, Direction.UP)
            raise
    shared.counters.files_uploaded += 1
    journal.drop_transfer(folder_id, rel, Direction.UP)
    # Even if the file changed after its last byte was read, the server holds exactly
    # the content hashed above: that is the base, and the next scan sends the change.
    remote = remote_of(entry)
    return (
        Base(False, local.size, local.mtime_ns, local.inode, local.sha256, remote.id, remote.rev),
        remote,
    )


def _read_whole(path: Path, local: Local) -> bytes:
    with path.open("rb", buffering=0) as fh:
        st = os.fstat(fh.fileno())
        if st.st_size != local.size or st.st_mtime_ns != local.mtime_ns:
            raise ChangedDuringUpload(f"{path.name} changed before it went up; it is sent again")
        data = fh.read()
    if len(data) != local.size:
        raise ChangedDuringUpload(f"{path.name} changed while it was read; it is sent again")
    return data


async def _upload_small(
    shared: Shared,
    client: DroplineClient,
    root: Path,
    rel: str,
    remote_path: str,
    local: Local,
    if_rev: str,
) -> tuple[Base, Remote]:
    """A small file goes up with the creating request itself (tus creation-with-upload):
    one round trip, and the answer names the published entry and its rev."""
    path = fs.abspath(root, rel)
    if local.size > 256 * 1024:
        data = await asyncio.to_thread(_read_whole, path, local)
    else:
        data = _read_whole(path, local)
    await shared.up.take(len(data))
    mtime = local.mtime_ns / 1e9
    session = await client.create_upload(
        remote_path,
        local.size,
        sha256=local.sha256,
        mtime=mtime,
        if_rev=if_rev,
        data=data if data else None,
    )
    if not session.complete or session.entry_id is None or session.rev is None:
        # A server that did not publish with the first request: finish the usual way.
        entry = await upload_file(
            client,
            path,
            remote_path,
            sha256=local.sha256,
            mtime=mtime,
            if_rev=if_rev,
            resume_url=session.url,
        )
        remote = remote_of(entry)
    else:
        remote = Remote(session.entry_id, False, local.size, local.sha256, session.rev, mtime)
    shared.counters.bytes_uploaded += local.size
    shared.counters.files_uploaded += 1
    base = Base(False, local.size, local.mtime_ns, local.inode, local.sha256, remote.id, remote.rev)
    return base, remote


@dataclass(frozen=True)
class BatchFile:
    """One small file of a batch upload, as the plan saw it."""

    rel: str
    remote_path: str
    local: Local
    if_rev: str


BatchResult = tuple[Base, Remote] | BaseException


def _read_batch(root: Path, files: Sequence[BatchFile]) -> list[bytes | BaseException]:
    """Every file's bytes (in a worker thread), or why it cannot go up with the others."""
    out: list[bytes | BaseException] = []
    for f in files:
        try:
            out.append(_read_whole(fs.abspath(root, f.rel), f.local))
        except (OSError, ChangedDuringUpload) as exc:
            out.append(exc)
    return out


async def upload_many(
    shared: Shared, client: DroplineClient, root: Path, files: Sequence[BatchFile]
) -> list[BatchResult]:
    """Upload small files in one request; one result per file, in order. A file that
    cannot be read or that the server refuses fails alone; a failure of the request
    itself (the server unreachable) is every file's. Nothing is journaled here: the
    caller's queue rows stay until each result is applied, and a repeat after a crash
    is guarded by each file's ``if_rev``."""
    if shared.batches:
        total = sum(f.local.size for f in files)
        async with shared.slots.slot(total):
            results = await _send_batch(shared, client, root, files)
        if results is not None:
            return results
    # A server without the batch endpoint: one request a file, as before batches.
    out: list[BatchResult] = []
    for f in files:
        try:
            async with shared.small.slot(f.local.size):
                out.append(
                    await _upload_small(
                        shared, client, root, f.rel, f.remote_path, f.local, f.if_rev
                    )
                )
        except (DroplineError, OSError) as exc:
            out.append(exc)
    return out


async def _send_batch(
    shared: Shared, client: DroplineClient, root: Path, files: Sequence[BatchFile]
) -> list[BatchResult] | None:
    """The batch request; None when the server has no batch endpoint."""
    contents = await asyncio.to_thread(_read_batch, root, files)
    results: list[BatchResult | None] = [
        c if isinstance(c, BaseException) else None for c in contents
    ]
    ready = [(i, c) for i, c in enumerate(contents) if isinstance(c, bytes)]
    if ready:
        await shared.up.take(sum(len(c) for _i, c in ready))
        items = [_batch_item(files[i], c) for i, c in ready]
        # Grouped here already: one call, one request.
        answers = await upload_batch(
            client,
            items,
            files_per_request=max(1, len(items)),
            bytes_per_request=max(1, sum(len(c) for _i, c in ready)),
            concurrency=1,
        )
        whole = answers[0] if all(a is answers[0] for a in answers) else None
        if isinstance(whole, DroplineError):
            # The request itself failed: every file got the same error.
            if whole.status in (404, 405):
                log.info("the server takes no batch uploads; small files go up one by one")
                shared.batches = False
                return None
        else:
            shared.counters.upload_batches += 1
        for (i, _c), answer in zip(ready, answers, strict=True):
            results[i] = _batch_result(shared, files[i], answer)
    return [r for r in results if r is not None]  # by now every file has its result


def _batch_item(f: BatchFile, data: bytes) -> BatchItem:
    assert f.local.sha256 is not None
    return BatchItem(
        path=f.remote_path,
        data=data,
        sha256=f.local.sha256,
        mtime=f.local.mtime_ns / 1e9,
        if_rev=f.if_rev,
    )


def _batch_result(shared: Shared, f: BatchFile, answer: Entry | DroplineError) -> BatchResult:
    if isinstance(answer, DroplineError):
        return answer
    local = f.local
    shared.counters.bytes_uploaded += local.size
    shared.counters.files_uploaded += 1
    remote = remote_of(answer)
    base = Base(False, local.size, local.mtime_ns, local.inode, local.sha256, remote.id, remote.rev)
    return base, remote


def _chunk(shared: Shared, size: int) -> int:
    limit = shared.up.rate
    if limit:  # with a limit, smaller chunks keep the pace even
        return max(256 * 1024, min(shared.chunk_size, limit))
    return shared.chunk_size


async def download(
    shared: Shared,
    client: DroplineClient,
    folder_id: int,
    root: Path,
    rel: str,
    remote_path: str,
    remote: Remote,
    expect: Local | None,
    on_progress: Progress,
) -> Base:
    """Download into a partial file kept across restarts, verify, fsync, and move it
    into place only if the local file is still what the plan saw.

    Raises :class:`dropline.sync.disk_space.DiskFullError` when the file cannot fit (then
    nothing is written) or the disk fills up midway (then the partial file is removed);
    either way the local file is left as it was."""
    journal = shared.journal
    earlier = journal.transfer(folder_id, rel, Direction.DOWN)
    key = None
    if earlier is not None and earlier.partial:
        if earlier.remote_id == remote.id and earlier.rev == remote.rev:
            key = earlier.partial
        else:
            with contextlib.suppress(FileNotFoundError):
                fs.partial_path(root, earlier.partial).unlink()
    # Refused before the first byte when it cannot fit: a half-written file would only
    # fill the disk further, for every other program too.
    kept = 0 if key is None else _size_or_zero(fs.partial_path(root, key))
    disk_space.ensure_room(root, rel, max(0, remote.size - kept))
    if key is None:
        key = fs.new_partial_key()
        journal.put_transfer(
            folder_id,
            TransferRow(
                rel,
                Direction.DOWN,
                None,
                key,
                remote.sha256,
                remote.size,
                0,
                0,
                remote.id,
                remote.rev,
            ),
        )
    partial = fs.partial_path(root, key)
    expected = (
        None
        if expect is None
        else fs.LocalStat(expect.is_dir, expect.size, expect.mtime_ns, expect.inode)
    )
    last: list[int] = []  # the first report is where the partial file left off
    placed: list[fs.LocalStat] = []

    def progress(done: int, total: int) -> None:
        if last:
            shared.counters.bytes_downloaded += max(0, done - last[0])
        last[:] = [done]
        on_progress(done, total)

    def commit(src: Path, _dest: Path) -> None:
        placed.append(fs.place(root, src, rel, expected, None))

    async with shared.slots.slot(remote.size):
        try:
            partial.parent.mkdir(parents=True, exist_ok=True)
            await download_file(
                client,
                entry_of(remote, remote_path),
                fs.abspath(root, rel),
                partial_path=partial,
                on_progress=progress,
                limiter=shared.down.take,
                commit=commit,
            )
        except OSError as exc:
            if not disk_space.no_room(exc):
                raise
            # The disk filled up midway: the partial file goes (it holds space others
            # need), the local file was never touched, and the next try starts afresh.
            with contextlib.suppress(FileNotFoundError):
                partial.unlink()
            journal.drop_transfer(folder_id, rel, Direction.DOWN)
            raise disk_space.DiskFullError(rel, remote.size, _free_or_zero(root)) from exc
    journal.drop_transfer(folder_id, rel, Direction.DOWN)
    shared.counters.files_downloaded += 1
    st = placed[0]
    return Base(False, st.size, st.mtime_ns, st.inode, remote.sha256, remote.id, remote.rev)


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _free_or_zero(root: Path) -> int:
    try:
        return disk_space.free_bytes(root)
    except OSError:
        return 0
