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


def test_file_moved_in_from_outside_is_complete_not_held_for_a_close(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "report.pdf").write_bytes(b"pdf")
    (outside / "new.pdf").write_bytes(b"replacement")
    (root / "old.pdf").write_bytes(b"old")

    async def body(rec: Recorder) -> None:
        os.rename(outside / "report.pdf", root / "report.pdf")  # what `mv` and drag and drop do
        os.rename(outside / "new.pdf", root / "old.pdf")  # moved in over a file
        (root / "last.txt").write_text("z")
        await wait_for(lambda: ("last.txt", Kind.CLOSED) in rec.events)

    rec = run(root, body)
    # A rename sends no close: held as WRITING, the file would wait for OPEN_WAIT.
    assert [k for p, k in rec.events if p == "report.pdf"] == [Kind.DONE]
    assert [k for p, k in rec.events if p == "old.pdf"] == [Kind.DONE]
    assert "" not in rec.paths()  # the source outside the folder is not reported


def test_folder_moved_in_reports_itself_and_its_files_complete(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    (outside / "project" / "src" / "lib").mkdir(parents=True)
    files = {"project/README", "project/src/main.py", "project/src/lib/util.py"}
    for name in files:
        (outside / name).write_text(name)

    async def body(rec: Recorder) -> None:
        os.rename(outside / "project", root / "project")
        await wait_for(lambda: files <= rec.paths())

    rec = run(root, body)
    assert {"project", "project/src", "project/src/lib"} <= rec.paths()
    assert not [p for p, k in rec.events if k is not Kind.DONE]


def test_moves_out_of_the_folder_and_within_it_arrive(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "dir" / "sub").mkdir(parents=True)
    (root / "dir" / "sub" / "f.txt").write_text("f")
    (root / "leaving.txt").write_text("l")
    (root / "a.txt").write_text("a")
    outside.mkdir()

    async def body(rec: Recorder) -> None:
        os.rename(root / "a.txt", root / "b.txt")
        os.rename(root / "leaving.txt", outside / "leaving.txt")
        os.rename(root / "dir", outside / "dir")
        await wait_for(lambda: {"a.txt", "b.txt", "leaving.txt", "dir"} <= rec.paths())

    rec = run(root, body)
    assert all(k is Kind.DONE for _, k in rec.events)
    assert "" not in rec.paths()
