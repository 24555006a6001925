"""One sync folder's loop: it alone owns the folder's state; others only post to it.

Local events (watcher -> aggregator) and remote changes (the long-poll in
:mod:`sync.remote`) land in the journal's queue first. Each round the loop takes the
queued paths, looks at them (stat; hash only what the base cannot vouch for; wait
until a new file has settled), asks the planner, and carries out the plan: folder
moves and conflict copies first, transfers in the background (shared slots, small
first), deletes last. A path leaves the queue only when its work is done, so a
crash at any moment leaves the work to be done again, never lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from sync import fs, planner
from sync.aggregator import Aggregator, Kind
from sync.client import DroplineClient
from sync.errors import (
    AuthenticationError,
    AuthorizationError,
    DroplineError,
    InvalidNameError,
    NotFoundError,
    RateLimitedError,
    TooLargeError,
    UnavailableError,
)
from sync.ignore import IgnoreRules
from sync.journal import QueueItem
from sync.planner import Base, Local, PathState, Plan, Remote
from sync.remote import RemoteFeed, remote_path
from sync.scanner import FileBusyError, hash_file, walk
from sync.transfer import ChangedDuringUpload, Shared, download, remote_of, upload
from sync.types import (
    AfterUpload,
    Direction,
    EngineSettings,
    Event,
    FolderMode,
    FolderSpec,
    FolderStatus,
    HistoryAdded,
    IssueCleared,
    IssueRaised,
    Result,
    State,
    StateChanged,
    TransferProgress,
)
from sync.watcher import FolderWatcher, Trouble

log = logging.getLogger(__name__)

ROUND_SIZE = 5_000  # queued paths planned together
WATCH_CHECK = 60.0  # seconds between checks that the watcher is alive
DEGRADED_RESCAN = 60.0  # rescan interval while some directories cannot be watched
PROGRESS_EVERY = 0.25  # seconds between progress events of one transfer
PENDING_EVERY = 0.25  # seconds between recounts of the queue while transfers run
RETRY_CAP = 300.0
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
)


class Hooks(Protocol):
    """What a folder needs from its engine."""

    host: str
    settings: EngineSettings
    shared: Shared

    def client(self) -> DroplineClient: ...
    def publish(self, event: Event) -> None: ...
    def auth_failed(self, exc: DroplineError) -> None: ...
    def signed_out(self) -> bool: ...


@dataclass
class _Finished:
    path: str
    item_time: float | None
    action: planner.Upload | planner.Download
    started: float
    result: tuple[Base, Remote] | Base | None = None
    error: BaseException | None = None


class FolderLoop:
    def __init__(self, spec: FolderSpec, folder_id: int, hooks: Hooks) -> None:
        self.spec = spec
        self.id = folder_id
        self.hooks = hooks
        self.root = spec.local
        self.journal = hooks.shared.journal
        patterns = list(spec.ignore)
        archive = self.archive_dir()
        if (
            archive is not None
            and fs.is_under(str(archive), str(self.root))
            and archive != self.root
        ):
            patterns.append("/" + str(archive.relative_to(self.root)) + "/")
        self.ignore = IgnoreRules(patterns)
        self.agg = Aggregator()
        self.feed = RemoteFeed(self)
        self.watcher: FolderWatcher | None = None
        self.user_paused = False
        self.guard: str | None = None  # the kind of the issue that paused us
        self.allow_mass_delete = False
        self.restore_deletes = False
        self.offline = False
        self.missing = False
        self.scanning = False
        self.state = State.IDLE
        self.pending = 0
        self.last_error: str | None = None
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self._done: list[_Finished] = []
        self._hold: dict[str, float] = {}
        self._wake = asyncio.Event()
        self.dirty = True  # queued work may be waiting for a round
        self._pending_at = 0.0
        self._stopping = False
        self._rescan_at = 0.0  # 0: at start
        self._rescan_full = True
        self._watch_check_at = 0.0
        self._rescan_interval = hooks.settings.rescan_interval
        self._offline_probe_at = 0.0
        self._offline_backoff = 1.0
        self._task: asyncio.Task[None] | None = None
        self._case_sensitive = True
        # Hashes of files not synced yet, so a retried upload does not read them again.
        self._hashes: dict[str, Local] = {}

    # -- posting (from the engine, the watcher and the remote feed) -------------------

    def wake(self) -> None:
        self._wake.set()

    def post_events(self, events: list[tuple[str, Kind]]) -> None:
        now = time.monotonic()
        for rel, kind in events:
            self.agg.add(rel, kind, now)
        self.wake()

    def post_trouble(self, trouble: Trouble) -> None:
        log.warning("folder %s: %s; rescanning", self.root, trouble.value)
        if trouble is Trouble.WATCH_LIMIT:
            self._watch_limit()
        if trouble is Trouble.DEAD:
            self._restart_watcher()
        self.agg.rescan_all(time.monotonic())
        self.wake()

    def sync_now(self) -> None:
        self._rescan_at = time.monotonic()
        self._hold.clear()
        self.queue_changed()

    def clear_hold(self, path: str) -> None:
        self._hold.pop(path, None)

    def archive_dir(self) -> Path | None:
        if self.spec.mode is not FolderMode.UPLOAD_ONLY:
            return None
        if self.spec.after_upload is not AfterUpload.ARCHIVE:
            return None
        return self.spec.archive_dir or self.root.parent / f"{self.root.name} (uploaded)"

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"folder {self.root}")
        if self.spec.mode is not FolderMode.UPLOAD_ONLY:
            self.feed.start()

    async def stop(self) -> None:
        self._stopping = True
        self.wake()
        await self.feed.stop()
        tasks = [t for t in (self._task, *self.in_flight.values()) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.watcher is not None:
            await asyncio.to_thread(self.watcher.stop)
            self.watcher = None

    def _start_watcher(self) -> None:
        if self.watcher is not None or not self.root.is_dir():
            return
        watcher = FolderWatcher(
            self.root, asyncio.get_running_loop(), self.post_events, self.post_trouble
        )
        try:
            watcher.start()
        except OSError as exc:
            log.warning("folder %s cannot be watched (%s); rescanning periodically", self.root, exc)
            return
        self.watcher = watcher

    def _restart_watcher(self) -> None:
        if self.watcher is not None:
            self.watcher.stop()
            self.watcher = None
        self._start_watcher()

    def _watch_limit(self) -> None:
        self._rescan_interval = min(self._rescan_interval, DEGRADED_RESCAN)
        self.raise_issue(
            "",
            "watch-limit",
            "Not every subfolder can be watched for changes: the system's limit on watched "
            "folders (fs.inotify.max_user_watches) is reached. Changes are found by a "
            "rescan every minute instead, so they arrive later.",
            "Raise it, e.g. `sudo sysctl fs.inotify.max_user_watches=524288` (and in "
            "/etc/sysctl.d/ to keep it), then restart Dropline.",
        )

    # -- issues and events ------------------------------------------------------------

    def enqueue_local(self, paths: Iterable[str]) -> None:
        """Queue paths; a name that is not valid UTF-8 cannot be synced (nor stored): it
        becomes an issue right away."""
        good: list[str] = []
        for path in paths:
            if _storable(path):
                good.append(path)
            else:
                self.raise_issue(
                    path,
                    "invalid-name",
                    "This name is not valid UTF-8 text; the server cannot store it.",
                    "Rename the file; it is synced as soon as its name is valid.",
                )
        self.journal.enqueue_local(self.id, good)
        self.queue_changed()

    def queue_changed(self) -> None:
        """Something was queued: the next step runs a round."""
        self.dirty = True
        self.wake()

    def raise_issue(
        self,
        path: str,
        kind: str,
        message: str,
        hint: str,
        *,
        retry_at: float | None = None,
        related: tuple[str, ...] = (),
    ) -> None:
        issue, new = self.journal.raise_issue(
            self.id,
            _display(path),
            kind,
            message,
            hint,
            retry_at=retry_at,
            related=tuple(_display(p) for p in related),
        )
        if new:
            self.hooks.publish(IssueRaised(issue))
        self.last_error = message

    def clear_issues(self, path: str, kinds: tuple[str, ...] | None = None) -> None:
        for issue_id in self.journal.clear_issues(self.id, path, kinds):
            self.hooks.publish(IssueCleared(issue_id))

    def status(self) -> FolderStatus:
        return FolderStatus(
            str(self.root),
            self.spec.remote,
            self.spec.mode,
            self.state,
            self.pending,
            self.last_error,
        )

    def _set_state(self) -> None:
        if self.hooks.signed_out():
            state = State.SIGNED_OUT
        elif self.missing:
            state = State.ERROR
        elif self.user_paused or self.guard:
            state = State.PAUSED
        elif self.offline:
            state = State.OFFLINE
        elif self.scanning:
            state = State.SCANNING
        elif self.in_flight or self.pending or self.agg.pending():
            state = State.SYNCING
        else:
            state = State.IDLE
        if state is not self.state:
            self.state = state
            self.hooks.publish(StateChanged(str(self.root), state))

    # -- the loop ---------------------------------------------------------------------

    async def _run(self) -> None:
        self._case_sensitive = (
            await asyncio.to_thread(fs.case_sensitive, self.root) if self.root.is_dir() else True
        )
        self._start_watcher()
        while not self._stopping:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug must not end the folder: log it, wait, go on
                log.exception("folder %s: unexpected error", self.root)
                await asyncio.sleep(1.0)
            now = time.monotonic()
            if self.dirty or now - self._pending_at > PENDING_EVERY or not self.in_flight:
                # Counting is cheap but not free: not after every one of 10,000 uploads.
                self.pending = self.journal.pending_count(self.id)
                self._pending_at = now
            self._set_state()
            if self._stopping:
                break
            delay = self._next_wakeup() - time.monotonic()
            if delay > 0 and not self._wake.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()

    def _next_wakeup(self) -> float:
        now = time.monotonic()
        times = [self._rescan_at, self._watch_check_at]
        deadline = self.agg.next_deadline()
        if deadline is not None:
            times.append(deadline)
        if self._hold:
            times.append(min(self._hold.values()))
        if self.offline or self.missing:
            times.append(self._offline_probe_at)
        return max(now, min(times))

    async def _step(self) -> None:
        now = time.monotonic()
        self._collect_finished()
        if not self.root.is_dir():
            self._root_missing(now)
            return
        if self.missing:
            self.missing = False
            self.clear_issues("", ("folder-missing",))
            self._restart_watcher()
            self._rescan_at = now
        if now >= self._watch_check_at:
            self._watch_check_at = now + WATCH_CHECK
            if self.watcher is None or self.watcher.check() is Trouble.DEAD:
                self.post_trouble(Trouble.DEAD)
        batch = self.agg.pop(now)
        if batch is not None:
            if batch.full:
                self._rescan_at = now
            else:
                self.enqueue_local(batch.paths | batch.dirs)
                if batch.dirs:
                    await self._rescan_dirs(sorted(batch.dirs))
        if now >= self._rescan_at:
            await self._full_scan()
        if self.hooks.signed_out() or self.user_paused or self.guard:
            return
        if self.offline:
            if now < self._offline_probe_at:
                return
            if not await self._probe():
                return
        for path in [p for p, t in self._hold.items() if t <= now]:
            del self._hold[path]
            self.dirty = True
        # A round when something was queued, or when queued work is neither running
        # nor waiting (the safety net for anything that forgot to say so).
        if self.dirty or self.pending > len(self.in_flight) + len(self._hold):
            self.dirty = False
            await self._round()

    def _root_missing(self, now: float) -> None:
        if not self.missing:
            self.missing = True
            if self.watcher is not None:
                self.watcher.stop()
                self.watcher = None
            self.raise_issue(
                "",
                "folder-missing",
                f"The sync folder {self.root} is gone (deleted, moved or unmounted). "
                "Nothing was deleted on the server.",
                "Put the folder back, or remove it from sync.",
            )
        self._offline_probe_at = now + 5.0

    async def _probe(self) -> bool:
        try:
            await self.hooks.client().me()
        except DroplineError as exc:
            self.failed_network(exc)
            return False
        self.set_online()
        return True

    def set_online(self) -> None:
        if self.offline:
            log.info("folder %s: server reachable again", self.root)
        self.offline = False
        self._offline_backoff = 1.0
        self.queue_changed()

    def failed_network(self, exc: DroplineError) -> None:
        if isinstance(exc, AuthenticationError):
            self.hooks.auth_failed(exc)
            return
        if not self.offline:
            log.warning("folder %s: server unreachable (%s); the queue waits", self.root, exc)
        self.offline = True
        wait = exc.retry_after if isinstance(exc, RateLimitedError) and exc.retry_after else None
        self._offline_probe_at = time.monotonic() + (wait or self._offline_backoff)
        self._offline_backoff = min(self._offline_backoff * 2, 60.0)

    async def _full_scan(self) -> None:
        interval = self._rescan_interval
        self._rescan_at = time.monotonic() + interval
        self.scanning = True
        self._set_state()
        try:
            paths, errors, dirs = await asyncio.to_thread(self._walk_all)
        finally:
            self.scanning = False
        with self.journal.transaction():
            self.enqueue_local(paths)
            for rel, err in errors:
                self.raise_issue(
                    rel,
                    "unreadable",
                    f"Cannot read this: {err}.",
                    "Check its permissions; it is retried at the next scan.",
                )
        if self.watcher is not None and self.watcher.check(dirs) is Trouble.WATCH_LIMIT:
            self._watch_limit()

    async def _rescan_dirs(self, dirs: list[str]) -> None:
        """Directories the aggregator folded a burst into: walk each for what changed."""
        found: list[str] = []
        for directory in dirs:
            paths, errors, _ = await asyncio.to_thread(self._walk_all, directory)
            found += paths
            for rel, err in errors:
                self.raise_issue(
                    rel,
                    "unreadable",
                    f"Cannot read this: {err}.",
                    "Check its permissions; it is retried at the next scan.",
                )
        self.enqueue_local(found)

    def _walk_all(self, start: str = "") -> tuple[list[str], list[tuple[str, str]], int]:
        reader = self.journal.reader(self.id)
        dirs = [0]

        def count(_n: int) -> None:
            dirs[0] += 1

        try:
            paths: list[str] = []
            errors: list[tuple[str, str]] = []
            for r in walk(self.root, reader, self.ignore, start, counter=count):
                if r.error is not None:
                    errors.append((r.path, r.error))
                else:
                    paths.append(r.path)
            return paths, errors, dirs[0] - 1
        finally:
            reader.close()

    # -- one round: look, plan, act ---------------------------------------------------

    async def _round(self) -> None:
        now = time.monotonic()
        items = [
            i
            for i in self.journal.pending(self.id, ROUND_SIZE)
            if i.path not in self.in_flight and self._hold.get(i.path, 0) <= now
        ]
        if not items:
            return
        for item in items:
            self._hold.pop(item.path, None)
        states, waiting = await self._look(items)
        plan = planner.plan(
            states.values(),
            mode=self.spec.mode,
            local_edits=self.spec.local_edits,
            host=self.hooks.host,
            now=datetime.now(),
            total_files=self.journal.count_files(self.id),
            allow_mass_delete=self.allow_mass_delete,
            case_sensitive=self._case_sensitive,
        )
        if plan.mass_delete is not None:
            if self.restore_deletes:
                self._restore(plan, states)
                return
            self.guard = plan.mass_delete.kind
            p = plan.mass_delete
            self.raise_issue(p.path, p.kind, p.message, p.hint)
            return
        self.allow_mass_delete = False
        await self._carry_out(plan, {i.path: i for i in items}, states, waiting)
        structural = any(
            not isinstance(a, planner.Upload | planner.Download | planner.RecordBase)
            for a in plan.actions
        )
        if len(items) >= ROUND_SIZE or plan.deferred or structural:
            self.queue_changed()  # more queued, or follow-ups of what just ran

    async def _look(self, items: list[QueueItem]) -> tuple[dict[str, PathState], set[str]]:
        """Build the three states of every queued path (and what hangs below folders)."""
        journal, root = self.journal, self.root
        remote_known = {i.path: i.remote for i in items if i.remote_known}
        states: dict[str, PathState] = {}
        to_hash: list[tuple[str, Local]] = []
        waiting: set[str] = set()
        settle = self.hooks.settings.stable_seconds
        wall = time.time()

        def add(path: str, base: Base | None) -> None:
            if path in states or self.ignore.ignored_any(path):
                return
            try:
                st = fs.stat(root, path)
            except fs.NotRegularError:
                return
            except OSError as exc:
                self._retry_later(
                    path,
                    "unreadable",
                    f"Cannot read this: {exc.strerror}.",
                    "Check its permissions; it is tried again.",
                )
                waiting.add(path)
                return
            local = None if st is None else Local(st.is_dir, st.size, st.mtime_ns, st.inode)
            if local is not None and not local.is_dir:
                if base is not None and not base.is_dir and planner._same_stat(local, base):
                    local = Local(False, local.size, local.mtime_ns, local.inode, base.sha256)
                elif self.spec.mode is not FolderMode.DOWNLOAD_ONLY or base is not None:
                    if wall - local.mtime_ns / 1e9 < settle:
                        self._hold[path] = time.monotonic() + settle
                        waiting.add(path)
                        return
                    cached = self._known_hash(path, local)
                    if cached is not None:
                        local = cached
                    else:
                        to_hash.append((path, local))
            if path in remote_known:
                remote = remote_known[path]
            elif base is not None:
                remote = Remote(base.remote_id, base.is_dir, base.size, base.sha256, base.rev)
            else:
                remote = None
            states[path] = PathState(path, base, local, remote)

        for item in items:
            add(item.path, journal.get_base(self.id, item.path))
        for path, state in list(states.items()):
            base, local, remote = state.base, state.local, state.remote
            if (
                base is not None
                and base.is_dir
                and (local is None or not local.is_dir or remote is None or not remote.is_dir)
            ):
                for child, child_base in journal.descendants(self.id, path).items():
                    add(child, child_base)
            if local is not None and local.is_dir and base is None:
                for r in walk(root, journal.base_reader(self.id), self.ignore, path):
                    if r.error is None:
                        add(r.path, r.base)
            if remote is None and path in remote_known and base is not None and base.is_dir:
                for child in journal.descendants(self.id, path):
                    remote_known.setdefault(child, None)
                    if child in states:
                        s = states[child]
                        states[child] = PathState(child, s.base, s.local, None)
        if to_hash:
            hashed = await asyncio.to_thread(self._hash_all, to_hash)
            for path, result in hashed.items():
                s = states[path]
                if isinstance(result, Local):
                    states[path] = PathState(path, s.base, result, s.remote)
                    continue
                del states[path]
                waiting.add(path)
                if isinstance(result, FileBusyError | FileNotFoundError):
                    self._hold[path] = time.monotonic() + max(settle, 1.0)
                else:
                    self._retry_later(
                        path,
                        "unreadable",
                        f"Cannot read this file: {result}.",
                        "Check its permissions; it is tried again.",
                    )
        return states, waiting

    def _known_hash(self, path: str, local: Local) -> Local | None:
        """A hash already computed for this very file: earlier in this run (an upload that
        failed and is tried again), or by an unfinished upload before a restart."""
        cached = self._hashes.get(path)
        if cached is not None and (cached.size, cached.mtime_ns, cached.inode) == (
            local.size,
            local.mtime_ns,
            local.inode,
        ):
            return cached
        row = self.journal.transfer(self.id, path, Direction.UP)
        if row is None or row.sha256 is None:
            return None
        if (row.size, row.mtime_ns, row.inode) != (local.size, local.mtime_ns, local.inode):
            return None
        return Local(False, local.size, local.mtime_ns, local.inode, row.sha256)

    def _hash_all(self, files: list[tuple[str, Local]]) -> dict[str, Local | OSError]:
        out: dict[str, Local | OSError] = {}
        counters = self.hooks.shared.counters

        def count(n: int) -> None:
            counters.bytes_hashed += n

        for path, local in files:
            try:
                out[path] = self._hashes[path] = hash_file(self.root, path, local, count)
            except OSError as exc:
                out[path] = exc
        return out

    def _retry_later(self, path: str, kind: str, message: str, hint: str) -> None:
        attempts = self.journal.attempts(self.id, path, kind)
        delay = min(RETRY_CAP, 2.0 ** min(attempts + 1, 9))
        self._hold[path] = time.monotonic() + delay
        self.raise_issue(path, kind, message, hint, retry_at=time.time() + delay)

    def _restore(self, plan: Plan, states: dict[str, PathState]) -> None:
        """The user chose to bring back what a mass delete removed, instead of deleting."""
        self.restore_deletes = False
        with self.journal.transaction():
            for s in states.values():
                if s.base is None:
                    continue
                if s.local is None and s.remote is not None:  # gone here: download again
                    self.journal.put_base(self.id, s.path, None)
                    self.journal.enqueue_remote(self.id, [(s.path, s.remote)])
                elif s.remote is None and s.local is not None:  # gone there: upload again
                    self.journal.put_base(self.id, s.path, None)
                    self.journal.enqueue_local(self.id, [s.path])
        self.queue_changed()

    async def _carry_out(
        self,
        plan: Plan,
        items: dict[str, QueueItem],
        states: dict[str, PathState],
        waiting: set[str],
    ) -> None:
        journal = self.journal
        acted = {_path_of(a) for a in plan.actions} | set(plan.deferred) | waiting
        acted |= {
            a.dst for a in plan.actions if isinstance(a, planner.MoveRemote | planner.MoveLocal)
        }
        acted |= {a.copy for a in plan.actions if isinstance(a, planner.ConflictCopy)}
        with journal.transaction():
            for p in plan.problems:
                self.raise_issue(p.path, p.kind, p.message, p.hint, related=p.related)
            for a in plan.actions:
                if isinstance(a, planner.RecordBase):
                    journal.put_base(self.id, a.path, a.base)
                    self._hashes.pop(a.path, None)
            recorded = {a.path for a in plan.actions if isinstance(a, planner.RecordBase)}
            for path, item in items.items():
                if path not in acted or path in recorded:
                    journal.dequeue(self.id, item)
        for a in plan.actions:
            if isinstance(a, planner.RecordBase):
                continue
            if isinstance(a, planner.Upload | planner.Download):
                queued = items.get(a.path)
                self._spawn(a, queued.added_at if queued else None)
                continue
            if self.offline or self.hooks.signed_out():
                break
            await self._act(a, items, states)

    def _done_with(self, items: dict[str, QueueItem], *paths: str) -> None:
        for p in paths:
            item = items.get(p)
            if item is not None:
                self.journal.dequeue(self.id, item)

    async def _act(
        self, a: planner.Action, items: dict[str, QueueItem], states: dict[str, PathState]
    ) -> None:
        journal, root, fid = self.journal, self.root, self.id
        client = self.hooks.client()
        path = _path_of(a)
        try:
            if isinstance(a, planner.MkdirRemote):
                entry = await client.create_folder(remote_path(self.spec.remote, a.path))
                journal.put_base(fid, a.path, planner.base_of(a.local, remote_of(entry)))
                self._done_with(items, a.path)
            elif isinstance(a, planner.MkdirLocal):
                st = fs.make_dirs(root, a.path)
                journal.put_base(
                    fid,
                    a.path,
                    Base(True, 0, st.mtime_ns, st.inode, None, a.remote.id, a.remote.rev),
                )
                self._done_with(items, a.path)
            elif isinstance(a, planner.MoveRemote):
                entry = await client.move(
                    a.base.remote_id, remote_path(self.spec.remote, a.dst), if_rev=a.base.rev
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
                self._done_with(items, a.src, a.dst)
                journal.enqueue_local(fid, [a.dst])
            elif isinstance(a, planner.MoveLocal):
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
                self._done_with(items, a.src, a.dst)
                journal.enqueue_local(fid, [a.dst])
            elif isinstance(a, planner.ConflictCopy):
                if not fs.matches(fs.stat(root, a.path), _stat_of(a.expect)):
                    raise fs.ChangedMeanwhileError(0, "changed", a.path)
                fs.move(root, a.path, a.copy)
                self._done_with(items, a.path, a.copy)
                journal.enqueue_local(fid, [a.path, a.copy])
                state = states.get(a.path)
                if state is not None and a.path in items and items[a.path].remote_known:
                    # The server's version still has to come down into the freed name.
                    journal.enqueue_remote(fid, [(a.path, state.remote)])
            elif isinstance(a, planner.DeleteRemote):
                try:
                    if a.base.is_dir:
                        if await self._remote_folder_has_unknowns(client, a.path):
                            journal.forget_subtree(fid, a.path)  # comes back down with them
                            self._done_with(items, a.path)
                            return
                        await client.delete(a.base.remote_id)
                    else:
                        await client.delete(a.base.remote_id, if_rev=a.base.rev)
                except NotFoundError:
                    pass  # already gone: what we wanted
                journal.put_base(fid, a.path, None)
                self._done_with(items, a.path)
            elif isinstance(a, planner.DeleteLocal):
                if a.expect.is_dir:
                    if not fs.remove_empty_dir(root, a.path):
                        journal.forget_subtree(fid, a.path)  # keeps files: they go up again
                        self._done_with(items, a.path)
                        journal.enqueue_local(fid, [a.path])
                        return
                else:
                    with contextlib.suppress(FileNotFoundError):
                        fs.remove_file(root, a.path, _stat_of(a.expect))
                journal.put_base(fid, a.path, None)
                self._done_with(items, a.path)
            self.clear_issues(path, TRANSIENT)
            if isinstance(a, planner.ConflictCopy):
                self.raise_issue(
                    a.path,
                    "conflict",
                    "This file was changed in two places.",
                    f"Both versions were kept; yours is now {a.copy!r}.",
                    related=(a.path, a.copy),
                )
        except Exception as exc:  # every failure becomes an issue or a retry
            self._failed(path, exc)

    async def _remote_folder_has_unknowns(self, client: DroplineClient, path: str) -> bool:
        known = {remote_path(self.spec.remote, p) for p in self.journal.descendants(self.id, path)}
        try:
            async for entry in client.iter_folder(remote_path(self.spec.remote, path)):
                if entry.path not in known:
                    return True
        except NotFoundError:
            return False
        return False

    def _failed(self, path: str, exc: BaseException) -> None:
        """Sort a failure: the network (wait), the credential (sign in), the remote state
        moved on (look again), the file itself (an issue, maybe retried)."""
        if isinstance(exc, AuthenticationError):
            self.hooks.auth_failed(exc)
        elif isinstance(exc, UnavailableError | RateLimitedError):
            self.failed_network(exc)
        elif isinstance(exc, InvalidNameError):
            self.raise_issue(
                path,
                "invalid-name",
                f"The server cannot store this name: {exc}",
                "Rename the file; it is synced as soon as its name is valid.",
            )
            self.journal.dequeue_path(self.id, path)
        elif isinstance(exc, TooLargeError):
            self.raise_issue(
                path,
                "too-large",
                f"The server refused this file: {exc}",
                "Make it smaller or ask your administrator for a higher limit.",
            )
            self.journal.dequeue_path(self.id, path)
        elif isinstance(exc, AuthorizationError):
            self._retry_later(
                path,
                "forbidden",
                f"Not allowed: {exc}",
                "Ask your administrator for access; it is tried again later.",
            )
        elif isinstance(
            exc,
            ChangedDuringUpload | fs.ChangedMeanwhileError | FileNotFoundError | FileExistsError,
        ):
            self._hold[path] = time.monotonic() + self.hooks.settings.stable_seconds
        elif isinstance(exc, DroplineError) and exc.status in (409, 412):
            self.feed.refresh(path)  # the server moved on: fetch its state, plan again
            self._hold[path] = time.monotonic() + 0.5
        elif isinstance(exc, DroplineError):
            self._retry_later(
                path, "server-error", f"The server refused this: {exc}", "It is tried again later."
            )
        elif isinstance(exc, OSError):
            self._retry_later(
                path,
                "local-error",
                f"Cannot change this file here: {exc.strerror or exc}.",
                "Check the folder's permissions and free space; it is tried again.",
            )
        else:
            log.error("folder %s: %s failed", self.root, path, exc_info=exc)
            self._retry_later(path, "internal", f"Unexpected error: {exc!r}", "It is tried again.")

    # -- transfers in the background --------------------------------------------------

    def _spawn(self, action: planner.Upload | planner.Download, item_time: float | None) -> None:
        done = _Finished(action.path, item_time, action, time.monotonic())
        task = asyncio.create_task(self._transfer(done), name=f"transfer {action.path}")
        self.in_flight[action.path] = task

    async def _transfer(self, done: _Finished) -> None:
        a = done.action
        direction = Direction.UP if isinstance(a, planner.Upload) else Direction.DOWN
        size = a.local.size if isinstance(a, planner.Upload) else a.remote.size
        progress = self._progress(a.path, direction)
        try:
            client = self.hooks.client()
            rpath = remote_path(self.spec.remote, a.path)
            if isinstance(a, planner.Upload):
                done.result = await upload(
                    self.hooks.shared,
                    client,
                    self.id,
                    self.root,
                    a.path,
                    rpath,
                    a.local,
                    a.if_rev,
                    progress,
                )
            else:
                done.result = await download(
                    self.hooks.shared,
                    client,
                    self.id,
                    self.root,
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
        self._done.append(done)
        self.wake()

    def _progress(self, path: str, direction: Direction) -> Callable[[int, int], None]:
        transfer_id = f"{self.id}:{direction}:{path}"
        last = [0.0]
        started = time.monotonic()

        def report(done: int, total: int) -> None:
            now = time.monotonic()
            if done < total and now - last[0] < PROGRESS_EVERY:
                return
            last[0] = now
            rate = done / (now - started) if now > started else 0.0
            self.hooks.publish(
                TransferProgress(transfer_id, str(self.root), path, direction, done, total, rate)
            )

        return report

    def _collect_finished(self) -> None:
        finished, self._done = self._done, []
        for done in finished:
            self.in_flight.pop(done.path, None)
            self._finish(done)

    def _finish(self, done: _Finished) -> None:
        a, journal = done.action, self.journal
        direction = Direction.UP if isinstance(a, planner.Upload) else Direction.DOWN
        size = a.local.size if isinstance(a, planner.Upload) else a.remote.size
        duration = time.monotonic() - done.started
        if done.error is not None:
            self.dirty = True
            self._failed(a.path, done.error)
            if not isinstance(done.error, ChangedDuringUpload | fs.ChangedMeanwhileError):
                self._history(a.path, direction, size, duration, Result.FAILED, str(done.error))
            return
        self._hashes.pop(a.path, None)
        with journal.transaction():
            if isinstance(a, planner.Upload):
                assert isinstance(done.result, tuple)
                base, _remote = done.result
                self._after_upload(a.path, base)
            else:
                assert isinstance(done.result, Base)
                journal.put_base(self.id, a.path, done.result)
            if done.item_time is not None:
                journal.dequeue(self.id, QueueItem(a.path, True, False, None, done.item_time))
            if journal.is_queued(self.id, a.path):
                self.dirty = True  # it changed again while it was being transferred
            self.clear_issues(a.path, TRANSIENT)
            self._history(a.path, direction, size, duration, Result.OK, None)

    def _after_upload(self, path: str, base: Base) -> None:
        spec = self.spec
        if spec.mode is not FolderMode.UPLOAD_ONLY or spec.after_upload is AfterUpload.KEEP:
            self.journal.put_base(self.id, path, base)
            return
        expected = fs.LocalStat(False, base.size, base.mtime_ns, base.inode)
        try:
            if spec.after_upload is AfterUpload.REMOVE:
                fs.remove_file(self.root, path, expected)
            else:
                archive = self.archive_dir()
                assert archive is not None
                if not fs.matches(fs.stat(self.root, path), expected):
                    raise fs.ChangedMeanwhileError(0, "changed", path)
                fs.move_out(fs.abspath(self.root, path), archive / fs.parent_of(path))
        except (OSError, fs.ChangedMeanwhileError):
            # Changed since it went up (or cannot be moved): keep it, it goes up again.
            self.journal.put_base(self.id, path, base)
            return
        self.journal.put_base(self.id, path, None)

    def _history(
        self,
        path: str,
        direction: Direction,
        size: int,
        duration: float,
        result: Result,
        error: str | None,
    ) -> None:
        row = self.journal.add_history(
            str(self.root), path, direction, size, duration, result, error
        )
        self.hooks.publish(HistoryAdded(row))


def _storable(path: str) -> bool:
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _display(path: str) -> str:
    """A name read from disk with undecodable bytes, shown with replacement marks."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _path_of(a: planner.Action) -> str:
    return a.src if isinstance(a, planner.MoveRemote | planner.MoveLocal) else a.path


def _stat_of(local: Local) -> fs.LocalStat:
    return fs.LocalStat(local.is_dir, local.size, local.mtime_ns, local.inode)
