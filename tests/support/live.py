"""Start the real Dropline server under uvicorn on 127.0.0.1 with port 0.

``running_server`` runs it in a thread of the test process (fast, and the test
can reach the app's state); ``ServerProcess`` runs ``dropline-server serve`` as a
child process so a test can kill it with SIGKILL and start it again.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import uvicorn

from dropline.server.http.app import create_app
from dropline.server.http.serving import DroplineServer
from dropline.server.identity.accounts import Identity
from dropline.server.identity.tls import uvicorn_tls_options
from dropline.server.settings import Settings

ALL_TEST_SCOPES = ("files:read", "files:write", "transfers", "webhooks", "audit:read", "admin")


@dataclass
class LiveServer:
    url: str
    settings: Settings
    identity: Identity
    app: object = None
    _users: dict[tuple[str, str], str] = field(default_factory=dict)

    def new_key(
        self,
        tenant: str = "acme",
        email: str = "alice@example.com",
        scopes: tuple[str, ...] = ("files:read", "files:write"),
        password: str = "correct horse battery staple",
    ) -> str:
        """An API key for ``email`` in ``tenant``, creating both when new."""
        try:
            self.identity.tenant_id(tenant)
        except ValueError:
            self.identity.create_tenant(tenant)
        if (tenant, email) not in self._users:
            try:
                self.identity.user_id(self.identity.tenant_id(tenant), email)
            except ValueError:
                self.identity.create_user(tenant, email, password)
            self._users[(tenant, email)] = email
        _key_id, key = self.identity.create_api_key(tenant, email, scopes)
        return key


def _bound_socket(host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this; asyncio sets it only on sockets it makes
    # itself, and without it every small response waits ~40 ms for a delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, 0))
    return sock


@contextmanager
def running_server(settings: Settings) -> Iterator[LiveServer]:
    app = create_app(settings)
    sock = _bound_socket()
    port = sock.getsockname()[1]
    # With settings.tls_cert/tls_key (and client_ca) the server speaks TLS exactly as
    # `dropline-server serve` does (dropline.server.identity.tls), and the URL is https.
    tls = uvicorn_tls_options(settings.tls_cert, settings.tls_key, settings.client_ca)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", **tls)
    # uvicorn listens to signals only from the main thread: this one serves in its own.
    server = DroplineServer(config, app.state.changes.notifier)

    def run() -> None:
        asyncio.run(server.serve(sockets=[sock]))

    thread = threading.Thread(target=run, name="dropline-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    try:
        yield LiveServer(
            url=f"{'https' if tls else 'http'}://127.0.0.1:{port}",
            settings=settings,
            identity=app.state.identity,
            app=app,
        )
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


class ServerProcess:
    """``dropline-server serve`` as a child process; stopped by its PID."""

    def __init__(self, data_dir: Path, port: int = 0, extra_env: dict[str, str] | None = None):
        self.data_dir = data_dir
        self.port = port
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self._drainer: threading.Thread | None = None

    def start(self, timeout: float = 20) -> str:
        env = {**os.environ, **self.extra_env}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dropline.server.cli",
                "serve",
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            match = re.search(r"listening on (\S+)", line)
            if match:
                self.url = match.group(1)
                self.port = int(self.url.rsplit(":", 1)[1])
                # Keep draining stderr so the child never blocks on a full pipe.
                self._drainer = threading.Thread(target=self._drain, daemon=True)
                self._drainer.start()
                self._wait_until_serving(deadline)
                return self.url
        raise RuntimeError(f"server process did not start (exit {self.proc.poll()})")

    def _wait_until_serving(self, deadline: float) -> None:
        # The port is bound before uvicorn starts listening on it: wait for a connect.
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("server process bound its port but never accepted connections")

    def _close_pipe(self) -> None:
        if self._drainer is not None:
            self._drainer.join(timeout=10)
            self._drainer = None
        if self.proc is not None and self.proc.stderr is not None:
            self.proc.stderr.close()

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for _ in self.proc.stderr:
            pass

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._close_pipe()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipe()
