"""The Engine surface the agent uses: state, events, pause, folders, sign-out, troubles."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from dropline.sdk.client import DroplineClient
from dropline.sync import folder as folder_mod
from dropline.sync import watcher as watcher_mod
from dropline.sync.engine import Subscription
from dropline.sync.types import (
    Direction,
    FolderSpec,
    HistoryAdded,
    HistoryQuery,
    Result,
    State,
    StateChanged,
    TransferProgress,
)
from tests.support.live import LiveServer
from tests.sync.engine_helpers import (
    StartEngine,
    client_for,
    eventually,
    remote_entry,
    remote_tree,
    settled,
    sha,
)

pytestmark = pytest.mark.anyio


async def test_subscribers_see_state_progress_and_history(
    root: Path, start_engine: StartEngine
) -> None:
    async with start_engine() as engine:
        await settled(engine)
        sub = engine.subscribe()
        (root / "report.pdf").write_bytes(b"%PDF" * 1000)
        events: list[object] = []

        async def collect() -> None:
            async for event in sub:
                events.append(event)

        task = asyncio.create_task(collect())
        await eventually(lambda: any(isinstance(e, HistoryAdded) for e in events))
        await settled(engine)
        engine.unsubscribe(sub)
        await asyncio.wait_for(task, 5)  # unsubscribing ends the iteration
        states = [e.state for e in events if isinstance(e, StateChanged) and e.folder is None]
        assert State.SYNCING in states and states[-1] is State.IDLE
        progress = [e for e in events if isinstance(e, TransferProgress)]
        assert progress and progress[-1].bytes_done == progress[-1].bytes_total == 4000
        assert progress[-1].direction is Direction.UP and progress[-1].path == "report.pdf"
        [row] = engine.history(HistoryQuery())
        assert (row.path, row.direction, row.size, row.result) == (
            "report.pdf",
            Direction.UP,
            4000,
            Result.OK,
        )
        assert engine.history(HistoryQuery(direction=Direction.DOWN)) == []


def test_slow_subscriber_loses_progress_never_state() -> None:
    sub = Subscription(maxsize=3)
    sub.put(StateChanged(None, State.SYNCING))
    for i in range(5):
        sub.put(TransferProgress("t1", "/f", "a", Direction.UP, i, 10))
    sub.put(TransferProgress("t2", "/f", "b", Direction.UP, 1, 10))
    sub.put(StateChanged(None, State.IDLE))
    sub.put(StateChanged("/f", State.IDLE))
    kept = list(sub._buf)
    assert [e for e in kept if isinstance(e, StateChanged)] == [
        StateChanged(None, State.SYNCING),
        StateChanged(None, State.IDLE),
        StateChanged("/f", State.IDLE),
    ]
    assert sub.dropped >= 2


async def test_paused_folder_waits_and_resumes(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    async with start_engine() as engine:
        await settled(engine)
        engine.pause()
        (root / "later.txt").write_bytes(b"later")
        await eventually(lambda: engine.status().folders[0].pending == 1)
        assert engine.status().state is State.PAUSED
        await asyncio.sleep(0.5)
        assert await remote_entry(sdk, "/later.txt") is None
        engine.resume()
        await settled(engine)
        assert await remote_tree(sdk) == {"/later.txt": sha(b"later")}


async def test_folders_can_be_added_and_removed_while_running(
    tmp_path: Path, root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    second = tmp_path / "Second"
    second.mkdir()
    (second / "two.txt").write_bytes(b"2")
    async with start_engine() as engine:
        await engine.add_folder(FolderSpec(second, "/second"))
        with pytest.raises(ValueError, match="overlaps"):
            await engine.add_folder(FolderSpec(second / "inner", "/x"))
        await settled(engine)
        assert await remote_entry(sdk, "/second/two.txt") is not None
        assert [f.local for f in engine.folders()] == [root, second]
        await engine.remove_folder(second)
        (second / "after.txt").write_bytes(b"not synced")
        await asyncio.sleep(0.5)
        assert await remote_entry(sdk, "/second/after.txt") is None
        assert (second / "two.txt").exists()  # removing a folder deletes nothing
        assert [f.local for f in engine.folders()] == [root]


async def test_rejected_credential_signs_out_and_new_one_resumes(
    root: Path,
    live_server: LiveServer,
    api_key: str,
    sdk: DroplineClient,
    start_engine: StartEngine,
) -> None:
    bad = "dlk_0000000000000000_notavalidkeynotavalidkeynotavalidkey00"
    async with start_engine(key=bad) as engine:
        (root / "queued.txt").write_bytes(b"waits for sign-in")
        await eventually(lambda: engine.status().state is State.SIGNED_OUT)
        await eventually(lambda: engine.status().folders[0].pending >= 1)
        await engine.set_client(lambda: client_for(live_server.url, api_key))
        await settled(engine)
        assert engine.status().state is State.IDLE
        assert await remote_tree(sdk) == {"/queued.txt": sha(b"waits for sign-in")}


async def test_lost_events_are_recovered_by_a_rescan(
    root: Path,
    sdk: DroplineClient,
    start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with start_engine() as engine:
        await settled(engine)
        # The kernel dropped these events (an overflow): nothing reaches the folder...
        monkeypatch.setattr(watcher_mod.FolderWatcher, "push", lambda *_a: None)
        (root / "lost.txt").write_bytes(b"lost event")
        await asyncio.sleep(0.5)
        assert await remote_entry(sdk, "/lost.txt") is None
        # ...until watchdog says so in its log, which makes the folder rescan.
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        await eventually(lambda: engine.counters().files_uploaded == 1)
        assert await remote_entry(sdk, "/lost.txt") is not None


async def test_dead_observer_is_restarted_and_missed_changes_found(
    root: Path,
    sdk: DroplineClient,
    start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(folder_mod, "WATCH_CHECK", 0.5)
    async with start_engine() as engine:
        await settled(engine)
        [loop] = engine._loops.values()
        assert loop.watcher is not None and loop.watcher._observer is not None
        old = loop.watcher
        loop.watcher._observer.stop()  # the event source dies
        (root / "unseen.txt").write_bytes(b"written while blind")
        await eventually(lambda: engine.counters().files_uploaded == 1)
        assert loop.watcher is not None and loop.watcher is not old and loop.watcher.alive()
        (root / "seen.txt").write_bytes(b"watched again")
        await eventually(lambda: engine.counters().files_uploaded == 2)
        assert set(await remote_tree(sdk)) == {"/unseen.txt", "/seen.txt"}


async def test_running_out_of_inotify_watches_is_an_issue_naming_the_limit(
    root: Path, start_engine: StartEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Exhausting the real limit would break every other watcher on this machine:
    # the count of watches the kernel reports is what is replaced here.
    monkeypatch.setattr(watcher_mod, "process_watch_count", lambda: 0)
    (root / "sub").mkdir()
    async with start_engine() as engine:
        await eventually(lambda: bool(engine.issues()))
        [issue] = engine.issues()
        assert issue.kind == "watch-limit"
        assert "fs.inotify.max_user_watches" in issue.message + issue.hint
