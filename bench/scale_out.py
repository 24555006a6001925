"""Scale-out benchmark: the same server on SQLite + disk and on PostgreSQL + S3, one node
or two behind nginx, measured in one run so the ratios between them hold.

Measured: small-file uploads per second (one POST each, several clients at once) and one
big upload (the SDK's ``upload_file``: tus, 16 MiB PATCHes) through (a) 1 node on SQLite +
disk, (b) 1 node on PostgreSQL + S3 (moto's server), (c) that node behind nginx, (d) 2
nodes behind nginx; the CPU every process spent on them; long-polls held by 2 nodes and
the time one change takes to reach all of them; and the cost of one request on each
backend, single client, with a py-spy profile of the node. Results replace the
"scale-out" block of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
from sqlalchemy import text as sql

from bench.engine_common import load_average, write_section
from bench.scale_out_polls import FanOut, fan_out
from bench.scale_out_profile import Breakdown, profiled
from bench.scale_out_stack import (
    Shape,
    behind_nginx,
    cpu_by_role,
    cpu_spent,
    postgres_nodes,
    raise_fd_limit,
    sqlite_node,
)
from bench.server_transfer import MIB, make_big_file, meta
from dropline.sdk.client import ApiKeyCredentials, DroplineClient
from dropline.sdk.resumable import upload_file
from dropline.server.storage.db import Database
from tests.support.postgres import PostgresCluster
from tests.support.s3 import MotoServer

ROLES = ("nodes", "PostgreSQL", "S3 (moto)", "nginx", "client")


@dataclass
class Throughput:
    label: str
    files: int = 0
    small_seconds: float = 0.0
    small_latencies: list[float] = field(default_factory=list)
    small_cpu: dict[str, float] = field(default_factory=dict)
    big_bytes: int = 0
    big_seconds: float = 0.0
    big_cpu: dict[str, float] = field(default_factory=dict)

    @property
    def files_per_second(self) -> float:
        return self.files / self.small_seconds

    @property
    def mib_per_second(self) -> float:
        return self.big_bytes / MIB / self.big_seconds


@dataclass
class Cost:
    """One backend's cost per request, a single client sending one request at a time."""

    label: str
    metadata: list[float] = field(default_factory=list)
    upload: list[float] = field(default_factory=list)
    round_trip: list[float] = field(default_factory=list)  # SELECT 1 through the server's pool
    transactions_per_upload: float | None = None
    profile: Breakdown | None = None


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] if ordered else 0.0


# -- the requests -------------------------------------------------------------------------


def small_payloads(count: int, size: int, salt: int) -> list[bytes]:
    # Unique contents per file, so every upload stores a blob of its own.
    return [
        salt.to_bytes(2, "big") + i.to_bytes(6, "big") + os.urandom(size - 8) for i in range(count)
    ]


async def upload_small(
    url: str, key: str, prefix: str, payloads: list[bytes], concurrency: int
) -> tuple[float, list[float]]:
    """Each file one POST (tus creation-with-upload, sha256 declared): seconds for all and
    each request's latency."""
    headers = {"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    todo = iter(enumerate(payloads))
    latencies: list[float] = []
    failures: list[str] = []
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=120) as c:

        async def worker() -> None:
            for i, data in todo:
                started = time.perf_counter()
                r = await c.post(
                    "/api/v1/uploads",
                    headers={
                        "Upload-Length": str(len(data)),
                        "Upload-Metadata": meta(
                            path=f"{prefix}/d{i % 50:02d}/f{i:05d}.bin",
                            sha256=hashlib.sha256(data).hexdigest(),
                        ),
                        "Content-Type": "application/offset+octet-stream",
                    },
                    content=data,
                )
                latencies.append(time.perf_counter() - started)
                if r.status_code != 201:
                    failures.append(f"{r.status_code} {r.text[:200]}")

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - began
    if failures:
        raise SystemExit(f"bench: {len(failures)} small uploads failed, first: {failures[0]}")
    return seconds, latencies


async def upload_big(url: str, key: str, path: Path, sha256: str, target: str) -> float:
    async with DroplineClient(url, ApiKeyCredentials(key), timeout=600) as client:
        began = time.perf_counter()
        entry = await upload_file(client, path, target, sha256=sha256)
        seconds = time.perf_counter() - began
    if entry.sha256 != sha256:
        raise SystemExit("bench: the server's sha256 of the big file differs from the file's")
    return seconds


async def metadata_gets(url: str, key: str, path: str, count: int) -> list[float]:
    latencies = []
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=60) as c:
        for _ in range(count):
            started = time.perf_counter()
            r = await c.get("/api/v1/metadata", params={"path": path})
            latencies.append(time.perf_counter() - started)
            if r.status_code != 200:
                raise SystemExit(f"bench: metadata GET answered {r.status_code}: {r.text}")
    return latencies


def round_trips(database_url: str, count: int) -> list[float]:
    """``SELECT 1`` through SQLAlchemy's pool and the same driver the server uses."""
    db = Database(database_url)
    found = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            with db.read() as conn:
                conn.execute(sql("SELECT 1")).scalar()
            found.append(time.perf_counter() - started)
    finally:
        db.dispose()
    return found


def next_xid(pg: PostgresCluster) -> int:
    """The cluster's next transaction id. Only writing transactions take one, at once (the
    statistics views lag by up to seconds), so the difference counts them; this call's
    own id is taken off."""
    with psycopg.connect(pg.admin_dsn(), autocommit=True) as conn:
        row = conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
    assert row is not None
    return int(row[0]) + 1


# -- the run ---------------------------------------------------------------------------------


def throughput(
    shape: Shape, args: argparse.Namespace, tag: str, big: Path, big_sha: str
) -> Throughput:
    found = Throughput(shape.label, files=args.files)
    payloads = small_payloads(args.files, args.size_kib * 1024, salt=ord(tag))
    print(f"bench: ({tag}) {shape.label}: {args.files} small files", file=sys.stderr, flush=True)
    # Unmeasured first: connections, pools and the nodes' first-request work warm up.
    warm = small_payloads(args.concurrency * 2, args.size_kib * 1024, salt=ord(tag) + 100)
    asyncio.run(upload_small(shape.url, shape.key, f"/warm-{tag}", warm, args.concurrency))
    cpu0 = cpu_by_role(shape)
    found.small_seconds, found.small_latencies = asyncio.run(
        upload_small(shape.url, shape.key, f"/small-{tag}", payloads, args.concurrency)
    )
    found.small_cpu = cpu_spent(cpu0, cpu_by_role(shape))
    print(f"bench: ({tag}) {shape.label}: {args.big_mib} MiB", file=sys.stderr, flush=True)
    cpu0 = cpu_by_role(shape)
    found.big_seconds = asyncio.run(upload_big(shape.url, shape.key, big, big_sha, f"/big-{tag}"))
    found.big_cpu = cpu_spent(cpu0, cpu_by_role(shape))
    found.big_bytes = big.stat().st_size
    return found


def cost(
    shape: Shape, args: argparse.Namespace, label: str, work: Path, pg: PostgresCluster | None
) -> Cost:
    print(f"bench: cost per request, {label}", file=sys.stderr, flush=True)
    found = Cost(label)
    payloads = small_payloads(args.requests, args.size_kib * 1024, salt=7)
    before = next_xid(pg) if pg else 0
    _s, found.upload = asyncio.run(upload_small(shape.url, shape.key, "/one", payloads, 1))
    if pg is not None:
        found.transactions_per_upload = (next_xid(pg) - 1 - before) / args.requests
    found.metadata = asyncio.run(
        metadata_gets(shape.url, shape.key, "/one/d00/f00000.bin", args.requests)
    )
    found.round_trip = round_trips(shape.database_url, args.requests)
    profile_payloads = small_payloads(args.profile_files, args.size_kib * 1024, salt=9)
    node = shape.nodes[0].proc
    assert node is not None
    with profiled(node.pid, work / f"profile-{label[:6]}.txt") as found.profile:
        asyncio.run(
            upload_small(shape.url, shape.key, "/profiled", profile_payloads, args.concurrency)
        )
    return found


def run(args: argparse.Namespace, work: Path) -> str:
    big = work / "big.bin"
    make_big_file(big, args.big_mib * MIB)
    with big.open("rb") as handle:
        big_sha = hashlib.file_digest(handle, "sha256").hexdigest()
    rows: list[Throughput] = []
    costs: list[Cost] = []
    with sqlite_node(work) as shape:
        rows.append(throughput(shape, args, "a", big, big_sha))
        costs.append(cost(shape, args, "SQLite + disk", work, None))
    pg = PostgresCluster().start()
    moto = MotoServer()
    try:
        moto.start()
        with postgres_nodes(work, pg, moto, 1) as shape:
            rows.append(throughput(shape, args, "b", big, big_sha))
            costs.append(cost(shape, args, "PostgreSQL + S3", work, pg))
            with behind_nginx(shape, work / "nginx-1") as front:
                rows.append(throughput(front, args, "c", big, big_sha))
        with postgres_nodes(work, pg, moto, 2) as shape:
            with behind_nginx(shape, work / "nginx-2") as front:
                rows.append(throughput(front, args, "d", big, big_sha))
            print(f"bench: {args.polls} long-polls on 2 nodes", file=sys.stderr, flush=True)
            polls = asyncio.run(fan_out(shape, args.polls))
    finally:
        moto.stop()
        pg.stop()
    return report(args, rows, costs, polls)


# -- the report ------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _cpu_text(cpu: dict[str, float], per: float) -> str:
    return ", ".join(f"{role} {cpu[role] / per:.2f}" for role in ROLES if role in cpu)


def report(args: argparse.Namespace, rows: list[Throughput], costs: list[Cost], f: FanOut) -> str:
    base = rows[0]
    table = [
        "| Shape | Small files/s | vs (a) | Upload p50 / p99 (ms) | CPU per small file (ms) "
        f"| {args.big_mib} MiB up (MiB/s) | vs (a) | CPU per MiB (ms) |",
        "|---|---:|---:|---:|---|---:|---:|---|",
    ]
    for tag, row in zip("abcd", rows, strict=True):
        lat = row.small_latencies
        table.append(
            f"| ({tag}) {row.label} | {row.files_per_second:,.0f} | "
            f"{row.files_per_second / base.files_per_second:.2f}x | "
            f"{_ms(statistics.median(lat))} / {_ms(percentile(lat, 0.99))} | "
            f"{_cpu_text(row.small_cpu, row.files / 1000)} | {row.mib_per_second:,.0f} | "
            f"{row.mib_per_second / base.mib_per_second:.2f}x | "
            f"{_cpu_text(row.big_cpu, row.big_bytes / MIB / 1000)} |"
        )
    table.append(
        "| 2 nodes, SQLite + disk | not possible | | | | not possible | | "
        "a SQLite data dir serves one process: a second `serve` on it exits at once |"
    )
    errors = sum(1 for a in f.answers if a.status not in (0, 200))
    unanswered = sum(1 for a in f.answers if a.status == 0)
    p99 = percentile(f.latencies, 0.99)
    polls = [
        "| What | Figure |",
        "|---|---|",
        f"| Long-polls held | {sum(f.held):,.0f} of {f.polls:,} "
        f"({', '.join(f'{h:,.0f}' for h in f.held)} by node, `dropline_longpolls_active`), "
        f"opened in {f.opened_seconds:.1f} s |",
        f"| Answered with the change | {f.answered:,} of {f.polls:,}; {unanswered:,} without an "
        f"answer within 30 s, {errors:,} with an error status |",
        f"| From the write's answer to each long-poll's | p50 {_ms(percentile(f.latencies, 0.5))}"
        f" ms, p99 {_ms(p99)} ms, max {_ms(max(f.latencies, default=0.0))} ms "
        f"(target p99 under 1 s: {'met' if p99 < 1 and f.answered == f.polls else 'not met'}) |",
        f"| The write (one small upload through node 1) | {_ms(f.write_seconds)} ms round trip; "
        "its commit lies inside it |",
        f"| CPU from the write until all answered (s) | {_cpu_text(f.cpu, 1)} |",
    ]
    sqlite_cost, pg_cost = costs
    cost_rows = [
        "| Request (single client, one at a time) | SQLite + disk | PostgreSQL + S3 | Ratio |",
        "|---|---:|---:|---:|",
    ]
    for what, a, b in (
        ("Metadata `GET /api/v1/metadata`, median ms", sqlite_cost.metadata, pg_cost.metadata),
        ("Small upload (one POST), median ms", sqlite_cost.upload, pg_cost.upload),
        (
            "`SELECT 1` through the server's pool and driver, median ms",
            sqlite_cost.round_trip,
            pg_cost.round_trip,
        ),
    ):
        ma, mb = statistics.median(a), statistics.median(b)
        cost_rows.append(f"| {what} | {ma * 1000:.2f} | {mb * 1000:.2f} | {mb / ma:.1f}x |")
    if pg_cost.transactions_per_upload is not None:
        cost_rows.append(
            "| PostgreSQL writing transactions per small upload (cluster-wide) | | "
            f"{pg_cost.transactions_per_upload:.1f} | |"
        )
    profiles = []
    for c in costs:
        if c.profile is not None and c.profile.shares:
            profiles += [
                "",
                f"Where a node's CPU goes during small uploads, {c.label} (py-spy, "
                f"{c.profile.samples:,} samples, {args.profile_files:,} uploads with "
                f"{args.concurrency} clients at once; each sample by the nearest library or "
                "Dropline frame):",
                "",
                *(f"- {share:.0f}% {name}" for name, share in c.profile.shares),
            ]
    lines = [
        "### Scale-out figures",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `python -m bench.run scale-out"
        f"{' ' + ' '.join(args.argv) if args.argv else ''}` on 2 cores (load average "
        f"{load_average()} at the end), everything on this one machine: the nodes, "
        "PostgreSQL (Debian's, throwaway cluster, fsync off), moto's S3 server, nginx and "
        f"the clients. {args.files:,} files of {args.size_kib} KiB, {args.concurrency} "
        f"clients at once, one POST each; one {args.big_mib} MiB file with the SDK's "
        "`upload_file` (tus, 16 MiB PATCHes; behind nginx they land on the nodes in "
        "turn). CPU: each process tree's user + system time (PostgreSQL's backends "
        "included), in ms per file or per MiB. Single-client costs: one request at a time; "
        "the profile's samples are of threads holding the GIL (SQLite's own work and "
        "waits on the network run without it).",
        "",
        *table,
        "",
        f"{f.polls:,} long-polls held by 2 nodes on PostgreSQL (half on each, connected "
        "directly), then one small upload through node 1:",
        "",
        *polls,
        "",
        *cost_rows,
        *profiles,
    ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run scale-out", description=__doc__)
    parser.add_argument("--files", type=int, default=2000, help="small files per shape")
    parser.add_argument("--size-kib", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--polls", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=300, help="single-client requests")
    parser.add_argument("--profile-files", type=int, default=1000, help="uploads profiled")
    parser.add_argument("--no-write", action="store_true", help="print, do not update the doc")
    args = parser.parse_args(argv)
    args.argv = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "scale-out"]
    if args.polls % 2:
        parser.error("--polls must be even: half on each node")
    raise_fd_limit()
    with tempfile.TemporaryDirectory(prefix="dropline-bench-") as tmp:
        text = run(args, Path(tmp))
    print(text)
    if not args.no_write:
        write_section("scale-out", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
