"""A fault-injecting TCP proxy between the agents and the server, on its own thread.

It reads just enough HTTP/1.1 (tests/faults/framing.py) to know which request a byte
belongs to, so a rule can act on the nth ``PATCH /api/v1/uploads`` after 1 MiB of its
body, when a request has been sent whole (the server is working on it), or when the
answer arrives (the server has committed). Actions: reset both sides, stall past the
client's timeouts, drop the answer, or call back (to kill a process at that moment).
It also throttles to a set speed and logs every request with its time and body sizes.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from tests.faults.framing import Head, MessageReader

Point = Literal["body", "sent", "response"]
Action = Literal["reset", "stall", "call"]


@dataclass
class Rule:
    """On the ``nth`` request matching ``method`` ("": any) and ``path_prefix``: at ``point``
    (after ``offset`` bytes of its body, once it is sent whole, or after ``offset`` bytes
    of its answer's body, 0 being before the answer's first byte),
    ``reset`` the connection, ``stall`` it for ``stall_seconds`` and then reset it, or
    ``call`` ``callback`` and carry on."""

    method: str
    path_prefix: str = ""
    nth: int = 1
    point: Point = "sent"
    offset: int = 0
    action: Action = "reset"
    stall_seconds: float = 0.0
    callback: Callable[[], None] | None = None
    seen: int = 0
    fired_at: float | None = None

    def claims(self, head: Head) -> bool:
        if self.fired_at is not None or (self.method and head.method != self.method):
            return False
        if not head.path.startswith(self.path_prefix):
            return False
        self.seen += 1
        return self.seen == self.nth


@dataclass
class Exchange:
    """One request seen by the proxy and what came of it."""

    at: float  # time.monotonic() when its head arrived
    method: str
    path: str
    body: int = 0  # request body bytes forwarded
    status: int = 0  # 0 until (unless) an answer arrived
    answer: int = 0  # response body bytes forwarded


class _Cut(Exception):
    """The connection was cut on purpose."""


@dataclass
class _Conn:
    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    # Requests sent whole and not yet answered, each with its armed response rule.
    waiting: deque[tuple[Exchange, Rule | None]] = field(default_factory=deque)


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.rules: list[Rule] = []
        self.exchanges: list[Exchange] = []
        self.connects: list[float] = []  # every connection a client opened, by time
        self.refused = 0  # connections the server was not there to take
        self.rate: float | None = None  # bytes per second each way; None is full speed
        self._next_free = {"up": 0.0, "down": 0.0}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None

    # -- life ----------------------------------------------------------------------------------

    def start(self) -> int:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._server = loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0, limit=1 << 20)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self.port

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return

        async def close() -> None:
            server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            loop.stop()

        asyncio.run_coroutine_threadsafe(close(), loop)
        if self._thread is not None:
            self._thread.join(10)
        self._loop = self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add(self, rule: Rule) -> Rule:
        self.rules = [*self.rules, rule]  # replaced whole: the proxy thread reads a snapshot
        return rule

    def clear(self) -> None:
        self.rules = []
        self.rate = None

    # -- what was seen -------------------------------------------------------------------------

    def seen(self, method: str = "", prefix: str = "", since: float = 0.0) -> list[Exchange]:
        return [
            e
            for e in list(self.exchanges)
            if e.at >= since and (not method or e.method == method) and e.path.startswith(prefix)
        ]

    def body_bytes(self, method: str, prefix: str, since: float = 0.0) -> int:
        return sum(e.body for e in self.seen(method, prefix, since))

    def answer_bytes(self, method: str, prefix: str, since: float = 0.0) -> int:
        return sum(e.answer for e in self.seen(method, prefix, since))

    def peak_rate(self, start: float, window: float = 10.0) -> int:
        """The most requests that arrived in any one second of ``window`` from ``start``."""
        counts: dict[int, int] = {}
        for e in self.seen(since=start):
            if e.at < start + window:
                second = int(e.at - start)
                counts[second] = counts.get(second, 0) + 1
        return max(counts.values(), default=0)

    # -- the pumps -----------------------------------------------------------------------------

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        self.connects.append(time.monotonic())
        try:
            sreader, swriter = await asyncio.open_connection(
                "127.0.0.1", self.upstream_port, limit=1 << 20
            )
        except OSError:
            self.refused += 1
            _abort(cwriter)
            return
        conn = _Conn(cwriter, swriter)
        up = asyncio.create_task(self._requests(conn, creader))
        down = asyncio.create_task(self._responses(conn, sreader))
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            for writer in (cwriter, swriter):
                _abort(writer)

    async def _requests(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        parser = MessageReader(requests=True)
        current: Exchange | None = None
        armed: Rule | None = None
        while True:
            data = await reader.read(self._read_size())
            if not data:
                return
            pos = 0
            for piece in parser.feed(data):
                if piece.kind == "head" and piece.head is not None:
                    current = Exchange(time.monotonic(), piece.head.method, piece.head.path)
                    self.exchanges.append(current)
                    claimed = [r for r in self.rules if r.claims(piece.head)]  # each counts
                    armed = claimed[0] if claimed else None
                    # In flight from its head on: an early answer (401, 413) belongs to it.
                    answer_rule = armed if armed is not None and armed.point == "response" else None
                    conn.waiting.append((current, answer_rule))
                size = piece.size
                if (
                    piece.kind == "body"
                    and current is not None
                    and armed is not None
                    and armed.point == "body"
                    and current.body + size >= armed.offset
                ):
                    first = armed.offset - current.body
                    await self._send(conn.server, data[pos : pos + first], "up")
                    current.body += first
                    pos += first
                    size -= first
                    rule, armed = armed, None
                    await self._fire(rule)
                await self._send(conn.server, data[pos : pos + size], "up")
                pos += size
                if piece.kind == "body" and current is not None:
                    current.body += size
                # A body shorter than the offset: the fault comes at its end.
                if piece.kind == "end" and armed is not None and armed.point != "response":
                    rule, armed = armed, None
                    await self._fire(rule)

    async def _responses(self, conn: _Conn, reader: asyncio.StreamReader) -> None:
        parser = MessageReader(
            requests=False,
            answering=lambda: conn.waiting[0][0].method if conn.waiting else "GET",
        )
        while True:
            data = await reader.read(self._read_size())
            if not data:
                return
            pos = 0
            for piece in parser.feed(data):
                exchange, rule = conn.waiting[0] if conn.waiting else (None, None)
                size = piece.size
                if exchange is not None and rule is not None and rule.fired_at is None:
                    due = rule.offset == 0 or (
                        piece.kind == "body" and exchange.answer + size >= rule.offset
                    )
                    if due:  # the server has answered (committed): cut the answer here
                        first = max(0, rule.offset - exchange.answer) if rule.offset else 0
                        await self._send(conn.client, data[pos : pos + first], "down")
                        exchange.answer += first if piece.kind == "body" else 0
                        pos += first
                        size -= first
                        await self._fire(rule)
                await self._send(conn.client, data[pos : pos + size], "down")
                pos += size
                if exchange is None:
                    continue
                if piece.kind == "head" and piece.head is not None:
                    exchange.status = piece.head.status
                elif piece.kind == "body":
                    exchange.answer += size
                elif piece.kind == "end":
                    conn.waiting.popleft()
                    if rule is not None and rule.fired_at is None:
                        await self._fire(rule)  # an answer shorter than the offset

    async def _fire(self, rule: Rule) -> None:
        rule.fired_at = time.monotonic()
        if rule.action == "call":
            assert rule.callback is not None
            rule.callback()
            return
        if rule.action == "stall":
            await asyncio.sleep(rule.stall_seconds)
        raise _Cut()

    def _read_size(self) -> int:
        return 64 * 1024 if self.rate is None else max(512, min(16 * 1024, int(self.rate / 8)))

    async def _send(self, writer: asyncio.StreamWriter, data: bytes, way: str) -> None:
        if not data:
            return
        writer.write(data)
        await writer.drain()
        if self.rate:
            now = time.monotonic()
            start = max(now, self._next_free[way])
            self._next_free[way] = start + len(data) / self.rate
            await asyncio.sleep(self._next_free[way] - now)


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a reset (RST), as a cut cable or a dying peer would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
