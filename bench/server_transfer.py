"""Server layer benchmark: 1 GiB up (tus, chunked; a bare client and the SDK's
``upload_file``) and down, and 10,000 small uploads (one POST each, and in batches).

The server runs as a child process on 127.0.0.1 (``dropline-server serve``); the
client here hashes everything it sends and receives, as the agent does. Peers in
the same run: ``sha256sum`` and ``cp`` over the same data, and hashlib itself.
Results replace the "Server layer" section of ``docs/performance.md``; ``--before``
adds an earlier run's rates (its ``--json-out``) as a column beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

MIB = 1024 * 1024
GIB = 1024 * MIB
ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
START = "<!-- bench:server:start -->"
END = "<!-- bench:server:end -->"
READ = 4 * MIB
PARTS = ("peers", "big", "sdk", "down", "me", "small", "batch")


@dataclass
class Row:
    what: str
    seconds: float
    amount: float  # bytes, or files
    unit: str  # "MiB/s" or "files/s"
    server_cpu: float | None = None
    client_cpu: float | None = None
    note: str = ""

    @property
    def rate(self) -> float:
        return (self.amount / MIB if self.unit == "MiB/s" else self.amount) / self.seconds

    @property
    def rate_text(self) -> str:
        return f"{self.rate:,.0f} {self.unit}"


# -- test data and the server ----------------------------------------------------


def make_big_file(path: Path, size: int) -> None:
    rng = random.Random(0x0D7)
    with path.open("wb") as handle:
        written = 0
        while written < size:
            n = min(16 * MIB, size - written)
            handle.write(rng.randbytes(n))
            written += n


def make_small_files(folder: Path, count: int, size: int) -> list[Path]:
    rng = random.Random(0x5A11)
    paths = []
    for i in range(count):
        sub = folder / f"d{i % 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"f{i:05d}.bin"
        # Unique contents per file: a counter prefix plus random bytes.
        path.write_bytes(i.to_bytes(8, "big") + rng.randbytes(size - 8))
        paths.append(path)
    return paths


def create_key(data_dir: Path) -> str:
    from dropline.server.identity.accounts import Identity
    from dropline.server.settings import Settings
    from dropline.server.storage.db import Database
    from dropline.server.storage.migrations import migrate

    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(Settings(data_dir=data_dir).database_url)
    migrate(db)
    identity = Identity(db)
    identity.create_tenant("bench")
    identity.create_user("bench", "bench@example.com", None)
    _key_id, key = identity.create_api_key("bench", "bench@example.com")
    db.dispose()
    return key


class Server:
    def __init__(self, data_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dropline.server.cli",
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                "0",
                "--log-level",
                "warning",
            ],
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stderr is not None
        self.url = ""
        for line in self.proc.stderr:
            match = re.search(r"listening on (\S+)", line)
            if match:
                self.url = match.group(1)
                break
        if not self.url:
            raise SystemExit("bench: server did not start")
        self._drain = threading.Thread(target=self._relay, daemon=True)
        self._drain.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise SystemExit("bench: server never became ready")

    def _relay(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            sys.stderr.write("server: " + line)

    def cpu(self) -> float:
        """User+system CPU seconds the server process has used so far."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        return (int(fields[11]) + int(fields[12])) / ticks

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        self._drain.join(timeout=5)
        if self.proc.stderr is not None:
            self.proc.stderr.close()


@contextlib.contextmanager
def fresh_server(work: Path, name: str) -> Iterator[tuple[Server, str]]:
    """A server with a data directory of its own, removed afterwards: the page cache a
    part's gigabytes took is given back, so no later part pays for reclaiming it (that
    showed as twice the server CPU for the same upload late in a run)."""
    data_dir = work / name
    key = create_key(data_dir)
    server = Server(data_dir)
    try:
        yield server, key
    finally:
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


def client_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def drop_cache(path: Path) -> None:
    """Not a cold-cache test: read once so every contender starts from a warm page cache."""
    with path.open("rb", buffering=0) as handle:
        while handle.read(16 * MIB):
            pass


# -- peers --------------------------------------------------------------------------


def timed(cmd: Sequence[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def hashlib_seconds(path: Path) -> float:
    start = time.perf_counter()
    hasher = hashlib.sha256()
    with path.open("rb", buffering=0) as handle:
        while chunk := handle.read(READ):
            hasher.update(chunk)
    return time.perf_counter() - start


# -- the transfers --------------------------------------------------------------------


def meta(**values: str) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in values.items())


def upload_big(
    url: str, key: str, path: Path, target: str, chunk: int, chunk_checksum: bool
) -> tuple[float, str, str]:
    """tus upload in ``chunk``-sized PATCHes, hashing while sending.

    Returns (seconds, client sha256, server sha256).
    """
    size = path.stat().st_size
    hasher = hashlib.sha256()
    headers = {"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"}
    with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
        start = time.perf_counter()
        created = client.post(
            "/api/v1/uploads",
            headers={"Upload-Length": str(size), "Upload-Metadata": meta(path=target)},
        )
        created.raise_for_status()
        location = created.headers["location"]
        with path.open("rb", buffering=0) as handle:
            offset = 0
            while offset < size:
                n = min(chunk, size - offset)
                patch_headers = {
                    "Upload-Offset": str(offset),
                    "Content-Type": "application/offset+octet-stream",
                    "Content-Length": str(n),
                }
                body: bytes | Iterator[bytes]
                if chunk_checksum:
                    # The header goes before the bytes: this chunk is hashed twice on
                    # the client (once for its checksum, once for the whole file).
                    data = handle.read(n)
                    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
                    patch_headers["Upload-Checksum"] = f"sha256 {digest}"
                    hasher.update(data)
                    body = data
                else:
                    body = _pieces(handle, n, hasher)
                r = client.patch(location, headers=patch_headers, content=body)
                if r.status_code != 204:
                    raise SystemExit(f"bench: PATCH answered {r.status_code}: {r.text}")
                offset += n
        seconds = time.perf_counter() - start
        entry = client.get(f"/api/v1/files/{r.headers['dropline-entry-id']}").json()
    return seconds, hasher.hexdigest(), entry["sha256"]


def _pieces(handle: object, n: int, hasher: object) -> Iterator[bytes]:
    remaining = n
    while remaining > 0:
        piece = handle.read(min(READ, remaining))  # type: ignore[attr-defined]
        hasher.update(piece)  # type: ignore[attr-defined]
        remaining -= len(piece)
        yield piece


def download_big(url: str, key: str, entry_id: str, dest: Path | None) -> tuple[float, str]:
    """Download while hashing; into ``dest`` (written, fsynced) when given."""
    hasher = hashlib.sha256()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=headers, timeout=600) as client:
        start = time.perf_counter()
        with client.stream("GET", f"/api/v1/files/{entry_id}/content") as r:
            if dest is None:
                for piece in r.iter_raw():
                    hasher.update(piece)
            else:
                with dest.open("wb", buffering=0) as out:
                    for piece in r.iter_raw():
                        hasher.update(piece)
                        out.write(piece)
                    os.fsync(out.fileno())
        seconds = time.perf_counter() - start
    return seconds, hasher.hexdigest()


async def get_me(url: str, key: str, count: int, concurrency: int) -> float:
    """The lightest authenticated request: the request stack's ceiling for small uploads."""
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as c:

        async def worker(n: int) -> None:
            for _ in range(n):
                (await c.get("/api/v1/me")).raise_for_status()

        start = time.perf_counter()
        await asyncio.gather(*(worker(count // concurrency) for _ in range(concurrency)))
        return time.perf_counter() - start


async def upload_small(url: str, key: str, files: list[Path], concurrency: int) -> float:
    """Each file is one POST (creation-with-upload) with its sha256 declared."""
    payloads = [(f"/small/{p.parent.name}/{p.name}", p.read_bytes()) for p in files]
    headers = {"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
    for item in payloads:
        queue.put_nowait(item)
    failures: collections.Counter[int] = collections.Counter()

    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60) as c:

        async def worker() -> None:
            while True:
                try:
                    target, data = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                digest = hashlib.sha256(data).hexdigest()
                r = await c.post(
                    "/api/v1/uploads",
                    headers={
                        "Upload-Length": str(len(data)),
                        "Upload-Metadata": meta(path=target, sha256=digest),
                        "Content-Type": "application/offset+octet-stream",
                    },
                    content=data,
                )
                if r.status_code != 201:
                    failures[r.status_code] += 1

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    if failures:
        raise SystemExit(f"bench: small uploads failed: {dict(failures)}")
    return seconds


async def upload_batches(
    url: str, key: str, files: list[Path], batch_size: int, concurrency: int
) -> tuple[float, int]:
    """The SDK's ``upload_batch``: ``batch_size`` files a request, ``concurrency`` requests
    in flight, sha256 known up front as the engine knows it from its scan. Returns
    (seconds, files published)."""
    from dropline.sdk.batch import BatchItem, upload_batch
    from dropline.sdk.client import ApiKeyCredentials, DroplineClient
    from dropline.sdk.models import Entry

    items = []
    for p in files:
        data = p.read_bytes()
        items.append(
            BatchItem(
                f"/batched/{p.parent.name}/{p.name}",
                data,
                sha256=hashlib.sha256(data).hexdigest(),
                mtime=p.stat().st_mtime,
            )
        )
    async with DroplineClient(
        url, ApiKeyCredentials(key), timeout=120, max_connections=concurrency
    ) as client:
        start = time.perf_counter()
        outcomes = await upload_batch(
            client,
            items,
            files_per_request=batch_size,
            bytes_per_request=64 * MIB,
            concurrency=concurrency,
        )
        seconds = time.perf_counter() - start
    failed = [o for o in outcomes if not isinstance(o, Entry)]
    if failed:
        raise SystemExit(f"bench: {len(failed)} batch uploads failed, first: {failed[0]!r}")
    return seconds, len(outcomes)


# -- profile ------------------------------------------------------------------------------


def start_profile(pid: int, out: Path) -> subprocess.Popen[bytes] | None:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        return None
    return subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(out),
            "--threads",
            "--nonblocking",
            "--gil",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def stop_profile(proc: subprocess.Popen[bytes] | None) -> None:
    if proc is not None and proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)
        proc.wait(timeout=60)


def summarize_profile(raw: Path, top: int = 8) -> list[tuple[str, float]]:
    """Share of samples by the innermost frame ("self" time), idle waits left out."""
    counts: collections.Counter[str] = collections.Counter()
    if not raw.exists():
        return []
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        leaf = stack.rsplit(";", 1)[-1]
        name = re.sub(r" \(.*?/(site-packages|lib/python3\.\d+)/", " (", leaf)
        name = re.sub(r"\s*\((.*?):\d+\)", r" (\1)", name)
        if any(
            idle in name
            for idle in ("select", "epoll", "_worker (concurrent", "wait (threading", "poll")
        ):
            continue
        counts[name] += int(n)
    busy = sum(counts.values()) or 1
    return [(name, 100.0 * n / busy) for name, n in counts.most_common(top)]


# -- report ---------------------------------------------------------------------------------


def fmt_cpu(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def render(
    rows: list[Row],
    profiles: list[tuple[str, list[tuple[str, float]]]],
    meta_line: str,
    before: dict[str, str] | None = None,
) -> str:
    """The section's Markdown: the table (with a column of an earlier run's rates when
    ``before`` maps row names to them) and each profile under its heading."""
    head = "| What | Time (s) | Rate |" + (" Before |" if before else "")
    rule = "|---|---:|---:|" + ("---:|" if before else "")
    lines = [
        "## Server layer",
        "",
        meta_line,
        "",
        head + " Server CPU (s) | Client CPU (s) | Notes |",
        rule + "---:|---:|---|",
    ]
    for row in rows:
        earlier = f" {before.get(row.what, '')} |" if before else ""
        lines.append(
            f"| {row.what} | {row.seconds:.2f} | {row.rate_text} |{earlier} "
            f"{fmt_cpu(row.server_cpu)} | {fmt_cpu(row.client_cpu)} | {row.note} |"
        )
    for heading, profile in profiles:
        if profile:
            lines += ["", heading, ""]
            lines += [f"- {share:.0f}% `{name}`" for name, share in profile]
    return "\n".join(lines) + "\n"


def write_section(text: str) -> None:
    doc = (
        PERFORMANCE_DOC.read_text(encoding="utf-8")
        if PERFORMANCE_DOC.exists()
        else (
            "# Performance\n\nBenchmarks run with `make bench` on the project's 2-core machines; "
            "each table compares against peers measured in the same run.\n"
        )
    )
    block = f"{START}\n{text}{END}"
    if START in doc and END in doc:
        before, rest = doc.split(START, 1)
        after = rest.split(END, 1)[1]
        doc = before + block + after
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    PERFORMANCE_DOC.write_text(doc, encoding="utf-8")


# -- main -----------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run server", description=__doc__)
    parser.add_argument("--size-mib", type=int, default=1024, help="big file size (default 1024)")
    parser.add_argument("--chunk-mib", type=int, default=64, help="tus PATCH size (default 64)")
    parser.add_argument("--small", type=int, default=10_000, help="small files (default 10000)")
    parser.add_argument("--small-kib", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3, help="big transfers: median of N runs")
    parser.add_argument("--no-write", action="store_true", help="print, do not update the doc")
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument(
        "--profile-dir", type=Path, default=None, help="keep py-spy's raw profiles here"
    )
    parser.add_argument("--batch-files", type=int, default=200, help="files per batch request")
    parser.add_argument("--batch-concurrency", type=int, default=4)
    parser.add_argument(
        "--json-out", type=Path, default=None, help="also write the rows' rates as JSON here"
    )
    parser.add_argument(
        "--before",
        type=Path,
        default=None,
        help="an earlier run's --json-out: its rates become a 'Before' column",
    )
    parser.add_argument(
        "--only",
        default=",".join(PARTS),
        help=f"comma-separated parts to run (default all: {','.join(PARTS)}); "
        "a partial run never writes the doc",
    )
    args = parser.parse_args(argv)
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    if not parts <= set(PARTS):
        parser.error(f"unknown part(s): {', '.join(sorted(parts - set(PARTS)))}")
    if parts != set(PARTS):
        args.no_write = True

    work = Path(tempfile.mkdtemp(prefix="dropline-bench-", dir=args.work_dir))
    size = args.size_mib * MIB
    rows: list[Row] = []
    profiles = args.profile_dir or work
    profiles.mkdir(parents=True, exist_ok=True)
    profile_raw = profiles / "profile-big.txt"
    profile_small_raw = profiles / "profile-small.txt"
    profile_batch_raw = profiles / "profile-batch.txt"
    try:
        big = work / "big.bin"
        needs_big = bool(parts & {"peers", "big", "down"})
        print(
            f"generating {args.size_mib if needs_big else 0} MiB and {args.small} small files "
            f"in {work}",
            file=sys.stderr,
        )
        if needs_big:
            make_big_file(big, size)
            drop_cache(big)
        small_files = make_small_files(work / "small", args.small, args.small_kib * 1024)

        if "peers" in parts:
            rows += peer_rows(work, big, size, args.small, args.runs)

        if parts & {"big", "down"}:
            with fresh_server(work, "server-big") as (server, key):
                if "big" in parts:
                    rows += big_upload_rows(server, key, big, size, args, profile_raw)
                if "down" in parts:
                    rows += download_rows(server, key, big, size, args, uploaded="big" in parts)
        if "sdk" in parts:
            with fresh_server(work, "server-sdk") as (server, key):
                rows += sdk_upload_rows(server, key, big, size, args)

        if parts & {"me", "small"}:
            with fresh_server(work, "server-small") as (server, key):
                if "me" in parts:
                    me_count = 2000
                    s0, c0 = server.cpu(), client_cpu()
                    seconds = asyncio.run(get_me(server.url, key, me_count, args.concurrency))
                    rows.append(
                        Row(
                            f"{me_count:,} authenticated `GET /api/v1/me`, "
                            f"{args.concurrency} concurrent",
                            seconds,
                            me_count,
                            "requests/s",
                            server.cpu() - s0,
                            client_cpu() - c0,
                            note="the request stack's ceiling",
                        )
                    )
                if "small" in parts:
                    profiler = start_profile(server.proc.pid, profile_small_raw)
                    s0, c0 = server.cpu(), client_cpu()
                    seconds = asyncio.run(
                        upload_small(server.url, key, small_files, args.concurrency)
                    )
                    stop_profile(profiler)
                    rows.append(
                        Row(
                            f"{args.small:,} uploads of {args.small_kib} KiB, "
                            f"{args.concurrency} concurrent, one POST each",
                            seconds,
                            args.small,
                            "files/s",
                            server.cpu() - s0,
                            client_cpu() - c0,
                            note="fsync per file",
                        )
                    )

        if "batch" in parts:
            with fresh_server(work, "server-batch") as (server, key):
                profiler = start_profile(server.proc.pid, profile_batch_raw)
                s0, c0 = server.cpu(), client_cpu()
                seconds, count = asyncio.run(
                    upload_batches(
                        server.url,
                        key,
                        small_files,
                        args.batch_files,
                        args.batch_concurrency,
                    )
                )
                stop_profile(profiler)
                rows.append(
                    Row(
                        f"{args.small:,} uploads of {args.small_kib} KiB, batches of "
                        f"{args.batch_files}, {args.batch_concurrency} concurrent "
                        "(SDK upload_batch)",
                        seconds,
                        count,
                        "files/s",
                        server.cpu() - s0,
                        client_cpu() - c0,
                        note="fsync per file, one transaction and one directory fsync per batch",
                    )
                )

        load = Path("/proc/loadavg").read_text().split()[0]
        meta_line = (
            f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores (load average {load} "
            "at the end: the machine is shared with other work), Python "
            f"{sys.version.split()[0]}, server and client on the same machine over loopback, "
            f"median of {args.runs} runs for the big transfers; page cache warm."
        )
        gil = "(py-spy, share of GIL-holding samples by innermost frame)"
        text = render(
            rows,
            [
                (
                    f"Where the server's time goes during the big upload {gil}:",
                    summarize_profile(profile_raw),
                ),
                (
                    "During the small uploads, one POST each:",
                    summarize_profile(profile_small_raw),
                ),
                ("During the batch uploads:", summarize_profile(profile_batch_raw)),
            ],
            meta_line,
            json.loads(args.before.read_text()) if args.before else None,
        )
        if args.json_out:
            args.json_out.write_text(json.dumps({r.what: r.rate_text for r in rows}, indent=1))
        print(text)
        if not args.no_write:
            write_section(text)
            print(f"updated {PERFORMANCE_DOC}", file=sys.stderr)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def peer_rows(work: Path, big: Path, size: int, small: int, runs: int) -> list[Row]:
    rows: list[Row] = []
    sha_s = statistics.median(timed(["sha256sum", str(big)]) for _ in range(runs))
    rows.append(Row("`sha256sum` of the big file", sha_s, size, "MiB/s", note="peer"))
    hl_s = statistics.median(hashlib_seconds(big) for _ in range(runs))
    rows.append(Row("hashlib SHA-256, one core", hl_s, size, "MiB/s", note="peer: the ceiling"))
    cp_runs = [timed(["cp", str(big), str(work / f"copy{i}.bin")]) for i in range(runs)]
    rows.append(Row("`cp` of the big file", statistics.median(cp_runs), size, "MiB/s", note="peer"))
    for i in range(runs):
        (work / f"copy{i}.bin").unlink()
    blocks = max(1, size // (16 * MIB))
    dd_cmd = [
        "dd",
        "if=/dev/zero",
        f"of={work / 'dd.bin'}",
        "bs=16M",
        f"count={blocks}",
        "conv=fsync",
        "status=none",
    ]
    dd_s = statistics.median(timed(dd_cmd) for _ in range(runs))
    (work / "dd.bin").unlink()
    rows.append(
        Row(
            "`dd conv=fsync`, same size",
            dd_s,
            blocks * 16 * MIB,
            "MiB/s",
            note="peer: the disk's durable write speed",
        )
    )
    cp_small = timed(["cp", "-r", str(work / "small"), str(work / "small-copy")])
    rows.append(Row(f"`cp -r` of {small:,} small files", cp_small, small, "files/s", note="peer"))
    return rows


def big_upload_rows(
    server: Server, key: str, big: Path, size: int, args: argparse.Namespace, profile_raw: Path
) -> list[Row]:
    rows: list[Row] = []
    for label, checksum in (
        ("whole-file hash both ends", False),
        ("+ sha256 Upload-Checksum per chunk", True),
    ):
        results = []
        for run in range(args.runs):
            profiler = (
                start_profile(server.proc.pid, profile_raw) if (run == 0 and not checksum) else None
            )
            s0, c0 = server.cpu(), client_cpu()
            seconds, mine, theirs = upload_big(
                server.url,
                key,
                big,
                f"/big/run-{label[:5]}-{run}.bin",
                args.chunk_mib * MIB,
                checksum,
            )
            stop_profile(profiler)
            if mine != theirs:
                raise SystemExit("bench: the server's sha256 differs from the client's")
            results.append((seconds, server.cpu() - s0, client_cpu() - c0))
        seconds, s_cpu, c_cpu = sorted(results)[len(results) // 2]
        rows.append(
            Row(
                f"{args.size_mib} MiB up, tus, {args.chunk_mib} MiB PATCHes, {label}",
                seconds,
                size,
                "MiB/s",
                s_cpu,
                c_cpu,
            )
        )
    return rows


def sdk_upload_rows(
    server: Server, key: str, big: Path, size: int, args: argparse.Namespace
) -> list[Row]:
    """The SDK's ``upload_file``: 16 MiB chunks, each with a sha256 ``Upload-Checksum``."""
    from dropline.sdk.client import ApiKeyCredentials, DroplineClient
    from dropline.sdk.resumable import upload_file

    expected = hashlib.sha256(big.read_bytes()).hexdigest()

    async def once(target: str, known: bool) -> float:
        async with DroplineClient(server.url, ApiKeyCredentials(key), timeout=600) as client:
            start = time.perf_counter()
            entry = await upload_file(client, big, target, sha256=expected if known else None)
            seconds = time.perf_counter() - start
        if entry.sha256 != expected:
            raise SystemExit("bench: the server's sha256 differs from the file's")
        return seconds

    rows: list[Row] = []
    for label, known in (
        ("sha256 given (as the engine knows it)", True),
        ("sha256 not given", False),
    ):
        results = []
        for run in range(args.runs):
            s0, c0 = server.cpu(), client_cpu()
            seconds = asyncio.run(once(f"/sdk/{int(known)}-{run}.bin", known))
            results.append((seconds, server.cpu() - s0, client_cpu() - c0))
        seconds, s_cpu, c_cpu = sorted(results)[len(results) // 2]
        rows.append(
            Row(
                f"{args.size_mib} MiB up, SDK upload_file, 16 MiB chunks with sha256 "
                f"Upload-Checksum, {label}",
                seconds,
                size,
                "MiB/s",
                s_cpu,
                c_cpu,
                note="each byte read once",
            )
        )
    return rows


def download_rows(
    server: Server, key: str, big: Path, size: int, args: argparse.Namespace, uploaded: bool
) -> list[Row]:
    if not uploaded:
        upload_big(server.url, key, big, "/big/run-whole-0.bin", args.chunk_mib * MIB, False)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}) as c:
        entry_id = c.get("/api/v1/metadata", params={"path": "/big/run-whole-0.bin"}).json()["id"]
    expected = hashlib.sha256(big.read_bytes()).hexdigest()
    rows: list[Row] = []
    for label, write in (
        ("client hashing", False),
        ("client hashing and writing (fsync)", True),
    ):
        results = []
        for run in range(args.runs):
            s0, c0 = server.cpu(), client_cpu()
            dest = big.with_name(f"down{run}.bin") if write else None
            seconds, digest = download_big(server.url, key, entry_id, dest)
            if digest != expected:
                raise SystemExit("bench: downloaded bytes differ")
            results.append((seconds, server.cpu() - s0, client_cpu() - c0))
            if dest is not None:
                dest.unlink()
        seconds, s_cpu, c_cpu = sorted(results)[len(results) // 2]
        rows.append(Row(f"{args.size_mib} MiB down, {label}", seconds, size, "MiB/s", s_cpu, c_cpu))
    return rows


if __name__ == "__main__":
    sys.exit(main())
