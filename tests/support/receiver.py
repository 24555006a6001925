"""A real HTTP receiver on 127.0.0.1 for webhook and push-transfer tests.

It records every request (method, path, headers, body) and answers from a script of
statuses (then a default), so a test can play a receiver that fails, asks for a later
retry, says 410 Gone, or is not listening at all until :meth:`Receiver.start`.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 204
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.port = port
        self.requests: list[Received] = []
        self.script: list[Reply] = []
        self.default = Reply()
        # Requests to these paths are recorded, then held until the event is set.
        self.hold: dict[str, threading.Event] = {}
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reserve_port(self) -> int:
        """Pick a free port without listening on it: until :meth:`start`, connections are
        refused (a receiver that is down)."""
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        return self.port

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                reply = receiver._record(Received(self.command, self.path, headers, body))
                gate = receiver.hold.get(self.path)
                if gate is not None:
                    gate.wait(30)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                if reply.body:
                    self.wfile.write(reply.body)

            do_POST = do_PUT = do_GET = _handle

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: the test reads the recorded requests instead

        deadline = time.monotonic() + 10
        while True:
            try:
                server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _record(self, request: Received) -> Reply:
        with self._arrived:
            self.requests.append(request)
            reply = self.script.pop(0) if self.script else self.default
            self._arrived.notify_all()
            return reply

    def wait_for(
        self, predicate: Callable[[list[Received]], bool], timeout: float = 20
    ) -> list[Received]:
        """Block until ``predicate(requests)`` holds; fails the test after ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while not predicate(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"the receiver got {len(self.requests)} request(s), not what was awaited"
                    )
                self._arrived.wait(left)
            return list(self.requests)

    def wait_count(self, count: int, timeout: float = 20) -> list[Received]:
        return self.wait_for(lambda got: len(got) >= count, timeout)


def wait_until(check: Callable[[], Any], timeout: float = 20, interval: float = 0.05) -> Any:
    """Poll ``check`` until it returns something truthy; fails the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last: {value!r})")
        time.sleep(interval)
