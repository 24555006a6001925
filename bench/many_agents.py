"""Many-agents benchmark: one server (a child process on loopback) under 200 simulated
agents uploading small files while 1,000 long-polls are held on the change feed.

The accounts: 10 tenants of 20 users; each user has five API keys, one per device.
One device per user is an active agent (an SDK client, all in this process's event
loop) that uploads small files in batch requests and reads the change feed after each
batch; all five devices hold a long-poll (``GET /api/v1/changes/wait``, raw httpx)
that is sent again as soon as it answers, as idle agents do, so every batch wakes the
five long-polls of its user. Every response's status and time is counted at the
transport, retries included, so a 5xx or 429 the SDK retried still shows. Results
replace the "many-agents" block of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.engine_common import load_average, write_section
from dropline.sdk.batch import BatchItem, upload_batch
from dropline.sdk.breaker import CircuitBreaker
from dropline.sdk.client import KEEPALIVE_EXPIRY, ApiKeyCredentials, DroplineClient, RetryPolicy
from dropline.sdk.errors import DroplineError


@dataclass
class Tally:
    """Every response seen at the transport: status counts and seconds per kind."""

    statuses: Counter[int] = field(default_factory=Counter)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    transport_errors: Counter[str] = field(default_factory=Counter)

    def add(self, kind: str, status: int, seconds: float) -> None:
        self.statuses[status] += 1
        self.seconds.setdefault(kind, []).append(seconds)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for s, n in self.statuses.items() if s >= 500)


def _kind(request: httpx.Request) -> str:
    path = request.url.path
    if path.endswith("/changes/wait"):
        return "long-poll"
    if path.endswith("/uploads/batch"):
        return "batch upload"
    if path.endswith("/changes"):
        return "change feed"
    return "other"


class CountingTransport(httpx.AsyncBaseTransport):
    def __init__(self, tally: Tally, **kwargs: object) -> None:
        self.tally = tally
        self.inner = httpx.AsyncHTTPTransport(**kwargs)  # type: ignore[arg-type]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.monotonic()
        kind = _kind(request)
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.TransportError as exc:
            self.tally.transport_errors[f"{kind}: {type(exc).__name__}"] += 1
            raise
        self.tally.add(kind, response.status_code, time.monotonic() - started)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def make_accounts(data_dir: Path, tenants: int, users: int, devices: int) -> list[list[str]]:
    """Keys by user: ``[[active agent's key, other devices' keys...], ...]``."""
    from dropline.server.identity.accounts import Identity
    from dropline.server.settings import Settings
    from dropline.server.storage.db import Database
    from dropline.server.storage.migrations import migrate

    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(Settings(data_dir=data_dir).database_url)
    migrate(db)
    identity = Identity(db)
    keys: list[list[str]] = []
    for t in range(tenants):
        tenant = f"tenant-{t:02d}"
        identity.create_tenant(tenant)
        for u in range(users):
            email = f"user{u:03d}@t{t:02d}.example.com"
            identity.create_user(tenant, email, None)
            keys.append([identity.create_api_key(tenant, email)[1] for _ in range(devices)])
    db.dispose()
    return keys


class ServerProcess:
    """``dropline-server serve`` with its file-descriptor limit raised to the hard limit."""

    def __init__(self, data_dir: Path, env: dict[str, str]) -> None:
        self.log_path = data_dir.parent / "server.log"
        self.log = self.log_path.open("w")

        def raise_fd_limit() -> None:
            _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "dropline.server.cli", "serve"),
                *("--data-dir", str(data_dir), "--port", "0", "--log-level", "warning"),
            ],
            stderr=self.log,
            env={**os.environ, **env},
            preexec_fn=raise_fd_limit,
        )
        self.url = ""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.url:
            match = re.search(r"listening on (http\S+)", self.log_path.read_text())
            self.url = match.group(1).rstrip('",') if match else ""
            time.sleep(0.05)
        if not self.url:
            raise SystemExit("bench: server did not start")

    def status(self, field_name: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
        raise KeyError(field_name)

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


async def hold_long_poll(
    http: httpx.AsyncClient, key: str, stop: asyncio.Event, held: list[int], wakes: Counter[str]
) -> None:
    """One idle device: a long-poll sent again whenever it answers, until ``stop``."""
    headers = {"Authorization": f"Bearer {key}"}
    response = await http.get("/api/v1/changes/latest-cursor", headers=headers)
    cursor = response.json()["cursor"]
    held[0] += 1
    while not stop.is_set():
        try:
            response = await http.get(
                "/api/v1/changes/wait", params={"cursor": cursor, "timeout": 30}, headers=headers
            )
        except httpx.TransportError:
            await asyncio.sleep(0.5)  # counted by the transport
            continue
        if response.status_code != 200:
            wakes[f"status {response.status_code}"] += 1
            await asyncio.sleep(0.5)
            continue
        doc = response.json()
        cursor = doc["cursor"]
        wakes["with changes" if doc["changes"] else "timed out"] += 1


@dataclass
class AgentResult:
    files: int = 0
    errors: list[str] = field(default_factory=list)


async def active_agent(
    url: str, key: str, agent: int, files: int, per_batch: int, size: int, tally: Tally
) -> AgentResult:
    """Upload ``files`` small files in batches, reading the change feed after each."""
    result = AgentResult()
    sdk = DroplineClient(
        url,
        ApiKeyCredentials(key),
        retry=RetryPolicy(attempts=4, initial=0.2, maximum=2.0),
        breaker=CircuitBreaker(failure_threshold=10, reset_timeout=1.0),
        # A transport given to httpx brings its own pool: the SDK's limits, as it sets them.
        transport=CountingTransport(
            tally, limits=httpx.Limits(max_connections=2, keepalive_expiry=KEEPALIVE_EXPIRY)
        ),
        timeout=120.0,
        max_connections=2,
        user_agent="dropline-bench/many-agents",
    )
    async with sdk:
        cursor = await sdk.latest_cursor()
        for start in range(0, files, per_batch):
            items = [
                BatchItem(
                    f"/agent-{agent:03d}/f{i:05d}.bin",
                    agent.to_bytes(2, "big") + i.to_bytes(4, "big") + os.urandom(size - 6),
                )
                for i in range(start, min(files, start + per_batch))
            ]
            for outcome in await upload_batch(sdk, items):
                if isinstance(outcome, DroplineError):
                    result.errors.append(f"{type(outcome).__name__}: {outcome}")
                else:
                    result.files += 1
            try:
                page = await sdk.changes(cursor)
                cursor = page.cursor
            except DroplineError as err:
                result.errors.append(f"changes: {type(err).__name__}: {err}")
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


async def run(args: argparse.Namespace, tmp: Path) -> str:
    data = tmp / "server-data"
    started = time.monotonic()
    keys = make_accounts(data, args.tenants, args.agents // args.tenants, args.devices)
    made = time.monotonic() - started
    env = {
        # Each credential stays far below these; set so the limits are known, not hit.
        "DROPLINE_RATE_LIMIT_PER_CREDENTIAL": "500/second",
        "DROPLINE_RATE_LIMIT_PER_ENDPOINT": "100/second",
    }
    srv = ServerProcess(data, env)
    tally = Tally()
    wakes: Counter[str] = Counter()
    try:
        # One client (connection pool) per user's devices: one pool of 1,000 connections
        # spent more CPU here choosing a connection than the server spent answering.
        poll_clients = [
            httpx.AsyncClient(
                base_url=srv.url,
                transport=CountingTransport(
                    tally, limits=httpx.Limits(keepalive_expiry=KEEPALIVE_EXPIRY)
                ),
                timeout=httpx.Timeout(60.0, connect=30.0),
            )
            for _ in keys
        ]
        stop = asyncio.Event()
        held = [0]
        poll_keys = [(c, k) for c, user in zip(poll_clients, keys, strict=True) for k in user]
        polls = []
        for c, k in poll_keys[: args.polls]:
            polls.append(asyncio.create_task(hold_long_poll(c, k, stop, held, wakes)))
            await asyncio.sleep(0.005)  # devices come online over seconds, not all at once
        deadline = time.monotonic() + 120
        while held[0] < len(polls) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)  # the last ones sent and parked at the server
        fds_held = srv.open_fds()
        rss_held = srv.status("VmRSS")
        baseline = Counter(tally.statuses)
        cpu0 = srv.cpu()
        rss_peak = [rss_held]

        async def sample() -> None:
            while True:
                rss_peak[0] = max(rss_peak[0], srv.status("VmRSS"))
                await asyncio.sleep(0.2)

        sampler = asyncio.create_task(sample())
        began = time.monotonic()
        results = await asyncio.gather(
            *(
                active_agent(srv.url, user[0], i, args.files, args.per_batch, args.size, tally)
                for i, user in enumerate(keys[: args.agents])
            )
        )
        elapsed = time.monotonic() - began
        server_cpu = srv.cpu() - cpu0
        sampler.cancel()
        fds_end = srv.open_fds()
        still_held = sum(1 for p in polls if not p.done())
        for p in polls:
            if p.done() and p.exception() is not None:
                wakes[f"failed: {type(p.exception()).__name__}"] += 1
        stop.set()
        for p in polls:
            p.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*polls, return_exceptions=True)
        for c in poll_clients:
            await c.aclose()
        hwm = srv.status("VmHWM")
    finally:
        srv.stop()
    files = sum(r.files for r in results)
    errors = [e for r in results for e in r.errors]
    during = tally.statuses - baseline
    requests = sum(during.values())
    five_xx = sum(n for s, n in during.items() if s >= 500)
    batch_s = tally.seconds.get("batch upload", [])
    feed_s = tally.seconds.get("change feed", [])
    rows = [
        (
            "Files uploaded",
            f"{files:,} in {elapsed:.1f} s: {files / elapsed:,.0f} files/s",
            f"{args.agents} agents x {args.files} files of {args.size // 1024} KiB, "
            f"{args.per_batch} a batch request",
        ),
        (
            "Requests answered",
            f"{requests:,}: {requests / elapsed:,.0f} requests/s",
            "batch uploads, change-feed reads, long-polls answered and sent again",
        ),
        (
            "Batch upload latency",
            f"p50 {statistics.median(batch_s):.2f} s, p99 {percentile(batch_s, 0.99):.2f} s",
            f"{len(batch_s):,} requests; max {max(batch_s):.2f} s",
        ),
        (
            "Change-feed read latency",
            f"p50 {statistics.median(feed_s) * 1000:.0f} ms, "
            f"p99 {percentile(feed_s, 0.99) * 1000:.0f} ms",
            f"{len(feed_s):,} requests",
        ),
        (
            "Long-polls held",
            f"{held[0]:,} held before the agents started; {still_held:,} still held at the end",
            f"answers while the agents ran: {dict(wakes)}",
        ),
        (
            "Server RSS",
            f"{rss_held / 1024:.0f} MiB with the long-polls held; peak {rss_peak[0] / 1024:.0f}"
            f" MiB sampled, {hwm / 1024:.0f} MiB high-water mark",
            f"server CPU {server_cpu:.1f} s over the {elapsed:.1f} s",
        ),
        (
            "Server file descriptors",
            f"{fds_held:,} with the long-polls held, {fds_end:,} at the end",
            "the benchmark raises the server's soft limit to the hard limit "
            f"({resource.getrlimit(resource.RLIMIT_NOFILE)[1]:,})",
        ),
        (
            "Errors",
            f"{len(errors)} file or request errors; {five_xx} 5xx; "
            f"{during.get(429, 0)} 429; {sum(tally.transport_errors.values())} transport errors",
            f"statuses while the agents ran: {dict(sorted(during.items()))}; "
            f"transport errors: {dict(tally.transport_errors) or 'none'}",
        ),
    ]
    if errors:
        rows.append(("First errors", "; ".join(sorted(set(errors))[:3]), ""))
    lines = [
        "## Server under many agents",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `python -m bench.run many-agents` on 2 cores "
        f"(load average {load_average()} at the end; the machine is shared with other work). "
        f"One server process (embedded SQLite) on loopback; {args.tenants} tenants of "
        f"{args.agents // args.tenants} users, {args.devices} API keys a user (accounts made "
        f"in {made:.1f} s). {args.polls:,} long-polls (`timeout=30`) held by raw httpx "
        f"clients, then {args.agents} SDK clients in this process's event loop each "
        "uploading its files in batch requests and reading the change feed after each "
        "batch. Rate limits as set: 500 requests/s per credential, 100/s per credential "
        "and URL (the defaults; no credential comes near them).",
        "",
        "| What | Figure | Notes |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
    ]
    if five_xx or errors:
        print(f"bench: {five_xx} 5xx and {len(errors)} errors", file=sys.stderr)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.many_agents", description=__doc__)
    parser.add_argument("--agents", type=int, default=200)
    parser.add_argument("--polls", type=int, default=1000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--devices", type=int, default=5, help="API keys per user")
    parser.add_argument("--files", type=int, default=50, help="files per agent")
    parser.add_argument("--per-batch", type=int, default=10, help="files per batch request")
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--no-write", action="store_true", help="print, do not update the doc")
    args = parser.parse_args(argv)
    if args.polls > args.agents * args.devices:
        parser.error("--polls is at most --agents x --devices")
    with tempfile.TemporaryDirectory(prefix="dropline-bench-") as tmp:
        text = asyncio.run(run(args, Path(tmp)))
    print(text)
    if not args.no_write:
        write_section("many-agents", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
