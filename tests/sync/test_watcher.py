"""The watcher on a real folder with real watchdog (inotify)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

from dropline.sync.aggregator import Kind
from dropline.sync.watcher import FolderWatcher, Trouble, process_watch_count


class Recorder:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.events: list[tuple[str, Kind]] = []
        self.troubles: list[Trouble] = []
        self.watcher: FolderWatcher | None = None

    def paths(self) -> set[str]:
        return {p for p, _ in self.events}


def run(root: Path, body: Callable[[Recorder], Awaitable[None]]) -> Recorder:
    rec = Recorder(root)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        rec.watcher = FolderWatcher(root, loop, rec.events.extend, rec.troubles.append)
        rec.watcher.start()
        try:
            await body(rec)
        finally:
            rec.watcher.stop()

    asyncio.run(main())
    return rec


async def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_creates_moves_and_deletes_arrive_as_relative_paths(tmp_path: Path) -> None:
    async def body(rec: Recorder) -> None:
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "a.txt").write_text("a")
        os.rename(tmp_path / "sub" / "a.txt", tmp_path / "b.txt")
        (tmp_path / "b.txt").unlink()
        (tmp_path / ".dropline" / "partial").mkdir(parents=True)
        (tmp_path / ".dropline" / "partial" / "x.part").write_text("engine's own")
        (tmp_path / "last.txt").write_text("z")
        await wait_for(lambda: "last.txt" in rec.paths())

    rec = run(tmp_path, body)
    # "sub/a.txt" is reported only when watchdog had added the new directory's watch
    # before the file appeared, which a busy machine does not promise; the directory
    # itself is always reported, and the engine scans a new directory whole.
    assert {"sub", "b.txt", "last.txt"} <= rec.paths()
    assert not any(p.startswith(".dropline") for p in rec.paths())
    kinds = [k for p, k in rec.events if p == "last.txt"]
    assert kinds == [Kind.WRITING, Kind.CLOSED]  # created (held as open), then closed
    assert rec.troubles == []


def test_file_in_a_folder_that_just_appeared_is_not_held_for_a_close(tmp_path: Path) -> None:
    async def body(rec: Recorder) -> None:
        (tmp_path / "new").mkdir()
        (tmp_path / "new" / "a.txt").write_text("a")  # stays: seen by event or by the new
        await wait_for(lambda: "new/a.txt" in rec.paths())  # folder's first listing

    rec = run(tmp_path, body)
    # Whether the watch or the listing saw it first, its close may never be reported.
    assert next(k for p, k in rec.events if p == "new/a.txt") is not Kind.WRITING


def test_burst_of_ten_thousand_creates_is_never_lost_silently(tmp_path: Path) -> None:
    names = {f"drop/f{i:05d}.bin" for i in range(10_000)}

    async def body(rec: Recorder) -> None:
        (tmp_path / "drop").mkdir()
        await asyncio.sleep(0.1)  # the new directory's watch is in place
        for name in sorted(names):
            (tmp_path / name).write_bytes(name.encode())
        await wait_for(lambda: names <= rec.paths() or bool(rec.troubles), timeout=60)

    rec = run(tmp_path, body)
    # Every create arrives, or the loss is reported so the folder rescans.
    assert names <= rec.paths() or Trouble.OVERFLOW in rec.troubles


def test_overflow_logged_by_watchdog_becomes_trouble(tmp_path: Path) -> None:
    async def body(rec: Recorder) -> None:
        logging.getLogger("watchdog.observers.inotify_c").warning(
            "Inotify queue overflowed; filesystem events were lost"
        )
        await wait_for(lambda: bool(rec.troubles))

    assert run(tmp_path, body).troubles == [Trouble.OVERFLOW]


def test_dead_observer_is_noticed(tmp_path: Path) -> None:
    async def body(rec: Recorder) -> None:
        assert rec.watcher is not None
        assert rec.watcher.check() is None
        observer = rec.watcher._observer
        assert observer is not None
        observer.stop()
        observer.join(5)
        assert rec.watcher.check() is Trouble.DEAD

    run(tmp_path, body)


def test_missing_watches_are_noticed(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"d{i}").mkdir()

    async def body(rec: Recorder) -> None:
        assert rec.watcher is not None
        held = process_watch_count()
        assert held is not None and held >= 4  # the root and three folders
        assert rec.watcher.check(directories=3) is None
        # More folders than watches held: some were refused (fs.inotify.max_user_watches).
        assert rec.watcher.check(directories=held + 10) is Trouble.WATCH_LIMIT

    run(tmp_path, body)
