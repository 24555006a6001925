"""Clients of the control socket: a blocking one for worker threads and the CLI, an asyncio one.

Both speak protocol version 1 and raise :class:`ControlError` for error replies and
:class:`AgentNotRunning` when nothing answers at the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from dropline.agent.control import protocol as p

REPLY_LIMIT = 64 * 1024 * 1024  # replies are larger than requests (a page of history)


class AgentNotRunning(p.ControlError):
    def __init__(self, socket_path: Path) -> None:
        super().__init__(
            p.UNAVAILABLE,
            f"the agent is not running (nothing answers at {socket_path}); "
            "start it with 'dropline-agent run'",
        )
        self.socket_path = socket_path


class ConnectionLost(p.ControlError):
    def __init__(self) -> None:
        super().__init__(p.UNAVAILABLE, "the agent closed the connection")


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    data: dict[str, Any]


def _decode_message(line: bytes) -> dict[str, Any]:
    obj = json.loads(line.decode("utf-8"))
    if not isinstance(obj, dict):
        raise p.ControlError(p.BAD_JSON, "the agent sent something that is not a message")
    return obj


def _result(message: dict[str, Any]) -> dict[str, Any]:
    if message.get("ok"):
        return cast(dict[str, Any], message.get("result", {}))
    error = message.get("error") or {}
    details = {k: v for k, v in error.items() if k not in ("code", "message")}
    raise p.ControlError(
        str(error.get("code", p.INTERNAL)), str(error.get("message", "unknown error")), **details
    )


class ControlClient:
    """Blocking client; one request at a time per instance (a lock makes it thread-safe).

    Usable from a Qt worker thread: no event loop, plain socket with a timeout.
    """

    def __init__(self, socket_path: Path, timeout: float = 30.0) -> None:
        self.socket_path = Path(socket_path)
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._file: Any = None
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(str(self.socket_path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            sock.close()
            raise AgentNotRunning(self.socket_path) from None
        except OSError:
            sock.close()
            raise
        self._sock = sock
        self._file = sock.makefile("rb")

    def close(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = None
        self._file = None

    def call(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one request and wait for its reply; :class:`ControlError` on an error reply."""
        with self._lock:
            if self._sock is None:
                self._connect()
            assert self._sock is not None
            req_id = next(self._ids)
            try:
                self._sock.sendall(p.encode(p.request(req_id, op, args)))
                while True:
                    line = self._file.readline(REPLY_LIMIT)
                    if not line:
                        raise ConnectionLost()
                    message = _decode_message(line)
                    if message.get("id") == req_id and "ok" in message:
                        return _result(message)
            except TimeoutError:
                self.close()
                raise p.ControlError(
                    p.UNAVAILABLE, f"the agent did not answer within {self.timeout:.0f} s"
                ) from None
            except (OSError, ValueError):
                self.close()
                raise ConnectionLost() from None
            except ConnectionLost:
                self.close()
                raise

    # Typed conveniences over call(); the names follow the protocol's operations.

    def hello(self) -> dict[str, Any]:
        return self.call("hello")

    def status(self) -> p.StatusJSON:
        return cast(p.StatusJSON, self.call("status"))

    def pause(self, folder: str | None = None) -> dict[str, Any]:
        return self.call("pause", {"folder": folder} if folder else None)

    def resume(self, folder: str | None = None) -> dict[str, Any]:
        return self.call("resume", {"folder": folder} if folder else None)

    def sync_now(self, folder: str | None = None) -> dict[str, Any]:
        return self.call("sync_now", {"folder": folder} if folder else None)

    def folders(self) -> list[p.FolderJSON]:
        return cast(list[p.FolderJSON], self.call("folders.list")["folders"])

    def add_folder(
        self, local: str, remote: str = "/", mode: str = "two-way", **extra: Any
    ) -> p.FolderJSON:
        args = {"local": local, "remote": remote, "mode": mode, **extra}
        return cast(p.FolderJSON, self.call("folders.add", args)["folder"])

    def remove_folder(self, local: str) -> dict[str, Any]:
        return self.call("folders.remove", {"local": local})

    def history(self, **query: Any) -> dict[str, Any]:
        return self.call("history.query", {k: v for k, v in query.items() if v is not None})

    def issues(self) -> list[p.IssueJSON]:
        return cast(list[p.IssueJSON], self.call("issues.list")["issues"])

    def retry_issue(self, issue_id: int) -> dict[str, Any]:
        return self.call("issues.retry", {"id": issue_id})

    def dismiss_issue(self, issue_id: int) -> dict[str, Any]:
        return self.call("issues.dismiss", {"id": issue_id})

    def signin_start(self, device: bool = False) -> p.SigninJSON:
        return cast(p.SigninJSON, self.call("signin.start", {"device": True} if device else None))

    def signin_state(self) -> p.SigninJSON:
        return cast(p.SigninJSON, self.call("signin.state"))

    def signout(self) -> dict[str, Any]:
        return self.call("signout")

    def settings(self) -> dict[str, p.SettingJSON]:
        return cast(dict[str, p.SettingJSON], self.call("settings.get")["settings"])

    def set_setting(self, key: str, value: Any) -> dict[str, Any]:
        return self.call("settings.set", {"key": key, "value": value})

    # Undo: paths are local, inside a sync folder.

    def versions(self, path: str) -> p.VersionsJSON:
        """The file at ``path`` on the server and its revisions, newest first."""
        return cast(p.VersionsJSON, self.call("versions.list", {"path": path}))

    def restore_version(self, path: str, rev: str) -> p.EntryJSON:
        """Make ``rev`` current on the server; the file then arrives through sync."""
        result = self.call("versions.restore", {"path": path, "rev": rev})
        return cast(p.EntryJSON, result["entry"])

    def open_version_copy(self, path: str, rev: str) -> str:
        """Download ``rev`` (verified) outside the sync folders; the copy's path."""
        return str(self.call("versions.open_copy", {"path": path, "rev": rev})["copy"])

    def trash(self, folder: str | None = None, search: str | None = None) -> list[p.TrashItemJSON]:
        args = {k: v for k, v in (("folder", folder), ("search", search)) if v is not None}
        return cast(list[p.TrashItemJSON], self.call("trash.list", args or None)["items"])

    def restore_from_trash(self, item_id: str, path: str | None = None) -> p.EntryJSON:
        """Bring a trash item back to where it was, or to the local ``path``."""
        args = {"id": item_id} if path is None else {"id": item_id, "path": path}
        return cast(p.EntryJSON, self.call("trash.restore", args)["entry"])

    def resolve_conflict(self, issue_id: int, keep: str) -> dict[str, Any]:
        """``keep``: "both", "mine" (the conflict copy wins) or "theirs" (the copy goes)."""
        return self.call("conflicts.resolve", {"id": issue_id, "keep": keep})

    def subscribe(self, events: list[str] | None = None) -> Subscription:
        """A new connection carrying events; see :class:`Subscription`."""
        return Subscription.open(self.socket_path, events, self.timeout)


class Subscription:
    """An event stream on its own connection.

    ``snapshot`` is the status at the moment of subscribing. Iterate to receive
    :class:`Event` values (blocking); :meth:`close` may be called from another
    thread to end the iteration.
    """

    def __init__(self, sock: socket.socket, snapshot: dict[str, Any]) -> None:
        self._sock = sock
        self._file = sock.makefile("rb")
        self.snapshot = snapshot
        self._closed = False

    @classmethod
    def open(cls, socket_path: Path, events: list[str] | None, timeout: float) -> Subscription:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(str(socket_path))
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            sock.close()
            raise AgentNotRunning(socket_path) from None
        args = {"events": events} if events is not None else None
        sock.sendall(p.encode(p.request(1, "subscribe", args)))
        file = sock.makefile("rb")
        line = file.readline(REPLY_LIMIT)
        file.close()
        if not line:
            sock.close()
            raise ConnectionLost()
        try:
            result = _result(_decode_message(line))
        except p.ControlError:
            sock.close()
            raise
        sock.settimeout(None)  # events may be minutes apart
        return cls(sock, cast(dict[str, Any], result["status"]))

    def __iter__(self) -> Iterator[Event]:
        while True:
            try:
                line = self._file.readline(REPLY_LIMIT)
            except (OSError, ValueError):
                return
            if not line:
                return
            message = _decode_message(line)
            if "event" in message:
                yield Event(str(message["event"]), cast(dict[str, Any], message.get("data", {})))

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # shutdown() wakes a thread blocked in readline(); close() alone may not.
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncControlClient:
    """asyncio client: concurrent requests on one connection, plus an event queue."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._events: asyncio.Queue[Event | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._read_loop())

    @classmethod
    async def connect(cls, socket_path: Path) -> AsyncControlClient:
        try:
            reader, writer = await asyncio.open_unix_connection(str(socket_path), limit=REPLY_LIMIT)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            raise AgentNotRunning(Path(socket_path)) from None
        return cls(reader, writer)

    async def _read_loop(self) -> None:
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    break
                message = _decode_message(line)
                if "event" in message:
                    data = cast(dict[str, Any], message.get("data", {}))
                    self._events.put_nowait(Event(str(message["event"]), data))
                    continue
                fut = self._pending.pop(message.get("id"), None)  # type: ignore[arg-type]
                if fut is not None and not fut.done():
                    fut.set_result(message)
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionLost())
            self._pending.clear()
            self._events.put_nowait(None)

    async def call(self, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
        if self._task.done():
            raise ConnectionLost()
        req_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = fut
        self._writer.write(p.encode(p.request(req_id, op, args)))
        await self._writer.drain()
        return _result(await fut)

    async def subscribe(self, events: list[str] | None = None) -> dict[str, Any]:
        """Start receiving events on this connection; returns the status snapshot."""
        result = await self.call("subscribe", {"events": events} if events is not None else None)
        return cast(dict[str, Any], result["status"])

    async def events(self) -> AsyncIterator[Event]:
        while True:
            event = await self._events.get()
            if event is None:
                return
            yield event

    async def close(self) -> None:
        self._writer.close()
        with contextlib.suppress(Exception):
            await self._writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
