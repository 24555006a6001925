"""Transfers and webhooks benchmark: how soon a webhook follows the change it reports,
how many deliveries a second the dispatcher sends, and how fast a folder copy and a
push transfer move a big file.

The server runs as a child process on 127.0.0.1 (``dropline-server serve``) with
loopback targets allowed; the receiver is a small HTTP server in this process.
Peers in the same run: ``cp`` of the big file, and ``curl -T`` of it to the same
receiver. Results replace the "Transfers and webhooks" section of
``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from bench.server_transfer import MIB, Server, make_big_file, meta, timed, upload_big

ROOT = Path(__file__).resolve().parent.parent
PERFORMANCE_DOC = ROOT / "docs" / "performance.md"
START = "<!-- bench:ops:start -->"
END = "<!-- bench:ops:end -->"
SCOPES = ("files:read", "files:write", "transfers", "webhooks")


class Receiver:
    """Counts webhook deliveries (arrival time by file path) and swallows pushed bodies."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}
        self.count = 0
        self.pushed = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                now = time.time()
                doc = json.loads(body)
                path = doc.get("data", {}).get("entry", {}).get("path")
                with receiver.lock:
                    receiver.count += 1
                    if path:
                        receiver.arrivals.setdefault(path, now)
                self._answer()

            def do_PUT(self) -> None:
                left = int(self.headers.get("Content-Length") or 0)
                while left > 0:
                    chunk = self.rfile.read(min(4 * MIB, left))
                    if not chunk:
                        break
                    left -= len(chunk)
                    receiver.pushed += len(chunk)
                self._answer()

            def _answer(self) -> None:
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_count(self, count: int, timeout: float = 600) -> float:
        deadline = time.monotonic() + timeout
        while self.count < count:
            if time.monotonic() > deadline:
                raise SystemExit(f"bench: {self.count} of {count} deliveries arrived")
            time.sleep(0.005)
        return time.time()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


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
    _key_id, key = identity.create_api_key("bench", "bench@example.com", SCOPES)
    db.dispose()
    return key


def add_events(data_dir: Path, count: int) -> None:
    """``count`` file.uploaded events in the outbox, as the file service would write them."""
    from dropline.server.audit.events import record_event
    from dropline.server.identity.accounts import Identity
    from dropline.server.settings import Settings
    from dropline.server.storage.db import Database

    db = Database(Settings(data_dir=data_dir).database_url)
    tenant_id = Identity(db).tenant_id("bench")
    with db.write() as conn:
        for i in range(count):
            entry = {"path": f"/backlog/f{i:05d}.txt", "type": "file", "size": 1}
            record_event(conn, tenant_id, "file.uploaded", {"entry": entry})
    db.dispose()


def small_upload(client: httpx.Client, path: str, data: bytes) -> None:
    r = client.post(
        "/api/v1/uploads",
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": meta(path=path),
            "Content-Type": "application/offset+octet-stream",
        },
        content=data,
    )
    r.raise_for_status()


def run_transfer(client: httpx.Client, file_id: str, destination: dict[str, Any]) -> float:
    started = time.perf_counter()
    r = client.post("/api/v1/transfers", json={"file_ids": [file_id], "destination": destination})
    r.raise_for_status()
    transfer_id = r.json()["id"]
    while True:
        doc = client.get(f"/api/v1/transfers/{transfer_id}").json()
        if doc["state"] not in ("queued", "running"):
            break
        time.sleep(0.01)
    if doc["state"] != "completed":
        raise SystemExit(f"bench: transfer ended {doc['state']}: {doc['error']}")
    return time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run ops", description=__doc__)
    parser.add_argument("--events", type=int, default=200, help="latency sample (default 200)")
    parser.add_argument("--fanout", type=int, default=10, help="subscriptions for the burst")
    parser.add_argument("--size-mib", type=int, default=1024, help="big file (default 1024)")
    parser.add_argument("--runs", type=int, default=3, help="big file: median of N runs")
    parser.add_argument("--no-write", action="store_true", help="print, do not update the doc")
    args = parser.parse_args(argv)

    os.environ["DROPLINE_ALLOW_PRIVATE_TARGETS"] = "1"  # the receiver is on loopback
    work = Path(tempfile.mkdtemp(prefix="dropline-bench-ops-"))
    receiver = Receiver()
    key = create_key(work / "server")
    server = Server(work / "server")
    rows: list[tuple[str, str, str]] = []
    try:
        client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=600
        )
        hook = {"url": receiver.url, "event_types": ["file.uploaded"]}
        client.post("/api/v1/webhooks", json=hook).raise_for_status()

        # 1. Latency: one upload at a time, from its committed answer to its webhook.
        latencies = []
        for i in range(args.events):
            path = f"/latency/f{i:04d}.txt"
            small_upload(client, path, f"event {i}\n".encode())
            done = time.time()
            while path not in receiver.arrivals:
                time.sleep(0.0005)
            latencies.append((receiver.arrivals[path] - done) * 1000)
        latencies.sort()
        p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
        rows.append(
            (
                f"file.uploaded webhook after the upload's answer, {args.events} in a row",
                f"median {statistics.median(latencies):.1f} ms, p99 {p99:.1f} ms",
                "one subscription, receiver on loopback",
            )
        )

        # 2. Throughput: a backlog of events, each for ``fanout`` subscriptions, left in
        #    the outbox while the server was down; timed from its restart to the last one.
        for _ in range(args.fanout - 1):
            client.post("/api/v1/webhooks", json=hook).raise_for_status()
        client.close()
        server.stop()
        backlog = args.events * 5
        add_events(work / "server", backlog)
        before = receiver.count
        server = Server(work / "server")
        started = time.time()
        finished = receiver.wait_count(before + backlog * args.fanout)
        deliveries = backlog * args.fanout
        rows.append(
            (
                f"{deliveries:,} deliveries ({backlog:,} events x {args.fanout} subscriptions)",
                f"{deliveries / (finished - started):,.0f} deliveries/s",
                "a backlog sent after a restart; each delivery signed and logged",
            )
        )
        client = httpx.Client(
            base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=600
        )

        # 3. A big file: folder copy and push, against cp and curl.
        big = work / "big.bin"
        make_big_file(big, args.size_mib * MIB)
        cp_s = statistics.median(
            timed(["cp", str(big), str(work / f"copy{i}.bin")]) for i in range(args.runs)
        )
        rows.append((f"`cp` of {args.size_mib} MiB", f"{args.size_mib / cp_s:,.0f} MiB/s", "peer"))
        upload_big(server.url, key, big, "/big/big.bin", 64 * MIB, False)
        entry_id = client.get("/api/v1/metadata", params={"path": "/big/big.bin"}).json()["id"]
        copy_s = statistics.median(
            run_transfer(client, entry_id, {"type": "folder", "path": f"/big-copy-{i}"})
            for i in range(args.runs)
        )
        rows.append(
            (
                f"folder copy of {args.size_mib} MiB (POST to completed)",
                f"{args.size_mib / copy_s:,.0f} MiB/s",
                "read, SHA-256 checked, fsynced, published",
            )
        )
        curl = ["curl", "-s", "-o", "/dev/null", "-T", str(big), receiver.url + "/curl"]
        curl_s = statistics.median(timed(curl) for _ in range(args.runs))
        rows.append(
            (
                f"`curl -T` of {args.size_mib} MiB to the receiver",
                f"{args.size_mib / curl_s:,.0f} MiB/s",
                "peer",
            )
        )
        push = {"type": "push", "url": receiver.url + "/{name}"}
        push_s = statistics.median(run_transfer(client, entry_id, push) for _ in range(args.runs))
        rows.append(
            (
                f"push transfer of {args.size_mib} MiB (POST to completed)",
                f"{args.size_mib / push_s:,.0f} MiB/s",
                "PUT to the same receiver",
            )
        )
        client.close()
    finally:
        server.stop()
        receiver.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)

    load = os.getloadavg()[0]
    lines = [
        "## Transfers and webhooks",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} cores (load average "
        f"{load:.2f} at the end), Python {sys.version.split()[0]}, server, client and "
        "receiver on one machine over loopback (`make bench ops`); big-file rows are the "
        f"median of {args.runs} runs.",
        "",
        "| What | Result | Notes |",
        "|---|---:|---|",
        *[f"| {what} | {result} | {note} |" for what, result, note in rows],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(text)
    return 0


def write_section(text: str) -> None:
    doc = PERFORMANCE_DOC.read_text(encoding="utf-8")
    block = f"{START}\n{text}{END}"
    if START in doc and END in doc:
        before, rest = doc.split(START, 1)
        doc = before + block + rest.split(END, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    PERFORMANCE_DOC.write_text(doc, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
