"""Latency benchmark: what a person waits for, from a file appearing in a synced folder
to the server holding it verified, for each way a file arrives there.

Written in place; moved in from elsewhere on the same disk (what `mv` and a file
manager's drag and drop do); written elsewhere and moved in at once; a folder of
files moved in; and an editor's save by rename (write a temporary file, rename it over
the document). Each is the median of several runs against the real server (a child
process on loopback). Results replace the "engine-latency" block of
``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from bench.engine_common import engine, idle, load_average, server, until, write_section
from dropline.sync.engine import Engine
from dropline.sync.types import Direction, FolderSpec, HistoryAdded, Result

WAIT = 120.0  # seconds any one arrival may take before the benchmark gives up
OLD = 3600.0  # a file that sat elsewhere: its mtime this long ago, as files people drag are


@dataclass
class Commits:
    """When each path's uploads were committed, in order, from the engine's history."""

    times: dict[str, list[float]] = field(default_factory=dict)

    def count(self, path: str) -> int:
        return len(self.times.get(path, ()))

    def last(self, path: str) -> float:
        return self.times[path][-1]


@dataclass(frozen=True, slots=True)
class Case:
    what: str
    note: str
    files: int  # files that arrive together in one run
    seconds: list[float]
    uploads: list[int]  # uploads of those files per run: more than ``files`` is waste


def make_file(path: Path, size: int, *, old: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(os.urandom(size))  # unique contents: nothing is deduplicated
    if old:
        then = time.time() - OLD
        os.utime(path, (then, then))


async def quiet(eng: Engine) -> None:
    await until(lambda: idle(eng), WAIT, "a quiet engine")
    await asyncio.sleep(0.3)  # no run starts inside the previous one's debounce


async def arrival(
    eng: Engine, commits: Commits, paths: list[str], act: Callable[[], None]
) -> tuple[float, int]:
    """Seconds from ``act`` (the moment the files appear) until every one of ``paths``
    is committed once more, and how many uploads of them there were by then."""
    before = {p: commits.count(p) for p in paths}
    started = time.monotonic()
    act()
    await until(
        lambda: all(commits.count(p) > before[p] for p in paths), WAIT, f"{paths[0]} committed"
    )
    seconds = max(commits.last(p) for p in paths) - started
    await quiet(eng)
    uploads = sum(commits.count(p) - before[p] for p in paths)
    return seconds, uploads


async def measure(tmp: Path, url: str, key: str, args: argparse.Namespace) -> list[Case]:
    root = tmp / "Dropline"
    outside = tmp / "Desktop"  # the same file system as the synced folder
    root.mkdir()
    outside.mkdir()
    size, runs = args.size, args.runs
    commits = Commits()
    results: dict[str, list[tuple[float, int]]] = {}
    async with engine(tmp / "home", url, key, [FolderSpec(root, "/latency")]) as eng:
        sub = eng.subscribe()

        async def record() -> None:
            async for event in sub:
                row = event.row if isinstance(event, HistoryAdded) else None
                if row and row.direction is Direction.UP and row.result is Result.OK:
                    commits.times.setdefault(row.path, []).append(time.monotonic())

        recorder = asyncio.create_task(record())
        for i in range(runs):
            (root / f"doc-{i}.docx").write_bytes(os.urandom(size))  # saved over below
        await quiet(eng)

        for i in range(runs):
            name = f"written-{i}.bin"
            result = await arrival(eng, commits, [name], partial(make_file, root / name, size))
            results.setdefault("written", []).append(result)

            name = f"moved-{i}.bin"
            make_file(outside / name, size, old=True)
            move = partial(os.rename, outside / name, root / name)
            result = await arrival(eng, commits, [name], move)
            results.setdefault("moved", []).append(result)

            name = f"fresh-{i}.bin"

            def write_then_move(n: str = name) -> None:
                make_file(outside / n, size)
                os.rename(outside / n, root / n)

            result = await arrival(eng, commits, [name], write_then_move)
            results.setdefault("fresh", []).append(result)

            top = f"project-{i}"
            levels = ("", "a/", "a/b/")
            names = [f"{top}/{levels[j % 3]}page-{j:03d}.bin" for j in range(args.folder_files)]
            for n in names:
                make_file(outside / n, args.folder_size, old=True)
            move = partial(os.rename, outside / top, root / top)
            result = await arrival(eng, commits, names, move)
            results.setdefault("folder", []).append(result)

            name = f"doc-{i}.docx"

            def save_by_rename(n: str = name, run: int = i) -> None:
                temp = root / f"~WRL{run:04d}.tmp"  # an editor's temporary name: ignored
                temp.write_bytes(os.urandom(size))
                os.rename(temp, root / n)

            result = await arrival(eng, commits, [name], save_by_rename)
            results.setdefault("save", []).append(result)

        eng.unsubscribe(sub)
        await recorder

    kib = size // 1024
    described = {
        "written": (
            f"File of {kib:,} KiB written in place",
            "from its creation; its close says it is complete",
        ),
        "moved": (
            f"File of {kib:,} KiB moved in (`os.rename` from outside the folder)",
            "mtime an hour old, as a dragged file's usually is",
        ),
        "fresh": (
            f"File of {kib:,} KiB written elsewhere and moved in at once",
            "mtime fresh: the settling window (`stable_seconds`) applies",
        ),
        "folder": (
            f"Folder of {args.folder_files} files of {args.folder_size // 1024:,} KiB "
            "moved in (three levels)",
            "until the last file is committed",
        ),
        "save": (
            f"Save by rename over a synced {kib:,} KiB file",
            "temporary file renamed over the document",
        ),
    }
    return [
        Case(
            what,
            note,
            args.folder_files if k == "folder" else 1,
            [s for s, _ in results[k]],
            [u for _, u in results[k]],
        )
        for k, (what, note) in described.items()
    ]


def table(cases: list[Case], runs: int) -> str:
    rows = []
    for case in cases:
        spread = f"{min(case.seconds):.2f}-{max(case.seconds):.2f} s"
        most = max(case.uploads) / case.files
        uploads = f"{most:g} per file" if case.files > 1 else f"{most:g}"
        rows.append(
            f"| {case.what} | {statistics.median(case.seconds):.2f} s | {spread} | "
            f"{uploads} | {case.note} |"
        )
    lines = [
        "## Engine: latency by way of arrival",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `python -m bench.run engine-latency` on 2 "
        f"cores (load average {load_average()} at the end; the machine is shared), server as "
        "a child process on loopback, engine in the benchmark process, default "
        f"`EngineSettings`. From the moment the file appears in the folder to the engine "
        f"recording the server's commit of it (hash verified); median of {runs} runs.",
        "",
        "| What | Median | Range | Uploads | Notes |",
        "|---|---|---|---|---|",
        *rows,
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.engine_latency", description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--size", type=int, default=256 * 1024, help="bytes of each lone file")
    parser.add_argument("--folder-files", type=int, default=60)
    parser.add_argument("--folder-size", type=int, default=16 * 1024)
    parser.add_argument("--no-write", action="store_true", help="print, do not update the doc")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dropline-bench-") as tmp:

        async def go() -> list[Case]:
            with server(Path(tmp)) as (url, key, _srv):
                return await measure(Path(tmp), url, key, args)

        cases = asyncio.run(go())
    text = table(cases, args.runs)
    print(text)
    if not args.no_write:
        write_section("engine-latency", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
