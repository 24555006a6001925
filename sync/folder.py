"""One sync folder's loop: it alone owns the folder's state; others only post to it.

Local events (watcher -> aggregator) and remote changes (the long-poll in
:mod:`dropline.sync.remote`) land in the journal's queue first. Each round the loop takes the
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
import random
import time
from collections.abc import Iterable
from pathlib import Path

from dropline.sdk import AuthenticationError, CircuitOpenError, DroplineError, RateLimitedError
from dropline.sync import fs
from dropline.sync.aggregator import Aggregator, Kind
from dropline.sync.folder_actions import collect_finished, display_path, storable
from dropline.sync.folder_round import run_round
from dropline.sync.folder_state import Finished, Hooks
from dropline.sync.ignore import IgnoreRules
from dropline.sync.records import Local
from dropline.sync.remote import RemoteFeed
from dropline.sync.scanner import walk
from dropline.sync.types import (
    AfterUpload,
    FolderMode,
    FolderSpec,
    FolderStatus,
    IssueCleared,
    IssueRaised,
    State,
    StateChanged,
)
from dropline.sync.watcher import FolderWatcher, Trouble

log = logging.getLogger(__name__)

WATCH_CHECK = 60.0  # seconds between checks that the watcher is alive
DEGRADED_RESCAN = 60.0  # rescan interval while some directories cannot be watched
PENDING_EVERY = 0.25  # seconds between recounts of the queue while transfers run
ROUND_GAP = 0.1  # while transfers run, rounds start at most this often
RETRY_CAP = 300.0  # seconds: the longest wait before a failed path is tried again
# Offline, the folder's probes double their wait up to this. Real requests are spaced by
# the client's circuit breaker (one per cool-down, whoever asks), so a probe costs
# nothing while the breaker is open, and a short cap lets the folder resume within
# seconds of the server answering again.
OFFLINE_PROBE_MAX = 8.0
OFFLINE_JITTER = 1.0  # seconds: probes spread over this, so folders and agents do not align


class FolderLoop:
    """One folder's loop; its round, actions and feed see it as a
    :class:`dropline.sync.folder_state.FolderState`."""

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
        self.held_deletes: set[str] = set()  # planned deletes waiting for the rest to come
        self.deletes_due = 0.0  # monotonic time the held deletes may go
        self.offline = False
        self.missing = False
        self.scanning = True  # until the first full scan has compared disk and journal
        # The journal was damaged and started anew: no plan runs until the server's side
        # has been listed, so every path is compared with both sides, never assumed.
        self.rebuilding = False
        self.state = State.SCANNING
        self.pending = 0
        self.last_error: str | None = None
        self.in_flight: dict[str, asyncio.Task[None]] = {}
        self.finished: list[Finished] = []
        self.holds: dict[str, float] = {}
        # Paths whose writer closed them (inotify told us): complete, no settling needed.
        self.closed: set[str] = set()
        self._wake = asyncio.Event()
        self.dirty = True  # queued work may be waiting for a round
        self._round_at = 0.0
        # SHA-256 of each file being uploaded: the feed's echo of it needs no look.
        self.uploading: dict[str, str] = {}
        self._pending_at = 0.0
        self._stopping = False
        self._rescan_at = 0.0  # 0: at start
        self._rescan_full = True
        self._watch_check_at = 0.0
        self._rescan_interval = hooks.settings.rescan_interval
        self._offline_probe_at = 0.0
        self._offline_backoff = 1.0
        self._task: asyncio.Task[None] | None = None
        self.case_sensitive = True
        # Hashes of files not synced yet, so a retried upload does not read them again.
        self.hashes: dict[str, Local] = {}

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
        self.holds.clear()
        self.queue_changed()

    def clear_hold(self, path: str) -> None:
        self.holds.pop(path, None)

    def archive_dir(self) -> Path | None:
        if self.spec.mode is not FolderMode.UPLOAD_ONLY:
            return None
        if self.spec.after_upload is not AfterUpload.ARCHIVE:
            return None
        return self.spec.archive_dir or self.root.parent / f"{self.root.name} (uploaded)"

    # -- lifecycle --------------------------------------------------------------------

    def rebuild(self, damaged: Path) -> None:
        """Before :meth:`start`: the journal was damaged (set aside as ``damaged``) and this
        folder's base is empty. Every path is then in an unknown state: what only one side
        has is copied to the other, what differs becomes a conflict copy, nothing is
        deleted anywhere."""
        self.rebuilding = True
        self.raise_issue(
            "",
            "journal-rebuilt",
            "Dropline's record of what was synced was damaged, so it was rebuilt by "
            "comparing this folder with the server. Nothing was deleted on either side.",
            "Files that differed between the two sides were kept both, as conflicted "
            f"copies. The damaged record is kept for support as {damaged}.",
        )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"folder {self.root}")
        if self.spec.mode is not FolderMode.UPLOAD_ONLY:
            self.feed.start()
        elif self.rebuilding:
            self.feed.start_listing()

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
            if storable(path):
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
            display_path(path),
            kind,
            message,
            hint,
            retry_at=retry_at,
            related=tuple(display_path(p) for p in related),
        )
        if new:
            self.hooks.publish(IssueRaised(issue))
        self.last_error = message

    def retry_later(
        self, path: str, kind: str, message: str, hint: str, *, cap: float = RETRY_CAP
    ) -> None:
        """An issue on ``path``, tried again after a backoff that grows with each attempt
        (to at most ``cap`` seconds)."""
        attempts = self.journal.attempts(self.id, path, kind)
        delay = min(cap, 2.0 ** min(attempts + 1, 9))
        self.holds[path] = time.monotonic() + delay
        self.raise_issue(path, kind, message, hint, retry_at=time.time() + delay)

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
        elif self.scanning or self.rebuilding:
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
        self.case_sensitive = (
            await asyncio.to_thread(fs.case_sensitive, self.root) if self.root.is_dir() else True
        )
        if self.rebuilding:
            await asyncio.to_thread(fs.clear_partials, self.root)
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
        if self.missing:
            # Until the folder is back, looking for it is the only work there is (its
            # scan and watcher times may be long past: waiting on them would spin).
            return max(now, self._offline_probe_at)
        times = [self._rescan_at, self._watch_check_at]
        deadline = self.agg.next_deadline()
        if deadline is not None:
            times.append(deadline)
        if self.offline:
            times.append(self._offline_probe_at)
        # Offline, paused or signed out, a step stops before held paths and rounds: a
        # hold that has run out meanwhile must not be a reason to wake, or the loop
        # spins without ever yielding (the control socket and the tray went unanswered).
        if not (self.offline or self.user_paused or self.guard or self.hooks.signed_out()):
            if self.holds:
                times.append(min(self.holds.values()))
            if self.dirty and self.in_flight:
                times.append(self._round_at + ROUND_GAP)
        return max(now, min(times))

    async def _step(self) -> None:
        now = time.monotonic()
        collect_finished(self)
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
                if len(self.closed) > 10_000:  # closes of paths never looked at (ignored)
                    self.closed.clear()
                self.closed.update(batch.closed)
                self.enqueue_local(batch.paths | batch.dirs)
                if batch.dirs:
                    await self._rescan_dirs(sorted(batch.dirs))
        if now >= self._rescan_at:
            await self._full_scan()
        if self.hooks.signed_out() or self.user_paused or self.guard or self.rebuilding:
            return
        if self.offline:
            if now < self._offline_probe_at:
                return
            if not await self._probe():
                return
        for path in [p for p, t in self.holds.items() if t <= now]:
            del self.holds[path]
            self.dirty = True
        # A round when something was queued, or when queued work is neither running
        # nor waiting (the safety net for anything that forgot to say so).
        wanted = self.dirty or self.pending > len(self.in_flight) + len(self.holds)
        if wanted and self.in_flight and now - self._round_at < ROUND_GAP:
            return  # transfers are running: gather what arrives meanwhile into one round
        if wanted:
            self.dirty = False
            self._round_at = now
            await run_round(self)

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
        self.feed.back_online()
        self.queue_changed()

    def failed_network(self, exc: DroplineError) -> None:
        if isinstance(exc, AuthenticationError):
            self.hooks.auth_failed(exc)
            return
        if not self.offline:
            log.warning("folder %s: server unreachable (%s); the queue waits", self.root, exc)
        self.offline = True
        now = time.monotonic()
        jitter = random.uniform(0.1, OFFLINE_JITTER)
        if isinstance(exc, CircuitOpenError):
            # Refused without asking the server: the breaker says when the next request
            # may go. Waiting that out (not a doubled backoff, which reached a minute
            # while the breaker refused every probe) resumes the folder right after.
            self._offline_probe_at = now + (exc.retry_after or 0.0) + jitter
            return
        wait = exc.retry_after if isinstance(exc, RateLimitedError) and exc.retry_after else None
        self._offline_probe_at = now + (wait or self._offline_backoff * (0.5 + random.random()))
        self._offline_backoff = min(self._offline_backoff * 2, OFFLINE_PROBE_MAX)

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
