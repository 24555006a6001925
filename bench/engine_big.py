"""Big-file benchmark: 1 GiB through a running ``dropline-agent``, timed as a user sees it,
beside ``rclone copy`` to and from a local ``rclone serve webdav`` in the same run.

Up: from the moment the complete file is in the folder (moved in: the rename; written in
place: the writer's close) until the server has published it, SHA-256 verified. Down:
from the moment the server has published a file another client uploaded until it is
complete (verified, fsynced, renamed) in the agent's folder. The agent and the server are
child processes, as a user has them; the benchmark watches the server's change feed
(long-poll) and the folder. Each figure is the median of ``--runs`` with its spread.
Results replace the "engine-big" block of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import os
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.engine_common import (
    GIB,
    MIB,
    ROOT,
    RcloneWebdav,
    client,
    process_cpu,
    server,
    write_section,
)
from dropline.sdk import DroplineClient, upload_file
from dropline.sync.fs import PARTIAL_DIR

REMOTE = "/big"


class Agent:
    """``python -m dropline.agent run`` on one two-way folder, with its own home."""

    def __init__(self, tmp: Path, url: str, key: str, folder: Path) -> None:
        self.home = tmp / "agent-home"
        self.home.mkdir(parents=True, exist_ok=True)
        folder.mkdir(parents=True, exist_ok=True)
        (self.home / "agent.toml").write_text(
            f'server_url = "{url}"\n\n[[folders]]\nlocal = "{folder}"\nremote = "{REMOTE}"\n'
            'mode = "two-way"\n'
        )
        env = {k: v for k, v in os.environ.items() if k != "NOTIFY_SOCKET"}
        # The key in the environment, as an unattended agent gets it; no system policy.
        env.update(
            {
                "DROPLINE_API_KEY": key,
                "DROPLINE_POLICY_FILE": str(tmp / "no-policy.toml"),
                "PYTHONPATH": str(ROOT),
            }
        )
        self.log = (tmp / "agent.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dropline.agent", "run", "--home", str(self.home)],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def cpu(self) -> float:
        return process_cpu(self.proc.pid)

    def transfer_seconds(self, rel: str) -> float:
        """How long the agent's history says the transfer of ``rel`` took."""
        journal = self.home / "state" / "journal.sqlite3"
        with contextlib.closing(sqlite3.connect(f"file:{journal}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT duration FROM history WHERE path = ? ORDER BY id DESC LIMIT 1", (rel,)
            ).fetchone()
        if row is None:
            raise SystemExit(f"bench: the agent recorded no transfer of {rel}")
        return float(row[0])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@dataclass
class Feed:
    """When each (path, sha256) first appeared in the server's change feed."""

    sdk: DroplineClient
    cursor: str
    seen: dict[tuple[str, str | None], float] = field(default_factory=dict)

    async def follow(self) -> None:
        while True:
            page = await self.sdk.wait_changes(self.cursor, 60)
            now = time.monotonic()
            for change in page.changes:
                self.seen.setdefault((change.entry.path, change.entry.sha256), now)
            self.cursor = page.cursor

    async def published(self, path: str, sha256: str, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while (path, sha256) not in self.seen:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {path} never reached the server")
            await asyncio.sleep(0.005)
        return self.seen[(path, sha256)]


class Source:
    """Unique big files cheaply: one random buffer, each file with its own first bytes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.buffer = bytearray(os.urandom(size))
        self.count = 0

    def write(self, path: Path) -> str:
        """Write the next unique file to ``path`` (closed on return); its SHA-256."""
        self.count += 1
        tag = f"{self.count:08d}{time.time_ns():020d}".encode()
        self.buffer[: len(tag)] = tag
        sha = hashlib.sha256(self.buffer).hexdigest()  # before: the close is the last step
        view = memoryview(self.buffer)
        with path.open("wb") as fh:
            for at in range(0, self.size, 64 * MIB):
                fh.write(view[at : at + 64 * MIB])
        return sha


async def appears(path: Path, partials: Path, timeout: float = 600) -> tuple[float, float]:
    """When ``path`` appeared (the agent renames a verified file into place), and when the
    first partial download showed up before it (the transfer's start)."""
    deadline = time.monotonic() + timeout
    started = 0.0
    while not path.exists():
        if not started and partials.is_dir() and any(partials.iterdir()):
            started = time.monotonic()
        if time.monotonic() > deadline:
            raise SystemExit(f"bench: {path.name} never arrived in the folder")
        await asyncio.sleep(0.005)
    now = time.monotonic()
    return now, started or now


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(8 * MIB):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class Trials:
    seconds: list[float] = field(default_factory=list)
    agent_cpu: list[float] = field(default_factory=list)
    transfer: list[float] = field(default_factory=list)  # the agent's own record of it
    server_cpu: list[float] = field(default_factory=list)

    def median(self) -> float:
        return statistics.median(self.seconds)

    def spread(self) -> str:
        return f"{min(self.seconds):.2f}-{max(self.seconds):.2f} s"


@dataclass
class Results:
    moved: Trials = field(default_factory=Trials)
    in_place: Trials = field(default_factory=Trials)
    down: Trials = field(default_factory=Trials)
    down_start: list[float] = field(default_factory=list)  # publish to the first byte
    rclone_up: Trials = field(default_factory=Trials)
    rclone_down: Trials = field(default_factory=Trials)
    loads: list[float] = field(default_factory=list)
    verified: bool = True


@contextlib.contextmanager
def measured(trials: Trials, agent: Agent, server_pid: int) -> Iterator[None]:
    agent_cpu, server_cpu = agent.cpu(), process_cpu(server_pid)
    yield
    trials.agent_cpu.append(agent.cpu() - agent_cpu)
    trials.server_cpu.append(process_cpu(server_pid) - server_cpu)


@contextlib.contextmanager
def rclone_cpu(trials: Trials, webdav: RcloneWebdav) -> Iterator[None]:
    """CPU of ``rclone copy`` (a finished child) and of ``rclone serve webdav``."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    serve = process_cpu(webdav.proc.pid)
    yield
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    trials.agent_cpu.append(after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime)
    trials.server_cpu.append(process_cpu(webdav.proc.pid) - serve)


async def settle() -> None:
    # The agent records what it did after the server answered; let it finish and the
    # page cache write-back calm down before the next trial.
    await asyncio.sleep(1.5)


async def run(args: argparse.Namespace, tmp: Path) -> Results:
    res = Results()
    source = Source(args.size)
    staging = tmp / "staging"
    staging.mkdir()
    folder = tmp / "folder"
    with server(tmp) as (url, key, srv):
        agent = Agent(tmp, url, key, folder)
        webdav = RcloneWebdav(tmp / "webdav")
        try:
            async with client(url, key) as sdk, client(url, key) as feeder:
                feed = Feed(feeder, await sdk.latest_cursor())
                follower = asyncio.create_task(feed.follow())
                try:
                    await _warm_up(folder, feed)
                    profilers = _profile(args.profile, agent.proc.pid, srv.proc.pid)
                    for i in range(args.runs):
                        await _one_round(
                            i,
                            args,
                            res,
                            source,
                            staging,
                            folder,
                            feed,
                            sdk,
                            agent,
                            srv.proc.pid,
                            webdav,
                            tmp,
                        )
                    for proc in profilers:
                        proc.send_signal(signal.SIGINT)  # py-spy writes its file and exits
                        proc.wait(timeout=120)
                finally:
                    follower.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await follower
        finally:
            webdav.stop()
            agent.stop()
    return res


def _profile(directory: Path | None, agent: int, server: int) -> list[subprocess.Popen[bytes]]:
    """py-spy on the agent and the server (idle threads too: waiting is what is timed)."""
    if directory is None:
        return []
    directory.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return [
        subprocess.Popen(
            [
                str(spy),
                "record",
                "--idle",
                "--threads",
                "--rate",
                "250",
                "--format",
                "speedscope",
                "--pid",
                str(pid),
                "--output",
                str(directory / f"{name}.speedscope.json"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in (("agent", agent), ("server", server))
    ]


async def _warm_up(folder: Path, feed: Feed) -> None:
    """The agent is up and syncing once a small file it was given is on the server."""
    data = os.urandom(1024)
    (folder / "warm-up.txt").write_bytes(data)
    await feed.published(f"{REMOTE}/warm-up.txt", hashlib.sha256(data).hexdigest(), 120)
    await settle()


async def _one_round(
    i: int,
    args: argparse.Namespace,
    res: Results,
    source: Source,
    staging: Path,
    folder: Path,
    feed: Feed,
    sdk: DroplineClient,
    agent: Agent,
    server_pid: int,
    webdav: RcloneWebdav,
    tmp: Path,
) -> None:
    res.loads.append(os.getloadavg()[0])
    # Up, moved in: the file is complete before the rename puts it in the folder.
    name = f"moved-{i}.bin"
    sha = source.write(staging / name)
    # A file a user moves in already existed: older than the 0.5 s stability window that
    # holds back a file renamed in right after its last write (a save by rename).
    await asyncio.sleep(1.0)
    with measured(res.moved, agent, server_pid):
        started = time.monotonic()
        os.rename(staging / name, folder / name)
        done = await feed.published(f"{REMOTE}/{name}", sha)
    res.moved.seconds.append(done - started)
    await settle()
    res.moved.transfer.append(agent.transfer_seconds(name))

    # Up, written in place: timed from the writer's close.
    name = f"written-{i}.bin"
    with measured(res.in_place, agent, server_pid):
        sha = source.write(folder / name)
        started = time.monotonic()
        done = await feed.published(f"{REMOTE}/{name}", sha)
    res.in_place.seconds.append(done - started)
    await settle()
    res.in_place.transfer.append(agent.transfer_seconds(name))

    # Down: another client uploads; timed from the server's publish.
    name = f"down-{i}.bin"
    sha = source.write(staging / name)
    await upload_file(sdk, staging / name, f"{REMOTE}/{name}", sha256=sha)
    with measured(res.down, agent, server_pid):
        published = await feed.published(f"{REMOTE}/{name}", sha)
        arrived, started = await appears(folder / name, folder / PARTIAL_DIR)
    res.down.seconds.append(arrived - published)
    res.down_start.append(started - published)
    res.verified &= sha256_of(folder / name) == sha
    await settle()

    # The peer: rclone copy of a fresh file of the same size, up and back down.
    name = f"rclone-{i}.bin"
    sha = source.write(staging / name)
    with rclone_cpu(res.rclone_up, webdav):
        res.rclone_up.seconds.append(webdav.copy(str(staging / name), f"peer:up{i}"))
    await settle()
    target = tmp / f"rclone-down-{i}"
    with rclone_cpu(res.rclone_down, webdav):
        res.rclone_down.seconds.append(webdav.copy(f"peer:up{i}/{name}", str(target)))
    res.verified &= sha256_of(target / name) == sha
    await settle()
    print(
        f"round {i + 1}: up moved {res.moved.seconds[-1]:.2f} s, in place "
        f"{res.in_place.seconds[-1]:.2f} s, down {res.down.seconds[-1]:.2f} s; rclone up "
        f"{res.rclone_up.seconds[-1]:.2f} s, down {res.rclone_down.seconds[-1]:.2f} s",
        file=sys.stderr,
        flush=True,
    )


def report(args: argparse.Namespace, res: Results) -> str:
    mib = args.size / MIB

    def rate(t: Trials) -> str:
        return f"{t.median():.2f} s ({mib / t.median():,.0f} MiB/s; {t.spread()})"

    def cpu(t: Trials) -> str:
        return f"{statistics.median(t.agent_cpu):.1f} s + {statistics.median(t.server_cpu):.1f} s"

    def split(t: Trials) -> str:
        transfer = statistics.median(t.transfer)
        before = t.median() - transfer
        return f"; {before:.2f} s before the upload (notice, hash), {transfer:.2f} s in it"

    rows = [
        ("Up, moved into the folder", res.moved, res.rclone_up, split(res.moved)),
        (
            "Up, written in place (from the close)",
            res.in_place,
            res.rclone_up,
            split(res.in_place),
        ),
        (
            "Down, from the server's publish",
            res.down,
            res.rclone_down,
            f"; first byte {statistics.median(res.down_start):.2f} s after the publish",
        ),
    ]
    lines = [
        "## Engine: one big file through the agent",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `python -m bench.run engine-big`: one "
        f"{mib:,.0f} MiB file, median of {args.runs} runs (spread in brackets), on 2 cores "
        f"shared with other work (load average {min(res.loads):.2f}-{max(res.loads):.2f} "
        "at the start of each round). `dropline-agent run` and `dropline-server serve` are "
        "child processes on loopback; the times come from the server's change feed "
        "(long-poll) and the folder. Peer in the same run: `rclone copy` (Debian's rclone, "
        "4 transfers) of a file of the same size to and from a local `rclone serve webdav`, "
        "process start included.",
        "",
        "| What | Agent | rclone | Ratio | CPU: agent + server | CPU: rclone + its server |",
        "|---|---|---|---|---|---|",
    ]
    for what, ours, peer, note in rows:
        lines.append(
            f"| {what} | {rate(ours)} | {rate(peer)} | {peer.median() / ours.median():.2f}x "
            f"| {cpu(ours)}{note} | {cpu(peer)} |"
        )
    lines += [
        "",
        "Every file was checked afterwards: "
        + (
            "the SHA-256 of each copy matched its source."
            if res.verified
            else "A COPY DID NOT MATCH ITS SOURCE."
        ),
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.engine_big", description=__doc__)
    parser.add_argument("--size", type=int, default=GIB, help="bytes of the big file")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", type=Path, help="py-spy the agent and server into DIR")
    parser.add_argument("--no-write", action="store_true", help="print, do not update the doc")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dropline-bench-big-") as tmp:
        res = asyncio.run(run(args, Path(tmp)))
    text = report(args, res)
    print(text)
    if not args.no_write:
        write_section("engine-big", text)
    return 0 if res.verified else 1


if __name__ == "__main__":
    sys.exit(main())
