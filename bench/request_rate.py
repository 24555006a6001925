"""Request-rate benchmark: how many requests per second one agent's credential sends at
its busiest, the figure the server's default per-credential rate limit is sized from.

The server runs as a child process writing JSON access logs; engines with their own keys
upload 10,000 files of 4 KiB, download them into an empty folder, and upload 500 files
just above the batch size (each over tus). Every access record carries its credential id
and time, so the peaks are counted at the server, per credential and per credential and
URL, over sliding one-second windows. Results replace the "request-rate" block of
``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import httpx

from bench.engine_common import engine, idle, load_average, until, write_section
from bench.engine_sync import make_files
from bench.server_transfer import create_key
from dropline.sync.types import FolderSpec


class LoggingServer:
    """``dropline-server serve`` with JSON access logs written to a file."""

    def __init__(self, data_dir: Path, log_path: Path) -> None:
        self.log_path = log_path
        self.log = log_path.open("w")
        env = {**os.environ, "DROPLINE_LOG_FORMAT": "json"}
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "dropline.server.cli", "serve"),
                *("--data-dir", str(data_dir), "--port", "0", "--log-level", "info"),
            ],
            stderr=self.log,
            env=env,
        )
        self.url = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not self.url:
            match = re.search(r"listening on (http\S+)", log_path.read_text())
            self.url = match.group(1).rstrip('",') if match else ""
            time.sleep(0.05)
        if not self.url:
            raise SystemExit("bench: server did not start")
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/healthz").status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise SystemExit("bench: server never became ready")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def access_records(log_path: Path) -> list[dict[str, object]]:
    found = []
    for line in log_path.read_text().splitlines():
        if not line.startswith("{"):
            continue
        doc = json.loads(line)
        if doc.get("logger") == "dropline.server.access" and doc.get("credential_id"):
            found.append(doc)
    return found


def peak_per_second(times: list[float]) -> int:
    """The most requests inside any one-second window (sliding, not aligned)."""
    times = sorted(times)
    best, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def another_key(data_dir: Path) -> str:
    """A second API key of the bench user: a second agent, counted apart."""
    from dropline.server.identity.accounts import Identity
    from dropline.server.settings import Settings
    from dropline.server.storage.db import Database

    db = Database(Settings(data_dir=data_dir).database_url)
    _key_id, key = Identity(db).create_api_key("bench", "bench@example.com")
    db.dispose()
    return key


def phase_figures(
    records: list[dict[str, object]], since: float, until_: float
) -> dict[str, object]:
    """Requests of one phase (by time), the peak second of its busiest credential."""
    inside = [(datetime.fromisoformat(str(r["time"])).timestamp(), r) for r in records]
    inside = [(at, r) for at, r in inside if since <= at <= until_]
    per_credential: dict[str, list[float]] = collections.defaultdict(list)
    # Reads per credential and URL, as the server's per-URL limit counts them (the query
    # is never logged, so listings of different folders count as one here: an upper bound).
    per_endpoint: dict[str, list[float]] = collections.defaultdict(list)
    for at, r in inside:
        per_credential[str(r["credential_id"])].append(at)
        if r["method"] in ("GET", "HEAD"):
            per_endpoint[f"{r['credential_id']} {r['path']}"].append(at)
    routes = collections.Counter(f"{r['method']} {r['route'] or r['path']}" for _at, r in inside)
    statuses = collections.Counter(int(str(r["status"])) for _at, r in inside)
    return {
        "requests": len(inside),
        "peak_per_second": max((peak_per_second(t) for t in per_credential.values()), default=0),
        "endpoint_peak": max((peak_per_second(t) for t in per_endpoint.values()), default=0),
        "mean_per_second": round(len(inside) / max(until_ - since, 0.001), 1),
        "routes": dict(routes.most_common(6)),
        "statuses": dict(statuses),
    }


async def measure(tmp: Path, files: int, tus_files: int) -> dict[str, dict[str, object]]:
    """Three phases, each a fresh engine with its own key: small files up, the same files
    down into an empty folder, and files just above the batch size up over tus."""
    data = tmp / "server-data"
    key = create_key(data)
    srv = LoggingServer(data, tmp / "server.log")
    spans: dict[str, tuple[float, float, float]] = {}
    try:
        up = tmp / "up"
        make_files(up / "docs", files, 4096)
        started, wall = time.monotonic(), time.time()
        async with engine(tmp / "home-up", srv.url, key, [FolderSpec(up, "/bench")]) as eng:
            await until(lambda: eng.counters().files_uploaded >= files, 1800, "the upload")
            await until(lambda: idle(eng), 120, "idle after the upload")
        spans["small files up"] = (wall, time.time(), time.monotonic() - started)

        down = tmp / "down"
        down.mkdir()
        started, wall = time.monotonic(), time.time()
        key2 = another_key(data)
        async with engine(tmp / "home-down", srv.url, key2, [FolderSpec(down, "/bench")]) as eng:
            await until(
                lambda: (
                    sum(1 for _ in (down / "docs").glob("*.bin")) >= files
                    if (down / "docs").is_dir()
                    else False
                ),
                1800,
                "the download",
            )
            await until(lambda: idle(eng), 120, "idle after the download")
        spans["small files down"] = (wall, time.time(), time.monotonic() - started)

        tus = tmp / "tus"
        make_files(tus / "docs", tus_files, 1024 * 1024 + 4096)
        started, wall = time.monotonic(), time.time()
        key3 = another_key(data)
        async with engine(tmp / "home-tus", srv.url, key3, [FolderSpec(tus, "/tus")]) as eng:
            await until(lambda: eng.counters().files_uploaded >= tus_files, 1800, "tus uploads")
            await until(lambda: idle(eng), 120, "idle after the tus uploads")
        spans["1 MiB + 4 KiB files up (tus)"] = (wall, time.time(), time.monotonic() - started)
    finally:
        srv.stop()
    records = access_records(srv.log_path)
    found: dict[str, dict[str, object]] = {}
    for name, (since, until_, seconds) in spans.items():
        found[name] = {"seconds": round(seconds, 1), **phase_figures(records, since, until_)}
    return found


def report(found: dict[str, dict[str, object]], files: int, tus_files: int) -> str:
    rows = []
    for name, figures in found.items():
        routes = figures["routes"]
        assert isinstance(routes, dict)
        busiest = ", ".join(f"`{route}` {count:,}" for route, count in routes.items())
        rows.append(
            f"| {name} | {figures['seconds']} s | {figures['requests']:,} | "
            f"{figures['mean_per_second']} | {figures['peak_per_second']} | "
            f"{figures['endpoint_peak']} | "
            f"{figures['statuses']} | {busiest} |"
        )
    lines = [
        "## Requests per credential",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `python -m bench.run request-rate` on 2 cores "
        f"(load average {load_average()} at the end; the machine is shared). A server child "
        "process writes JSON access logs; an engine with its own API key runs each phase "
        f"({files:,} files of 4 KiB up, the same files down into an empty folder, "
        f"{tus_files:,} files of 1 MiB + 4 KiB up, just above the batch size so each takes "
        "the tus path); requests are counted from the logs per credential, the peak in "
        "sliding one-second windows, for all its requests and for its reads (GET, HEAD) of "
        "any one URL. "
        "The default rate limits per credential and per credential and URL are sized from "
        "the highest peaks (docs/security.md).",
        "",
        "| Phase | Time | Requests | Mean/s | Peak/s | Peak/s, one URL read | Statuses | Routes |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.request_rate", description=__doc__)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--tus-files", type=int, default=500)
    parser.add_argument("--no-write", action="store_true", help="print, do not update the doc")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="dropline-bench-") as tmp:
        found = asyncio.run(measure(Path(tmp), args.files, args.tus_files))
    text = report(found, args.files, args.tus_files)
    print(text)
    if not args.no_write:
        write_section("request-rate", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
