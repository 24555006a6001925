"""The agent's side of the control socket: framing, validation, dispatch and event fan-out.

Operations are answered by a handler the service supplies; this module knows only
the protocol, so it is tested on its own with a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import stat
import struct
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dropline.agent.control import protocol as p

log = logging.getLogger(__name__)

Handler = Callable[[str, Any], Awaitable[dict[str, Any]]]

PROGRESS_INTERVAL = 0.1  # at most 10 progress updates a second per transfer
OUTBOX_LIMIT = 1000  # messages a connection may fall behind before it is dropped
READ_CHUNK = 64 * 1024


class _TooLarge:
    pass


TOO_LARGE = _TooLarge()


async def read_lines(
    reader: asyncio.StreamReader, limit: int = p.MAX_LINE_BYTES
) -> AsyncIterator[bytes | _TooLarge]:
    """Lines without their newline; an over-long line yields ``TOO_LARGE`` once and is skipped.

    StreamReader.readline() cannot skip the rest of an over-long line and go on, so
    the framing is done here: memory stays bounded by ``limit`` whatever a peer sends.
    """
    buf = bytearray()
    scanned = 0
    discarding = False
    while True:
        chunk = await reader.read(READ_CHUNK)
        if not chunk:
            return
        buf += chunk
        while True:
            i = buf.find(b"\n", scanned)
            if i < 0:
                scanned = len(buf)
                if len(buf) > limit:
                    if not discarding:
                        yield TOO_LARGE
                        discarding = True
                    buf.clear()
                    scanned = 0
                break
            line = bytes(buf[:i])
            del buf[: i + 1]
            scanned = 0
            if discarding:
                discarding = False
                continue
            if len(line) > limit:
                yield TOO_LARGE
                continue
            yield line


@dataclass
class ProgressThrottle:
    """Passes a transfer's progress at most once per ``interval``; the last word always passes.

    Pure (the clock is injected): :meth:`offer` says whether to send now, and a held
    update is returned by :meth:`take_due` once its window has passed.
    """

    interval: float = PROGRESS_INTERVAL
    clock: Callable[[], float] = time.monotonic
    _last: dict[str, float] = field(default_factory=dict)
    _held: dict[str, dict[str, Any]] = field(default_factory=dict)

    def offer(self, data: dict[str, Any]) -> bool:
        key = str(data.get("transfer_id"))
        now = self.clock()
        final = data.get("bytes_done") == data.get("bytes_total")
        if final:
            self._held.pop(key, None)
            self._last.pop(key, None)
            return True
        last = self._last.get(key)
        if last is None or now - last >= self.interval:
            self._held.pop(key, None)
            self._last[key] = now
            return True
        self._held[key] = data
        return False

    def next_due(self) -> float | None:
        """Seconds until the earliest held update may go, or None when nothing is held."""
        if not self._held:
            return None
        now = self.clock()
        return max(0.0, min(self._last[k] + self.interval - now for k in self._held))

    def take_due(self) -> list[dict[str, Any]]:
        now = self.clock()
        due = [k for k in self._held if now - self._last[k] >= self.interval]
        out = []
        for key in due:
            out.append(self._held.pop(key))
            self._last[key] = now
        return out


class EventHub:
    """Fans engine and agent events out to every subscribed connection."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._subscribers: set[_Connection] = set()
        self._throttle = ProgressThrottle(clock=clock)
        self._flush: asyncio.TimerHandle | None = None

    def publish(self, name: p.EventName, data: dict[str, Any]) -> None:
        if name == "progress" and not self._throttle.offer(data):
            self._schedule_flush()
            return
        self._deliver(name, data)

    def _deliver(self, name: p.EventName, data: dict[str, Any]) -> None:
        message = p.event_message(name, data)
        for conn in list(self._subscribers):
            if name in conn.events:
                conn.push_event(message)

    def _schedule_flush(self) -> None:
        if self._flush is not None:
            return
        delay = self._throttle.next_due()
        if delay is None:
            return
        loop = asyncio.get_running_loop()
        self._flush = loop.call_later(delay, self._run_flush)

    def _run_flush(self) -> None:
        self._flush = None
        for data in self._throttle.take_due():
            self._deliver("progress", data)
        self._schedule_flush()

    def add(self, conn: _Connection) -> None:
        self._subscribers.add(conn)

    def discard(self, conn: _Connection) -> None:
        self._subscribers.discard(conn)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def close(self) -> None:
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None


class _Connection:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.events: frozenset[str] = frozenset()
        self.outbox: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(OUTBOX_LIMIT)
        self.lagged = False

    async def send(self, message: dict[str, Any]) -> None:
        await self.outbox.put(message)

    def push_event(self, message: dict[str, Any]) -> None:
        if self.lagged:
            return
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            # A subscriber this far behind is stuck; dropping it keeps the agent's
            # memory bounded. The client reconnects and starts from a fresh snapshot.
            self.lagged = True
            log.warning("control client fell %s messages behind; disconnecting it", OUTBOX_LIMIT)
            self.writer.transport.abort()

    async def pump(self) -> None:
        while True:
            message = await self.outbox.get()
            if message is None:
                return
            self.writer.write(p.encode(message))
            await self.writer.drain()


@dataclass
class ServerInfo:
    agent_version: str
    home: str


class ControlServer:
    """Listens on a Unix socket (mode 0600) and answers requests with ``handler``."""

    def __init__(
        self,
        socket_path: Path,
        handler: Handler,
        info: ServerInfo,
        hub: EventHub | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.handler = handler
        self.info = info
        self.hub = hub or EventHub()
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        path = self.socket_path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # The caller holds the single-instance lock, so a socket file here is stale.
        with contextlib.suppress(FileNotFoundError):
            if stat.S_ISSOCK(path.lstat().st_mode):
                path.unlink()
        # The umask makes the socket 0600 from its first moment, not after a chmod.
        old = os.umask(0o177)
        try:
            self._server = await asyncio.start_unix_server(self._on_client, path=str(path))
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        log.info("control socket listening at %s", path)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self.hub.close()
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = _Connection(writer)
        pump = asyncio.create_task(conn.pump())
        try:
            if not _peer_is_us(writer):
                log.warning("refused a control connection from another user")
                return
            await self._serve(reader, conn)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            self.hub.discard(conn)
            with contextlib.suppress(asyncio.QueueFull):
                conn.outbox.put_nowait(None)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pump, timeout=5)
            pump.cancel()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, conn: _Connection) -> None:
        async for line in read_lines(reader):
            if isinstance(line, _TooLarge):
                err = p.ControlError(
                    p.TOO_LARGE, f"a message may be at most {p.MAX_LINE_BYTES} bytes"
                )
                await conn.send(p.error_reply(None, err))
                continue
            if not line.strip():
                continue
            try:
                req = p.parse_request(line)
            except p.ControlError as exc:
                await conn.send(p.error_reply(exc.details.get("id"), exc))
                continue
            reply = await self._dispatch(req, conn)
            await conn.send(reply)
            if req.op == "subscribe" and reply["ok"]:
                # Joined only after the reply is queued, so the reply comes first.
                self.hub.add(conn)

    async def _dispatch(self, req: p.Request, conn: _Connection) -> dict[str, Any]:
        try:
            if req.op == "hello":
                result: dict[str, Any] = {
                    "agent": self.info.agent_version,
                    "protocol": list(p.SUPPORTED_VERSIONS),
                    "pid": os.getpid(),
                    "home": self.info.home,
                }
            elif req.op == "subscribe":
                result = {"status": await self.handler("status", p.NoArgs())}
                names: Iterable[str] = req.args.events or p.ALL_EVENTS
                conn.events = frozenset(names)
                result["events"] = sorted(conn.events)
            else:
                result = await self.handler(req.op, req.args)
            return p.ok_reply(req.id, result)
        except p.ControlError as exc:
            return p.error_reply(req.id, exc)
        except Exception:
            log.exception("control operation %s failed", req.op)
            err = p.ControlError(p.INTERNAL, "the agent hit an internal error; see its log")
            return p.error_reply(req.id, err)


def _peer_is_us(writer: asyncio.StreamWriter) -> bool:
    """The socket is 0600 already; on Linux the peer's uid is checked as well."""
    if not sys.platform.startswith("linux"):
        return True
    sock = writer.get_extra_info("socket")
    if sock is None:
        return True
    creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", creds)
    return uid in (os.getuid(), 0)
