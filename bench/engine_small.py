"""Small-file benchmark: the initial upload of 10,000 files of 4 KiB by a running agent
(``dropline-agent run``, its own process, as a user has it) to the server (a child
process on loopback), several runs, beside rclone copying to a local ``rclone serve
webdav`` in the same run.

A run's clock starts when the files are in the agent's folder (a directory made
beforehand is moved in with one rename, as a user drops a folder in) and stops when
the server holds every file with the expected SHA-256, as read from its change feed by
a second key of the same user. Each run has a fresh agent home and remote folder; all
files are made before the first run (creating files right after deleting a big tree is
slow here, so nothing is deleted between runs). Results replace the "engine-small"
block of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from bench.engine_common import (
    ROOT,
    RcloneWebdav,
    client,
    load_average,
    process_cpu,
    server,
    write_section,
)
from bench.request_rate import another_key
from dropline.agent.control import AgentNotRunning, ControlClient, ControlError
from dropline.agent.paths import AgentPaths


def make_files(folder: Path, count: int, size: int, salt: int) -> dict[str, str]:
    """Unique contents per file; returns each file's name and SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for i in range(count):
        data = salt.to_bytes(4, "big") + i.to_bytes(4, "big") + os.urandom(size - 8)
        name = f"f{i:06d}.bin"
        (folder / name).write_bytes(data)
        hashes[name] = hashlib.sha256(data).hexdigest()
    return hashes


class AgentProcess:
    """``python -m dropline.agent run --home HOME`` with one upload folder; the key comes
    from ``DROPLINE_API_KEY`` as an unattended agent gets it."""

    def __init__(self, home: Path, url: str, key: str, local: Path, remote: str) -> None:
        self.paths = AgentPaths.resolve(home)
        home.mkdir(parents=True, exist_ok=True)
        local.mkdir(parents=True, exist_ok=True)
        self.paths.config.write_text(
            f'server_url = "{url}"\n\n[[folders]]\nlocal = "{local}"\nremote = "{remote}"\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("DROPLINE_")}
        env["DROPLINE_API_KEY"] = key
        env["DROPLINE_POLICY_FILE"] = str(home / "no-policy.toml")
        self.stderr = (home / "agent.stderr").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dropline.agent", "run", "--home", str(home)],
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self.stderr,
        )

    def status(self) -> dict[str, object] | None:
        try:
            with ControlClient(self.paths.socket, timeout=10) as control:
                doc = control.call("status")
        except (AgentNotRunning, ControlError, OSError):
            return None
        return doc if isinstance(doc, dict) else None

    def idle(self) -> bool:
        doc = self.status()
        folders = doc.get("folders") if doc else None
        return (
            isinstance(folders, list)
            and bool(folders)
            and all(f["state"] == "idle" and not f["pending"] for f in folders)
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.stderr.close()


async def wait_ready(agent: AgentProcess, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not agent.idle():
        if agent.proc.poll() is not None:
            raise SystemExit(f"bench: the agent exited with {agent.proc.returncode}")
        if time.monotonic() > deadline:
            raise SystemExit("bench: the agent was not ready in time")
        await asyncio.sleep(0.05)


async def until_held(
    url: str, key: str, remote: str, expected: dict[str, str], cursor: str, timeout: float
) -> tuple[float, float]:
    """Follow the change feed until the server holds every expected file with its
    SHA-256; returns the monotonic times of the checks that saw the first and the last."""
    missing = {f"{remote}/{name}": digest for name, digest in expected.items()}
    first = 0.0
    deadline = time.monotonic() + timeout
    async with client(url, key) as sdk:
        page = await sdk.changes(cursor)
        while True:
            cursor = page.cursor
            for change in page.changes:
                entry = change.entry
                if entry.sha256 is not None and missing.get(entry.path) == entry.sha256:
                    del missing[entry.path]
                    first = first or time.monotonic()
            if not missing:
                break
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {len(missing)} files never arrived")
            # The long-poll answers as soon as the next change commits: as prompt as
            # polling, without loading the server it measures with a request every 20 ms.
            page = await (sdk.changes(cursor) if page.has_more else sdk.wait_changes(cursor, 10))
    return first, time.monotonic()


async def one_run(
    tmp: Path, url: str, key: str, reader_key: str, run: int, staged: Path, hashes: dict[str, str]
) -> tuple[float, float, float]:
    """Seconds from the drop to the server holding all, to it holding the first, and
    the agent's CPU seconds."""
    local = tmp / f"folder-{run}"
    remote = f"/small-{run}"
    agent = AgentProcess(tmp / f"home-{run}", url, key, local, remote)
    try:
        await wait_ready(agent)
        async with client(url, reader_key) as sdk:
            cursor = await sdk.latest_cursor()
        cpu0 = process_cpu(agent.proc.pid)
        started = time.monotonic()
        os.rename(staged, local / "drop")
        first, done = await until_held(
            url, reader_key, f"{remote}/drop", hashes, cursor, timeout=max(600, len(hashes) / 10)
        )
        agent_cpu = process_cpu(agent.proc.pid) - cpu0
        return done - started, first - started, agent_cpu
    finally:
        agent.stop()


async def run(args: argparse.Namespace, tmp: Path) -> str:
    started = time.monotonic()
    staged = []
    for i in range(args.runs):
        folder = tmp / "staged" / f"run-{i}"
        staged.append((folder, make_files(folder, args.files, 4096, i)))
    peer_src = tmp / "rclone-src"
    make_files(peer_src, args.rclone_files, 4096, 1000)
    made = time.monotonic() - started
    await asyncio.sleep(args.settle)  # let the page cache's writeback of the files pass
    results: list[tuple[float, float, float]] = []
    firsts: list[float] = []
    with server(tmp) as (url, key, srv):
        reader_key = another_key(tmp / "server-data")
        for i, (folder, hashes) in enumerate(staged):
            server_cpu = srv.cpu()
            seconds, first, agent_cpu = await one_run(tmp, url, key, reader_key, i, folder, hashes)
            results.append((seconds, agent_cpu, srv.cpu() - server_cpu))
            firsts.append(first)
            print(
                f"run {i + 1}: {args.files / seconds:,.0f} files/s ({seconds:.2f} s, first "
                f"file held after {first:.2f} s), "
                f"agent CPU {agent_cpu:.1f} s, server CPU {results[-1][2]:.1f} s, "
                f"load {load_average()}",
                file=sys.stderr,
                flush=True,
            )
        webdav = RcloneWebdav(tmp / "webdav")
        try:
            peer_seconds = webdav.copy(str(peer_src), "peer:small")
        finally:
            webdav.stop()
    rates = sorted(args.files / s for s, _a, _c in results)
    median = statistics.median(rates)
    peer_rate = args.rclone_files / peer_seconds
    agent_cpu = statistics.median(a for _s, a, _c in results)
    server_cpu = statistics.median(c for _s, _a, c in results)
    runs_text = ", ".join(f"{args.files / s:,.0f}" for s, _a, _c in results)
    rows = [
        (
            f"Initial upload, {args.files:,} files of 4 KiB, median of {len(rates)} runs",
            f"{median:,.0f} files/s",
            f"{peer_rate:,.0f} files/s ({args.rclone_files:,} files, {peer_seconds:.1f} s)",
            f"{median / peer_rate:.0f}x rclone; target 2,000 files/s ({median / 2000:.0%} of it)",
        ),
        (
            "Spread (min / max)",
            f"{rates[0]:,.0f} / {rates[-1]:,.0f} files/s",
            "",
            f"runs in order: {runs_text} files/s",
        ),
        (
            "Drop to the first file held (median)",
            f"{statistics.median(firsts):.2f} s",
            "",
            "the agent noticing the folder, walking and hashing before the first batch",
        ),
        (
            "CPU per run (median)",
            f"agent {agent_cpu:.1f} s, server {server_cpu:.1f} s",
            "",
            f"{(agent_cpu + server_cpu) / (args.files / median):.0%} of one core over the run",
        ),
    ]
    lines = [
        "## Engine: small files (agent process)",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `python -m bench.run engine-small` on 2 "
        f"cores (load average {load_average()} at the end; the machine is shared with other "
        "work, so absolute figures drift). The agent runs as `dropline-agent run` in its own "
        "process with default settings; the server is a child process on loopback. The clock "
        "runs from a folder of files moved into the sync folder until the server's change feed "
        f"shows every file with its SHA-256. Files made in {made:.1f} s before the first run. "
        "Peer: rclone (Debian) copying to a local `rclone serve webdav`, 4 transfers.",
        "",
        "| What | Agent | rclone | Notes |",
        "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows],
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.engine_small", description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rclone-files", type=int, default=1_000)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after making files")
    parser.add_argument("--no-write", action="store_true", help="print, do not update the doc")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dropline-bench-") as tmp:
        text = asyncio.run(run(args, Path(tmp)))
    print(text)
    if not args.no_write:
        write_section("engine-small", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
