"""Long-poll fan-out across nodes: many change-feed long-polls held, split evenly over the
nodes by connecting to each directly, then one change written through node 1 and the time
until each long-poll answers with it.

Each long-poll is a raw HTTP/1.1 request on its own connection (asyncio streams: at a
thousand connections an HTTP client's pool bookkeeping costs more than the requests), and
its answer is timed when the status line arrives.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from bench.scale_out_stack import Shape, cpu_by_role, cpu_spent
from bench.server_transfer import meta

# Longer than opening every long-poll and the change takes; the server caps it at 120 s.
POLL_TIMEOUT = 110


@dataclass
class Answer:
    node: int
    status: int = 0
    at: float = 0.0  # time.perf_counter() when the status line arrived
    changes: int = 0


@dataclass
class FanOut:
    polls: int
    held: list[float]  # dropline_longpolls_active per node, just before the change
    opened_seconds: float
    write_seconds: float  # the write's own round trip (its commit is inside it)
    answers: list[Answer]
    latencies: list[float]  # seconds from the write's answer to each long-poll's
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def answered(self) -> int:
        return sum(1 for a in self.answers if a.status == 200 and a.changes)


async def _long_poll(url: str, node: int, key: str, cursor: str, answer: Answer) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(
            (
                f"GET /api/v1/changes/wait?cursor={cursor}&timeout={POLL_TIMEOUT} HTTP/1.1\r\n"
                f"Host: {host}:{port}\r\nAuthorization: Bearer {key}\r\n"
                "Connection: close\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        status_line = await reader.readline()
        answer.at = time.perf_counter()
        answer.status = int(status_line.split()[1]) if status_line else 0
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        body = await reader.readexactly(length) if length else await reader.read()
        if answer.status == 200:
            answer.changes = len(json.loads(body)["changes"])
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


def longpolls_held(url: str) -> float:
    text = httpx.get(url + "/metrics", timeout=30).text
    for line in text.splitlines():
        if line.startswith("dropline_longpolls_active "):
            return float(line.split()[1])
    raise SystemExit(f"bench: no dropline_longpolls_active in {url}/metrics")


async def fan_out(shape: Shape, polls: int, answer_within: float = 30.0) -> FanOut:
    """Hold ``polls`` long-polls over ``shape``'s nodes (round robin by connection), then
    upload one small file through node 1 and time each long-poll's answer."""
    urls = shape.node_urls
    headers = {"Authorization": f"Bearer {shape.key}", "Tus-Resumable": "1.0.0"}
    async with httpx.AsyncClient(base_url=urls[0], headers=headers, timeout=60) as http:
        cursor = (await http.get("/api/v1/changes/latest-cursor")).json()["cursor"]
        answers = [Answer(node=i % len(urls)) for i in range(polls)]
        began = time.perf_counter()
        tasks = []
        for answer in answers:
            tasks.append(
                asyncio.create_task(
                    _long_poll(urls[answer.node], answer.node, shape.key, cursor, answer)
                )
            )
            await asyncio.sleep(0.002)  # clients come online over a moment, not one instant
        deadline = time.monotonic() + 120
        held = [0.0] * len(urls)
        while time.monotonic() < deadline:
            held = [await asyncio.to_thread(longpolls_held, u) for u in urls]
            if sum(held) >= polls or any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.2)
        opened = time.perf_counter() - began
        cpu0 = cpu_by_role(shape)
        data = b"the one change every long-poll waits for"
        sent = time.perf_counter()
        written = await http.post(
            "/api/v1/uploads",
            headers={
                "Upload-Length": str(len(data)),
                "Upload-Metadata": meta(
                    path="/fan-out/change.txt", sha256=hashlib.sha256(data).hexdigest()
                ),
                "Content-Type": "application/offset+octet-stream",
            },
            content=data,
        )
        acknowledged = time.perf_counter()
        if written.status_code != 201:
            raise SystemExit(f"bench: the change answered {written.status_code}: {written.text}")
        _done, pending = await asyncio.wait(tasks, timeout=answer_within)
        cpu = cpu_spent(cpu0, cpu_by_role(shape))
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    latencies = sorted(
        a.at - acknowledged for a in answers if a.status == 200 and a.changes and a.at
    )
    return FanOut(polls, held, opened, acknowledged - sent, answers, latencies, cpu)
