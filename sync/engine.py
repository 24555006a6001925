"""The sync engine: the one surface the agent and the benchmarks use.

::

    engine = Engine(home, client_factory, folders, settings)
    await engine.start()                  # resumes whatever the journal says was unfinished
    engine.status() -> EngineStatus       # overall and per-folder state, pending, issues
    engine.pause(local=None); engine.resume(local=None); engine.sync_now(local=None)
    await engine.add_folder(spec); await engine.remove_folder(local); engine.folders()
    sub = engine.subscribe()              # async iterator of dropline.sync.types events
    engine.unsubscribe(sub)
    engine.history(HistoryQuery(...)); engine.issues()
    engine.retry_issue(id); engine.dismiss_issue(id)
    engine.set_bandwidth(up_bps, down_bps)
    await engine.set_client(client_factory)   # new credentials after State.SIGNED_OUT
    engine.counters() -> EngineCounters
    await engine.stop()                   # the journal stays consistent; start() resumes

A journal that fails its integrity check at start is set aside (named with the date,
kept for support) and every folder is rebuilt from the server's listing and the disk:
nothing is deleted on either side, files only one side has are copied to the other, and
files that differ become conflict copies. Each folder then has a ``journal-rebuilt`` issue.

``client_factory`` is a ``DroplineClient`` (the caller keeps owning it) or a
callable returning one (the engine closes what it made). The journal lives in
``home``. An authentication failure puts the engine in ``State.SIGNED_OUT``; the
queue waits in the journal until :meth:`Engine.set_client`.

Issues: retrying a ``mass-delete`` issue confirms the deletes; dismissing it brings
the deleted files back instead. Retrying any other issue looks at the file again.

Each subscriber has a bounded buffer: when it is full, progress events are dropped
(only the latest per transfer is kept), so a slow subscriber never blocks the engine.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from dropline.sdk import DroplineClient, DroplineError
from dropline.sync.conflicts import host_name
from dropline.sync.folder import FolderLoop
from dropline.sync.journal import Journal
from dropline.sync.transfer import Counters, Shared, Slots, TokenBucket
from dropline.sync.types import (
    EngineCounters,
    EngineSettings,
    EngineStatus,
    Event,
    FolderSpec,
    HistoryQuery,
    HistoryRow,
    Issue,
    IssueCleared,
    State,
    StateChanged,
    TransferProgress,
)

__all__ = ["Engine", "Subscription"]

log = logging.getLogger(__name__)

ClientSource = DroplineClient | Callable[[], DroplineClient]

SUBSCRIBER_BUFFER = 1000
SMALL_PER_SLOT = 3  # small transfers wait on round trips: three of them per transfer slot
_PRESSING = [
    State.SIGNED_OUT,
    State.ERROR,
    State.OFFLINE,
    State.SYNCING,
    State.SCANNING,
    State.PAUSED,
    State.IDLE,
]


class Subscription:
    """An async iterator of events with a bounded buffer that never blocks the engine."""

    def __init__(self, maxsize: int = SUBSCRIBER_BUFFER) -> None:
        self.maxsize = maxsize
        self.dropped = 0
        self._buf: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    def put(self, event: Event) -> None:
        if self._closed:
            return
        if isinstance(event, TransferProgress):
            # Only the latest progress of a transfer matters.
            for i, old in enumerate(self._buf):
                if isinstance(old, TransferProgress) and old.transfer_id == event.transfer_id:
                    self._buf[i] = event
                    return
        if len(self._buf) >= self.maxsize:
            victim = next((e for e in self._buf if isinstance(e, TransferProgress)), None)
            if isinstance(event, TransferProgress) and victim is None:
                self.dropped += 1
                return
            if victim is not None:
                self._buf.remove(victim)
            else:
                self._buf.popleft()
            self.dropped += 1
        self._buf.append(event)
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while not self._buf:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._buf.popleft()


class Engine:
    def __init__(
        self,
        home: Path,
        client_factory: ClientSource,
        folders: Sequence[FolderSpec] = (),
        settings: EngineSettings | None = None,
    ) -> None:
        self.home = home
        self.settings = settings = settings or EngineSettings()
        self.host = host_name(settings.hostname)
        self._source = client_factory
        self._client: DroplineClient | None = None
        self._owns_client = False
        self._specs = [_resolved(s) for s in folders]
        self._loops: dict[str, FolderLoop] = {}
        self._subs: list[Subscription] = []
        self._signed_out = False
        self._state = State.IDLE
        self._progress: dict[str, TransferProgress] = {}
        self._counters = Counters()
        self._journal: Journal | None = None
        self.shared: Shared  # set by start()

    # -- Hooks for the folders ---------------------------------------------------------

    def client(self) -> DroplineClient:
        if self._client is None:
            self._client, self._owns_client = _make(self._source)
        return self._client

    def publish(self, event: Event) -> None:
        if isinstance(event, TransferProgress):
            if event.bytes_done >= event.bytes_total:
                self._progress.pop(event.transfer_id, None)
            else:
                self._progress[event.transfer_id] = event
        for sub in self._subs:
            sub.put(event)
        if isinstance(event, StateChanged) and event.folder is not None:
            self._update_overall()

    def auth_failed(self, exc: DroplineError) -> None:
        if not self._signed_out:
            log.warning("signed out: %s; the queue waits for new credentials", exc.title)
            self._signed_out = True
            self._update_overall()

    def signed_out(self) -> bool:
        return self._signed_out

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        journal = Journal(self.home)
        self._journal = journal
        s = self.settings
        self.shared = Shared(
            journal,
            Slots(s.concurrency),
            Slots(s.concurrency * SMALL_PER_SLOT),
            TokenBucket(s.upload_limit_bps),
            TokenBucket(s.download_limit_bps),
            self._counters,
            s.chunk_size,
        )
        for spec in self._specs:
            self._start_folder(spec, rebuild_from=journal.damaged)
        log.info("engine started with %d folder(s)", len(self._loops))

    async def stop(self) -> None:
        loops, self._loops = list(self._loops.values()), {}
        await asyncio.gather(*(loop.stop() for loop in loops), return_exceptions=True)
        for sub in self._subs:
            sub.close()
        self._subs.clear()
        if self._client is not None and self._owns_client:
            await self._client.aclose()
        self._client = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None

    def _start_folder(self, spec: FolderSpec, rebuild_from: Path | None = None) -> FolderLoop:
        journal = self.shared.journal
        fid = journal.folder_id(str(spec.local), spec.remote)
        loop = FolderLoop(spec, fid, self)
        self._loops[str(spec.local)] = loop
        if rebuild_from is not None:
            loop.rebuild(rebuild_from)
        loop.start()
        return loop

    async def add_folder(self, spec: FolderSpec) -> None:
        spec = _resolved(spec)
        key = str(spec.local)
        if key in self._loops:
            raise ValueError(f"{spec.local} is already a sync folder")
        for other in self._loops:
            if key.startswith(other + "/") or other.startswith(key + "/"):
                raise ValueError(f"{spec.local} overlaps the sync folder {other}")
        self._specs.append(spec)
        if self._journal is not None:
            self._start_folder(spec)

    async def remove_folder(self, local: Path) -> None:
        """Stop syncing ``local``; its files stay where they are, on both sides."""
        key = str(_abs(local))
        self._specs = [s for s in self._specs if str(s.local) != key]
        loop = self._loops.pop(key, None)
        if loop is None:
            raise KeyError(f"{local} is not a sync folder")
        await loop.stop()
        self.shared.journal.forget_folder(loop.id)
        self._update_overall()

    def folders(self) -> list[FolderSpec]:
        return list(self._specs)

    async def set_client(self, client_factory: ClientSource) -> None:
        """New credentials: replace the client and go on where the queue stands."""
        old, owned = self._client, self._owns_client
        self._source = client_factory
        self._client = None
        if old is not None and owned:
            await old.aclose()
        self._signed_out = False
        for loop in self._loops.values():
            loop.feed.resume.set()
            loop.queue_changed()
        self._update_overall()

    # -- control -----------------------------------------------------------------------

    def _select(self, local: Path | None) -> list[FolderLoop]:
        if local is None:
            return list(self._loops.values())
        loop = self._loops.get(str(_abs(local)))
        if loop is None:
            raise KeyError(f"{local} is not a sync folder")
        return [loop]

    def pause(self, local: Path | None = None) -> None:
        for loop in self._select(local):
            loop.user_paused = True
            loop.wake()

    def resume(self, local: Path | None = None) -> None:
        for loop in self._select(local):
            loop.user_paused = False
            loop.feed.resume.set()
            loop.queue_changed()

    def sync_now(self, local: Path | None = None) -> None:
        for loop in self._select(local):
            loop.sync_now()

    def set_bandwidth(self, up_bps: int | None, down_bps: int | None) -> None:
        self.shared.up.set_rate(up_bps)
        self.shared.down.set_rate(down_bps)

    # -- what the outside sees ---------------------------------------------------------

    def status(self) -> EngineStatus:
        folders = tuple(loop.status() for loop in self._loops.values())
        up = sum(1 for p in self._progress.values() if p.direction == "up")
        return EngineStatus(
            state=self._overall(),
            folders=folders,
            issues=len(self.issues()),
            uploading=up,
            downloading=len(self._progress) - up,
            bytes_left=sum(p.bytes_total - p.bytes_done for p in self._progress.values()),
        )

    def _overall(self) -> State:
        if self._signed_out:
            return State.SIGNED_OUT
        states = {loop.state for loop in self._loops.values()}
        return next((s for s in _PRESSING if s in states), State.IDLE)

    def _update_overall(self) -> None:
        state = self._overall()
        if state is not self._state:
            self._state = state
            for sub in self._subs:
                sub.put(StateChanged(None, state))

    def subscribe(self, maxsize: int = SUBSCRIBER_BUFFER) -> Subscription:
        sub = Subscription(maxsize)
        self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        sub.close()

    def history(self, query: HistoryQuery) -> list[HistoryRow]:
        return self.shared.journal.history(query)

    def issues(self) -> list[Issue]:
        journal = self.shared.journal
        live = {loop.id for loop in self._loops.values()}
        return [i for fid in live for i in journal.issues(fid)]

    def _issue_folder(self, issue_id: int) -> tuple[Issue, FolderLoop]:
        journal = self.shared.journal
        issue = journal.issue(issue_id)
        fid = journal.issue_folder(issue_id)
        loop = next((x for x in self._loops.values() if x.id == fid), None)
        if issue is None or loop is None:
            raise KeyError(f"no issue {issue_id}")
        return issue, loop

    def retry_issue(self, issue_id: int) -> None:
        issue, loop = self._issue_folder(issue_id)
        self.shared.journal.delete_issue(issue_id)
        self.publish(IssueCleared(issue_id))
        if issue.kind == "mass-delete":
            loop.guard = None
            loop.allow_mass_delete = True
        elif issue.path:
            loop.clear_hold(issue.path)
            self.shared.journal.enqueue_local(loop.id, [issue.path])
        loop.queue_changed()

    def dismiss_issue(self, issue_id: int) -> None:
        issue, loop = self._issue_folder(issue_id)
        self.shared.journal.delete_issue(issue_id)
        self.publish(IssueCleared(issue_id))
        if issue.kind == "mass-delete":
            loop.guard = None
            loop.restore_deletes = True
            loop.queue_changed()

    def counters(self) -> EngineCounters:
        c = self._counters
        return EngineCounters(
            c.bytes_hashed,
            c.bytes_uploaded,
            c.bytes_downloaded,
            c.files_uploaded,
            c.files_downloaded,
            c.upload_batches,
        )


def _abs(path: Path) -> Path:
    return Path(path).expanduser().absolute()


def _resolved(spec: FolderSpec) -> FolderSpec:
    return replace(spec, local=_abs(spec.local))


def _make(source: ClientSource) -> tuple[DroplineClient, bool]:
    if isinstance(source, DroplineClient):
        return source, False
    return source(), True
