"""Engine benchmark with 100,000 files tracked: restart over the unchanged tree (time
until ready, bytes hashed), then an idle minute (CPU seconds, wake-ups, RSS).

Tracking 100,000 files through the server first would take longer than the rest of
the run (the server publishes a few hundred small files a second), so the journal is
seeded directly with the base of each file, as a finished first sync leaves it, and
the change-feed cursor is set to the server's latest. The restart then does what a
real one does: walk the whole tree against the journal and listen for changes.
Results replace the "engine-idle" block of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from bench.engine_common import (
    client,
    engine,
    idle,
    load_average,
    process_cpu,
    process_status,
    server,
    until,
    write_section,
)
from dropline.sync import fs
from dropline.sync.journal import Journal
from dropline.sync.records import Base
from dropline.sync.types import FolderSpec


def make_tree(root: Path, count: int, per_dir: int = 1000) -> None:
    for i in range(count):
        directory = root / f"d{i // per_dir:04d}"
        if i % per_dir == 0:
            directory.mkdir(parents=True, exist_ok=True)
        (directory / f"f{i:06d}.txt").write_bytes(os.urandom(16))


def seed_journal(home: Path, root: Path, remote: str, cursor: str) -> int:
    """The base a finished first sync of ``root`` leaves behind."""
    journal = Journal(home)
    fid = journal.folder_id(str(root), remote)
    count = 0
    with journal.transaction():
        for directory in sorted(p for p in root.iterdir() if p.is_dir()):
            rel = directory.name
            st = fs.stat(root, rel)
            assert st is not None
            journal.put_base(
                fid, rel, Base(True, 0, st.mtime_ns, st.inode, None, str(uuid.uuid4()), "seed")
            )
            for entry in fs.list_dir(directory):
                assert entry.stat is not None
                s = entry.stat
                journal.put_base(
                    fid,
                    f"{rel}/{entry.name}",
                    Base(False, s.size, s.mtime_ns, s.inode, "0" * 64, str(uuid.uuid4()), "seed"),
                )
                count += 1
        journal.set_cursor(fid, cursor)
    journal.close()
    return count


async def run(args: argparse.Namespace, tmp: Path) -> str:
    root = tmp / "tracked"
    started = time.monotonic()
    make_tree(root, args.files)
    made = time.monotonic() - started
    with server(tmp) as (url, key, _srv):
        async with client(url, key) as sdk:
            cursor = await sdk.latest_cursor()
        tracked = seed_journal(tmp / "home", root, "/tracked", cursor)
        rss_before = process_status("VmRSS")
        started, restart_cpu = time.monotonic(), process_cpu()
        async with engine(tmp / "home", url, key, [FolderSpec(root, "/tracked")]) as eng:
            await until(lambda: idle(eng), 600, "ready after the restart")
            ready = time.monotonic() - started
            # CPU seconds tell more than wall time on a machine shared with other work.
            restart_cpu = process_cpu() - restart_cpu
            hashed = eng.counters().bytes_hashed
            uploaded = eng.counters().files_uploaded
            await asyncio.sleep(2)  # let the start-up settle before the idle window
            cpu0 = process_cpu()
            switches0 = process_status("voluntary_ctxt_switches") + process_status(
                "nonvoluntary_ctxt_switches"
            )
            await asyncio.sleep(args.idle)
            cpu = process_cpu() - cpu0
            switches = (
                process_status("voluntary_ctxt_switches")
                + process_status("nonvoluntary_ctxt_switches")
                - switches0
            )
            rss = process_status("VmRSS")
            hwm = process_status("VmHWM")
    rows = [
        (
            "Restart over the unchanged tree: ready",
            f"{ready:.2f} s",
            f"{tracked:,} files in {args.files // 1000} folders; target < 1 s",
        ),
        (
            "Restart: CPU",
            f"{restart_cpu:.2f} s",
            "engine process from start to ready (walk, journal, watches), server excluded",
        ),
        ("Restart: bytes hashed", f"{hashed:,}", f"target 0; files uploaded: {uploaded}"),
        (f"Idle {args.idle:.0f} s: CPU", f"{cpu:.2f} s", "engine process, server excluded"),
        (
            f"Idle {args.idle:.0f} s: context switches (wake-ups)",
            f"{switches:,}",
            f"{switches / args.idle:.1f} per second, all threads (long-poll 60 s)",
        ),
        (
            "RSS while idle / peak",
            f"{rss / 1024:.0f} MiB / {hwm / 1024:.0f} MiB",
            f"before the engine started: {rss_before / 1024:.0f} MiB; target < 150 MB",
        ),
    ]
    lines = [
        "## Engine: 100,000 files tracked",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `python -m bench.run engine-idle` on 2 cores "
        f"(load average {load_average()} at the end; the machine is shared). The tree "
        f"({args.files:,} files of 16 bytes, made in {made:.1f} s) is tracked by seeding the "
        "journal as a finished first sync leaves it (see the module docstring).",
        "",
        "| What | Figure | Notes |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.engine_idle", description=__doc__)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--idle", type=float, default=60.0, help="seconds of idle to measure")
    parser.add_argument("--no-write", action="store_true", help="print, do not update the doc")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dropline-bench-") as tmp:
        text = asyncio.run(run(args, Path(tmp)))
    print(text)
    if not args.no_write:
        write_section("engine-idle", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
