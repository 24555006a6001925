"""Carrying out a plan: structural changes in order, transfers in the background
(small files that are ready together go up in batch requests), deletes last; and
sorting every failure, per file, into a wait, a retry or an issue.

It works on the loop through :class:`dropline.sync.folder_state.FolderState`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from dropline.sdk import (
    AuthenticationError,
    AuthorizationError,
    DroplineClient,
    DroplineError,
    Entry,
    InvalidNameError,
    NotFoundError,
    RateLimitedError,
    StorageFullError,
    TooLargeError,
    UnavailableError,
    batch,
)
from dropline.sync import fs, planner, records
from dropline.sync.disk_space import DiskFullError
from dropline.sync.folder_state import Finished, FolderState
from dropline.sync.journal import QueueItem
from dropline.sync.records import Base, Local, PathState, Plan
from dropline.sync.remote import rel_of, remote_path
from dropline.sync.transfer import (
    BatchFile,
    BatchResult,
    ChangedDuringUpload,
    download,
    remote_of,
    upload,
    upload_many,
)
from dropline.sync.types import (
    AfterUpload,
    Direction,
    FolderMode,
    HistoryAdded,
    Result,
    TransferProgress,
)

log = logging.getLogger(__name__)

PROGRESS_EVERY = 0.25  # seconds between progress events of one transfer
# Issues that success on the path answers; conflicts and local edits stay until dismissed.
TRANSIENT = (
    "unreadable",
    "local-error",
    "server-error",
    "forbidden",
    "internal",
    "invalid-name",
    "too-large",
    "name-clash",
    "case-clash",
    "disk-full",
    "server-full",
)
# A full disk is retried sooner than other failures: refusing again costs one look at
# the free space, and people expect the file to arrive soon after they made room.
DISK_FULL_RETRY_CAP = 30.0
IN_FLIGHT_WAIT = 0.3  # seconds before a folder move waiting on its uploads looks again


async def carry_out(
    folder: FolderState,
    plan: Plan,
    items: dict[str, QueueItem],
    states: dict[str, PathState],
    waiting: set[str],
) -> None:
    journal = folder.journal
    acted = {_path_of(a) for a in plan.actions} | set(plan.deferred) | waiting
    moves = records.MoveRemote | records.MoveLocal | records.RecordMove
    acted |= {a.dst for a in plan.actions if isinstance(a, moves)}
    acted |= {a.copy for a in plan.actions if isinstance(a, records.ConflictCopy)}
    with journal.transaction():
        for p in plan.problems:
            folder.raise_issue(p.path, p.kind, p.message, p.hint, related=p.related)
        for a in plan.actions:
            if isinstance(a, records.RecordBase):
                journal.put_base(folder.id, a.path, a.base)
                folder.hashes.pop(a.path, None)
        recorded = {a.path for a in plan.actions if isinstance(a, records.RecordBase)}
        for path, item in items.items():
            if path not in acted or path in recorded:
                journal.dequeue(folder.id, item)
    small: list[records.Upload] = []
    for a in plan.actions:
        if isinstance(a, records.RecordBase):
            continue
        if isinstance(a, records.Upload) and _batchable(folder, a):
            small.append(a)
            continue
        if isinstance(a, records.Upload | records.Download):
            queued = items.get(a.path)
            _spawn(folder, a, queued.added_at if queued else None)
            continue
        if folder.offline or folder.hooks.signed_out():
            break
        if small and isinstance(a, records.DeleteRemote | records.DeleteLocal):
            # Deletes come last and may take a while: the uploads need not wait for them.
            _spawn_batches(folder, small, items)
            small = []
        await _act(folder, a, items, states)
    if small:
        _spawn_batches(folder, small, items)


def _done_with(folder: FolderState, items: dict[str, QueueItem], *paths: str) -> None:
    for p in paths:
        item = items.get(p)
        if item is not None:
            folder.journal.dequeue(folder.id, item)


async def _act(
    folder: FolderState,
    a: records.Action,
    items: dict[str, QueueItem],
    states: dict[str, PathState],
) -> None:
    journal, root, fid = folder.journal, folder.root, folder.id
    client = folder.hooks.client()
    path = _path_of(a)
    if _uploads_running_under(folder, a, items):
        return
    try:
        if isinstance(a, records.MkdirRemote):
            entry = await client.create_folder(remote_path(folder.spec.remote, a.path))
            journal.put_base(fid, a.path, planner.base_of(a.local, remote_of(entry)))
            _done_with(folder, items, a.path)
        elif isinstance(a, records.MkdirLocal):
            st = fs.make_dirs(root, a.path)
            journal.put_base(
                fid,
                a.path,
                Base(True, 0, st.mtime_ns, st.inode, None, a.remote.id, a.remote.rev),
            )
            _done_with(folder, items, a.path)
        elif isinstance(a, records.MoveRemote):
            entry = await client.move(
                a.base.remote_id, remote_path(folder.spec.remote, a.dst), if_rev=a.base.rev
            )
            moved = Base(
                a.base.is_dir,
                a.base.size,
                a.local.mtime_ns if a.base.is_dir else a.base.mtime_ns,
                a.local.inode,
                a.base.sha256,
                entry.id,
                entry.rev,
            )
            journal.move_base(fid, a.src, a.dst, moved)
            _done_with(folder, items, a.src, a.dst)
            # Renames inside a moved folder are found by comparing every path under it.
            journal.enqueue_local(fid, [a.dst, *journal.descendants(fid, a.dst)])
        elif isinstance(a, records.MoveLocal):
            if not fs.matches(fs.stat(root, a.src), _stat_of(a.expect)):
                raise fs.ChangedMeanwhileError(0, "changed", a.src)
            st = fs.move(root, a.src, a.dst)
            old = journal.get_base(fid, a.src)
            moved = Base(
                a.remote.is_dir,
                st.size,
                st.mtime_ns,
                st.inode,
                old.sha256 if old else a.remote.sha256,
                a.remote.id,
                a.remote.rev,
            )
            journal.move_base(fid, a.src, a.dst, moved)
            _done_with(folder, items, a.src, a.dst)
            journal.enqueue_local(fid, [a.dst, *journal.descendants(fid, a.dst)])
        elif isinstance(a, records.RecordMove):
            journal.move_base(fid, a.src, a.dst, a.base)
            _done_with(folder, items, a.src, a.dst)
            journal.enqueue_local(fid, [a.dst, *journal.descendants(fid, a.dst)])
        elif isinstance(a, records.ConflictCopy):
            if not fs.matches(fs.stat(root, a.path), _stat_of(a.expect)):
                raise fs.ChangedMeanwhileError(0, "changed", a.path)
            fs.move(root, a.path, a.copy)
            _done_with(folder, items, a.path, a.copy)
            journal.enqueue_local(fid, [a.path, a.copy])
            state = states.get(a.path)
            if state is not None and a.path in items and items[a.path].remote_known:
                # The server's version still has to come down into the freed name.
                journal.enqueue_remote(fid, [(a.path, state.remote)])
        elif isinstance(a, records.DeleteRemote):
            try:
                if a.base.is_dir:
                    if await _remote_folder_has_unknowns(folder, client, a.path):
                        journal.forget_subtree(fid, a.path)  # comes back down with them
                        _done_with(folder, items, a.path)
                        return
                    await client.delete(a.base.remote_id)
                else:
                    await client.delete(a.base.remote_id, if_rev=a.base.rev)
            except NotFoundError:
                pass  # already gone: what we wanted
            if a.base.is_dir:  # gone with everything in it (the planner leaves those to it)
                journal.forget_subtree(fid, a.path)
            else:
                journal.put_base(fid, a.path, None)
            _done_with(folder, items, a.path)
        elif isinstance(a, records.DeleteLocal):
            if a.expect.is_dir:
                if not fs.remove_empty_dir(root, a.path):
                    journal.forget_subtree(fid, a.path)  # keeps files: they go up again
                    _done_with(folder, items, a.path)
                    journal.enqueue_local(fid, [a.path])
                    return
            else:
                with contextlib.suppress(FileNotFoundError):
                    fs.remove_file(root, a.path, _stat_of(a.expect))
            journal.put_base(fid, a.path, None)
            _done_with(folder, items, a.path)
        folder.clear_issues(path, TRANSIENT)
        if isinstance(a, records.ConflictCopy):
            folder.raise_issue(
                a.path,
                "conflict",
                "This file was changed in two places.",
                f"Both versions were kept; yours is now {planner.shown(a.copy)}.",
                related=(a.path, a.copy),
            )
    except Exception as exc:  # every failure becomes an issue or a retry
        _failed(folder, path, exc)


def _uploads_running_under(
    folder: FolderState, a: records.Action, items: dict[str, QueueItem]
) -> bool:
    """A folder moved or deleted here while files in it are still going up: the server
    side waits for those uploads, or they would land under the old name after the move
    (bringing the old folder back) or in the folder after its delete. Everything queued
    under both names waits with it (True: held, look again shortly)."""
    tops: tuple[str, ...]
    if isinstance(a, records.MoveRemote) and a.base.is_dir:
        tops = (a.src, a.dst)
    elif isinstance(a, records.DeleteRemote) and a.base.is_dir:
        tops = (a.path,)
    else:
        return False
    if not any(fs.is_under(p, tops[0]) for p in folder.in_flight):
        return False
    until = time.monotonic() + IN_FLIGHT_WAIT
    for p in items:
        if any(fs.is_under(p, top) for top in tops):
            folder.holds[p] = until
    return True


async def _remote_folder_has_unknowns(
    folder: FolderState, client: DroplineClient, path: str
) -> bool:
    """Anything in the server's copy of a folder this side has not seen, at any depth (a
    new entry, a newer revision of a file): deleting the folder would take it along.
    Then everything the server holds there is queued to come down again."""
    known = {
        remote_path(folder.spec.remote, p): base
        for p, base in folder.journal.descendants(folder.id, path).items()
    }
    seen: list[Entry] = []
    pending = [remote_path(folder.spec.remote, path)]
    while pending:
        try:
            async for entry in client.iter_folder(pending.pop()):
                seen.append(entry)
                if entry.is_folder:
                    pending.append(entry.path)
        except NotFoundError:
            continue
    unknown = any(
        (base := known.get(e.path)) is None or (not e.is_folder and e.rev != base.rev) for e in seen
    )
    if unknown:
        back = [(rel_of(folder.spec.remote, e.path), remote_of(e)) for e in seen]
        folder.journal.enqueue_remote(folder.id, [(r, s) for r, s in back if r is not None])
        folder.feed.refresh(path)
    return unknown


def _failed(folder: FolderState, path: str, exc: BaseException) -> None:
    """Sort a failure: the network (wait), the credential (sign in), the remote state
    moved on (look again), the file itself (an issue, maybe retried)."""
    if isinstance(exc, AuthenticationError):
        folder.hooks.auth_failed(exc)
    elif isinstance(exc, UnavailableError | RateLimitedError):
        folder.failed_network(exc)
    elif isinstance(exc, InvalidNameError):
        folder.raise_issue(
            path,
            "invalid-name",
            f"The server cannot store this name: {exc}",
            "Rename the file; it is synced as soon as its name is valid.",
        )
        folder.journal.dequeue_path(folder.id, path)
    elif isinstance(exc, TooLargeError):
        folder.raise_issue(
            path,
            "too-large",
            f"The server refused this file: {exc}",
            "Make it smaller or ask your administrator for a higher limit.",
        )
        folder.journal.dequeue_path(folder.id, path)
    elif isinstance(exc, AuthorizationError):
        folder.retry_later(
            path,
            "forbidden",
            f"Not allowed: {exc}",
            "Ask your administrator for access; it is tried again later.",
        )
    elif isinstance(exc, DiskFullError):
        folder.retry_later(path, "disk-full", exc.message, exc.hint, cap=DISK_FULL_RETRY_CAP)
    elif isinstance(exc, StorageFullError):
        # The server's disk: retried as soon as a full disk here is (the upload resumes).
        folder.retry_later(
            path,
            "server-full",
            "The server has no room for this file right now.",
            "It is tried again by itself; the server's administrator may need to free space.",
            cap=DISK_FULL_RETRY_CAP,
        )
    elif isinstance(
        exc, ChangedDuringUpload | fs.ChangedMeanwhileError | FileNotFoundError | FileExistsError
    ) or isinstance(exc.__cause__, FileNotFoundError):  # the SDK found the file gone
        folder.holds[path] = time.monotonic() + folder.hooks.settings.stable_seconds
    elif isinstance(exc, DroplineError) and exc.status in (409, 412):
        folder.feed.refresh(path)  # the server moved on: fetch its state, plan again
        folder.holds[path] = time.monotonic() + 0.5
    elif isinstance(exc, DroplineError):
        folder.retry_later(
            path, "server-error", f"The server refused this: {exc}", "It is tried again later."
        )
    elif isinstance(exc, OSError):
        folder.retry_later(
            path,
            "local-error",
            f"Cannot change this file here: {exc.strerror or exc}.",
            "Check the folder's permissions and free space; it is tried again.",
        )
    else:
        log.error("folder %s: %s failed", folder.root, path, exc_info=exc)
        folder.retry_later(
            path,
            "internal",
            f"Unexpected error ({type(exc).__name__}): {exc}",
            "It is tried again.",
        )


# -- transfers in the background --------------------------------------------------


def _spawn(
    folder: FolderState, action: records.Upload | records.Download, item_time: float | None
) -> None:
    done = Finished(action.path, item_time, action, time.monotonic())
    task = asyncio.create_task(_transfer(folder, done), name=f"transfer {action.path}")
    folder.in_flight[action.path] = task
    if isinstance(action, records.Upload) and action.local.sha256 is not None:
        folder.uploading[action.path] = action.local.sha256


def _batchable(folder: FolderState, a: records.Upload) -> bool:
    settings = folder.hooks.settings
    return a.local.sha256 is not None and a.local.size <= min(
        settings.batch_file_size, settings.batch_bytes, batch.MAX_BYTES
    )


def _spawn_batches(
    folder: FolderState, uploads: list[records.Upload], items: dict[str, QueueItem]
) -> None:
    """Small files ready together go up together: up to ``batch_files`` files and
    ``batch_bytes`` bytes a request. A lone one takes the single-file path."""
    if len(uploads) == 1:
        queued = items.get(uploads[0].path)
        _spawn(folder, uploads[0], queued.added_at if queued else None)
        return
    settings = folder.hooks.settings
    most_files = max(1, min(settings.batch_files, batch.MAX_FILES))
    most_bytes = min(settings.batch_bytes, batch.MAX_BYTES)
    group: list[Finished] = []
    size = 0
    for a in sorted(uploads, key=lambda u: u.path):  # neighbours travel together
        if group and (len(group) >= most_files or size + a.local.size > most_bytes):
            _spawn_batch(folder, group)
            group, size = [], 0
        queued = items.get(a.path)
        group.append(Finished(a.path, queued.added_at if queued else None, a, time.monotonic()))
        size += a.local.size
    if group:
        _spawn_batch(folder, group)


def _spawn_batch(folder: FolderState, group: list[Finished]) -> None:
    task = asyncio.create_task(_batch_transfer(folder, group), name=f"batch {group[0].path}")
    for done in group:
        assert isinstance(done.action, records.Upload) and done.action.local.sha256 is not None
        folder.in_flight[done.path] = task
        folder.uploading[done.path] = done.action.local.sha256


async def _batch_transfer(folder: FolderState, group: list[Finished]) -> None:
    """One batch request; each file's result is then applied like a single upload's."""
    files = []
    for done in group:
        a = done.action
        assert isinstance(a, records.Upload)
        files.append(BatchFile(a.path, remote_path(folder.spec.remote, a.path), a.local, a.if_rev))
    results: list[BatchResult]
    try:
        results = await upload_many(folder.hooks.shared, folder.hooks.client(), folder.root, files)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # handed to the loop, which sorts it per file
        results = [exc] * len(group)
    for done, f, result in zip(group, files, results, strict=True):
        if isinstance(result, BaseException):
            done.error = result
        else:
            done.result = result
            _progress(folder, f.rel, Direction.UP)(f.local.size, f.local.size)
        folder.finished.append(done)
    folder.wake()


async def _transfer(folder: FolderState, done: Finished) -> None:
    a = done.action
    direction = Direction.UP if isinstance(a, records.Upload) else Direction.DOWN
    size = a.local.size if isinstance(a, records.Upload) else a.remote.size
    progress = _progress(folder, a.path, direction)
    try:
        client = folder.hooks.client()
        rpath = remote_path(folder.spec.remote, a.path)
        if isinstance(a, records.Upload):
            done.result = await upload(
                folder.hooks.shared,
                client,
                folder.id,
                folder.root,
                a.path,
                rpath,
                a.local,
                a.if_rev,
                progress,
            )
        else:
            done.result = await download(
                folder.hooks.shared,
                client,
                folder.id,
                folder.root,
                a.path,
                rpath,
                a.remote,
                a.expect,
                progress,
            )
        progress(size, size)
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # handed to the loop, which sorts it
        done.error = exc
    folder.finished.append(done)
    folder.wake()


def _progress(folder: FolderState, path: str, direction: Direction) -> Callable[[int, int], None]:
    transfer_id = f"{folder.id}:{direction}:{path}"
    last = [0.0]
    started = time.monotonic()

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < PROGRESS_EVERY:
            return
        last[0] = now
        rate = done / (now - started) if now > started else 0.0
        folder.hooks.publish(
            TransferProgress(transfer_id, str(folder.root), path, direction, done, total, rate)
        )

    return report


def collect_finished(folder: FolderState) -> None:
    finished, folder.finished = folder.finished, []
    if not finished:
        return
    # One commit for all that finished since the last step (a batch's 200 files arrive
    # together): a commit per file was most of the engine's time in a burst.
    with folder.journal.transaction():
        for done in finished:
            folder.in_flight.pop(done.path, None)
            folder.uploading.pop(done.path, None)
            _finish(folder, done)


def _finish(folder: FolderState, done: Finished) -> None:
    a, journal = done.action, folder.journal
    direction = Direction.UP if isinstance(a, records.Upload) else Direction.DOWN
    size = a.local.size if isinstance(a, records.Upload) else a.remote.size
    duration = time.monotonic() - done.started
    if done.error is not None:
        folder.dirty = True
        _failed(folder, a.path, done.error)
        if not isinstance(done.error, ChangedDuringUpload | fs.ChangedMeanwhileError):
            _history(folder, a.path, direction, size, duration, Result.FAILED, str(done.error))
        return
    folder.hashes.pop(a.path, None)
    with journal.transaction():
        if isinstance(a, records.Upload):
            assert isinstance(done.result, tuple)
            base, _remote = done.result
            _after_upload(folder, a.path, base)
        else:
            assert isinstance(done.result, Base)
            journal.put_base(folder.id, a.path, done.result)
        if done.item_time is not None:
            journal.dequeue(folder.id, QueueItem(a.path, True, False, None, done.item_time))
        if isinstance(a, records.Upload) and fs.replaced(folder.root, a.path, _stat_of(a.local)):
            journal.enqueue_local(folder.id, [a.path])  # saved again while it went up
        if journal.is_queued(folder.id, a.path):
            folder.dirty = True  # it changed again while it was being transferred
        folder.clear_issues(a.path, TRANSIENT)
        _history(folder, a.path, direction, size, duration, Result.OK, None)


def _after_upload(folder: FolderState, path: str, base: Base) -> None:
    spec = folder.spec
    if spec.mode is not FolderMode.UPLOAD_ONLY or spec.after_upload is AfterUpload.KEEP:
        folder.journal.put_base(folder.id, path, base)
        return
    expected = fs.LocalStat(False, base.size, base.mtime_ns, base.inode)
    try:
        if spec.after_upload is AfterUpload.REMOVE:
            fs.remove_file(folder.root, path, expected)
        else:
            archive = folder.archive_dir()
            assert archive is not None
            if not fs.matches(fs.stat(folder.root, path), expected):
                raise fs.ChangedMeanwhileError(0, "changed", path)
            fs.move_out(fs.abspath(folder.root, path), archive / fs.parent_of(path))
    except (OSError, fs.ChangedMeanwhileError):
        # Changed since it went up (or cannot be moved): keep it, it goes up again.
        folder.journal.put_base(folder.id, path, base)
        return
    folder.journal.put_base(folder.id, path, None)


def _history(
    folder: FolderState,
    path: str,
    direction: Direction,
    size: int,
    duration: float,
    result: Result,
    error: str | None,
) -> None:
    row = folder.journal.add_history(
        str(folder.root), path, direction, size, duration, result, error
    )
    folder.hooks.publish(HistoryAdded(row))


def storable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def display_path(path: str) -> str:
    """A name read from disk with undecodable bytes, shown with replacement marks."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _path_of(a: records.Action) -> str:
    moves = records.MoveRemote | records.MoveLocal | records.RecordMove
    return a.src if isinstance(a, moves) else a.path


def _stat_of(local: Local) -> fs.LocalStat:
    return fs.LocalStat(local.is_dir, local.size, local.mtime_ns, local.inode)
