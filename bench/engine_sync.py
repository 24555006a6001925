"""Engine benchmark: the sync engine against the real server (a child process on
loopback), beside rclone copying the same data to a local ``rclone serve webdav``.

Measures the initial upload of 10,000 files of 4 KiB, one 1 GiB file up and down,
the latency from a dropped file to its commit on the server (200 files), and the
bytes sent again after the engine is killed with SIGKILL in the middle of a 1 GiB
upload. Results replace the "engine-sync" block of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.engine_common import (
    GIB,
    MIB,
    ROOT,
    RcloneWebdav,
    client,
    engine,
    idle,
    load_average,
    process_cpu,
    server,
    until,
    write_section,
)
from dropline.sync.types import FolderSpec, HistoryAdded

Row = tuple[str, str, str, str]  # what, engine, peer, note


def make_files(folder: Path, count: int, size: int) -> None:
    """Unique contents per file (identical files flatter some tools)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"f{i:06d}.bin").write_bytes(os.urandom(size))


def make_big(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for _ in range(size // (64 * MIB)):
            block = os.urandom(64 * MIB)
            digest.update(block)
            fh.write(block)
    return digest.hexdigest()


async def initial_upload(tmp: Path, url: str, key: str, count: int) -> tuple[float, float]:
    """Seconds from start to everything committed, and the engine's CPU seconds."""
    root = tmp / "initial"
    make_files(root / "docs", count, 4096)
    cpu = process_cpu()
    started = time.monotonic()
    async with engine(tmp / "home-initial", url, key, [FolderSpec(root, "/initial")]) as eng:
        await until(lambda: eng.counters().files_uploaded >= count, 1800, "the initial upload")
        await until(lambda: idle(eng), 120, "idle after the initial upload")
        elapsed = time.monotonic() - started
    return elapsed, process_cpu() - cpu


async def big_up_down(tmp: Path, url: str, key: str, size: int) -> tuple[float, float, bool]:
    """Seconds to upload one big file (drop to committed, hashing included) and to
    download it into another folder (listing to verified, in place)."""
    up = tmp / "big-up"
    up.mkdir()
    expected = make_big(up / "big.bin", size)
    started = time.monotonic()
    async with engine(tmp / "home-big-up", url, key, [FolderSpec(up, "/big")]) as eng:
        await until(lambda: eng.counters().files_uploaded == 1, 1800, "the big upload")
        up_seconds = time.monotonic() - started
    down = tmp / "big-down"
    down.mkdir()
    started = time.monotonic()
    async with engine(tmp / "home-big-down", url, key, [FolderSpec(down, "/big")]) as eng:
        await until(lambda: eng.counters().files_downloaded == 1, 1800, "the big download")
        down_seconds = time.monotonic() - started
    got = hashlib.sha256()
    with (down / "big.bin").open("rb") as fh:
        while block := fh.read(8 * MIB):
            got.update(block)
    async with client(url, key) as sdk:
        entry = await sdk.metadata("/big/big.bin")
    verified = got.hexdigest() == expected == entry.sha256
    return up_seconds, down_seconds, verified


async def latency(tmp: Path, url: str, key: str, count: int) -> list[float]:
    """Seconds from a file's close to its commit, for files dropped one by one."""
    root = tmp / "latency"
    root.mkdir()
    dropped: dict[str, float] = {}
    committed: dict[str, float] = {}
    async with engine(tmp / "home-latency", url, key, [FolderSpec(root, "/latency")]) as eng:
        await until(lambda: idle(eng), 60, "a quiet engine")
        sub = eng.subscribe()

        async def watch() -> None:
            async for event in sub:
                if isinstance(event, HistoryAdded):
                    committed.setdefault(event.row.path, time.monotonic())

        task = asyncio.create_task(watch())
        for i in range(count):
            name = f"drop-{i:04d}.txt"
            (root / name).write_bytes(os.urandom(2048))
            dropped[name] = time.monotonic()
            await asyncio.sleep(0.1)  # people drop files one by one, not in a burst
        await until(lambda: len(committed) >= count, 300, "every dropped file committed")
        eng.unsubscribe(sub)
        await task
    return sorted(committed[n] - dropped[n] for n in dropped)


def _runner_state(path: Path) -> dict[str, int]:
    try:
        counters = json.loads(path.read_text())["counters"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return {}
    return {k: int(v) for k, v in counters.items()}


def _start_runner(
    tmp: Path, url: str, key: str, root: Path, state: Path
) -> subprocess.Popen[bytes]:
    config = {
        "home": str(tmp / "home-kill"),
        "url": url,
        "folders": [{"local": str(root), "remote": "/kill"}],
        "settings": {},
        "state_file": str(state),
    }
    path = tmp / "runner.json"
    path.write_text(json.dumps(config))
    state.unlink(missing_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.support.engine_runner", str(path)],
        cwd=ROOT,
        env={**os.environ, "DROPLINE_TEST_API_KEY": key},
    )


async def killed_upload(tmp: Path, url: str, key: str, size: int) -> dict[str, int]:
    """SIGKILL in the middle of a big upload, then a restart: what was sent twice."""
    root = tmp / "kill"
    root.mkdir()
    make_big(root / "big.bin", size)
    state = tmp / "runner-state.json"
    proc = _start_runner(tmp, url, key, root, state)
    await until(lambda: _runner_state(state).get("bytes_uploaded", 0) >= size // 2, 600, "half")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    first = _runner_state(state).get("bytes_uploaded", 0)
    journal = sqlite3.connect(tmp / "home-kill" / "journal.sqlite3")
    row = journal.execute("SELECT url FROM transfers").fetchone()
    journal.close()
    async with client(url, key) as sdk:
        offset = await sdk.upload_offset(row[0]) if row else 0
    proc = _start_runner(tmp, url, key, root, state)
    try:
        await until(lambda: _runner_state(state).get("files_uploaded", 0) == 1, 600, "resume")
        second = _runner_state(state).get("bytes_uploaded", 0)
        hashed = _runner_state(state).get("bytes_hashed", 0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    return {
        "first_run_sent": first,
        "server_offset_after_kill": offset,
        "second_run_sent": second,
        # What the restart sent beyond what the server still lacked.
        "sent_again": max(0, second - (size - offset)),
        "second_run_hashed": hashed,
    }


async def run(args: argparse.Namespace, tmp: Path) -> str:
    rows: list[Row] = []
    extra: list[str] = []
    with server(tmp) as (url, key, srv):
        # 1. Initial upload of many small files.
        server_cpu = srv.cpu()
        seconds, cpu = await initial_upload(tmp, url, key, args.files)
        rate = args.files / seconds
        webdav = RcloneWebdav(tmp / "webdav")
        try:
            peer_src = tmp / "rclone-src"
            make_files(peer_src, args.rclone_files, 4096)
            peer_seconds = webdav.copy(str(peer_src), "peer:small")
            peer_rate = args.rclone_files / peer_seconds
            rows.append(
                (
                    f"Initial upload, {args.files:,} files of 4 KiB "
                    f"(rclone: {args.rclone_files:,})",
                    f"{rate:,.0f} files/s ({seconds:.1f} s)",
                    f"{peer_rate:,.0f} files/s ({peer_seconds:.1f} s)",
                    f"{rate / peer_rate:.1f}x rclone; engine CPU {cpu:.1f} s, server CPU "
                    f"{srv.cpu() - server_cpu:.1f} s",
                )
            )

            # 2. One big file up and down.
            up, down, verified = await big_up_down(tmp, url, key, args.big)
            big_src = tmp / "big-up" / "big.bin"
            peer_up = webdav.copy(str(big_src), "peer:big")
            peer_down = webdav.copy("peer:big/big.bin", str(tmp / "rclone-down"))
            mib = args.big / MIB
            hash_seconds = _hashlib_seconds(big_src)
            for what, secs, peer in (("up", up, peer_up), ("down", down, peer_down)):
                rows.append(
                    (
                        f"One {mib:,.0f} MiB file {what}",
                        f"{mib / secs:,.0f} MiB/s ({secs:.1f} s)",
                        f"{mib / peer:,.0f} MiB/s ({peer:.1f} s)",
                        f"{peer / secs:.2f}x rclone; "
                        f"{mib / secs / (mib / hash_seconds):.0%} of one core's SHA-256 "
                        f"({mib / hash_seconds:,.0f} MiB/s)"
                        + ("; hashes verified at both ends" if verified else "; HASH MISMATCH"),
                    )
                )
        finally:
            webdav.stop()

        # 3. Drop-to-committed latency.
        lat = await latency(tmp, url, key, args.latency_files)
        p50 = statistics.median(lat)
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        rows.append(
            (
                f"Dropped file to committed, {len(lat)} files one by one",
                f"p50 {p50:.2f} s, p99 {p99:.2f} s, max {lat[-1]:.2f} s",
                "",
                "a file its writer closed skips the settling window; "
                "a trickle of drops is handed on within 1 s",
            )
        )

        # 4. SIGKILL in the middle of a big upload.
        killed = await killed_upload(tmp, url, key, args.big)
        rows.append(
            (
                f"SIGKILL mid {mib:,.0f} MiB upload, then restart",
                f"{killed['sent_again'] / MIB:,.1f} MiB sent again",
                "",
                f"server had {killed['server_offset_after_kill'] / MIB:,.0f} MiB after the kill; "
                f"the restart sent {killed['second_run_sent'] / MIB:,.0f} MiB and hashed "
                f"{killed['second_run_hashed'] / MIB:,.0f} MiB; chunk 16 MiB",
            )
        )
        extra.append(f"Kill figures: {killed}")

    lines = [
        "## Engine: sync",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `python -m bench.run engine-sync` on 2 cores "
        f"(load average {load_average()} at the end; the machine is shared), server as a "
        "child process on loopback, engine in the benchmark process, default `EngineSettings`. "
        "Peer: rclone (Debian) copying the same kind of data to a local `rclone serve webdav`, "
        "4 transfers.",
        "",
        "| What | Engine | rclone | Notes |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
        *[f"{x}" for x in extra],
        "",
    ]
    return "\n".join(lines)


def _hashlib_seconds(path: Path) -> float:
    started = time.monotonic()
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(8 * MIB):
            digest.update(block)
    return time.monotonic() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.engine_sync", description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--rclone-files", type=int, default=1_000)
    parser.add_argument("--big", type=int, default=GIB, help="bytes of the big file")
    parser.add_argument("--latency-files", type=int, default=200)
    parser.add_argument("--no-write", action="store_true", help="print, do not update the doc")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dropline-bench-") as tmp:
        text = asyncio.run(run(args, Path(tmp)))
    print(text)
    if not args.no_write:
        write_section("engine-sync", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
