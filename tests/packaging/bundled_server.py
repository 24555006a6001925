"""The bundled server for the package tests: on 127.0.0.1 (a free port), with a user and
an API key made by its own command line, stopped by PID."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

TENANT = "acme"


@dataclass
class Server:
    url: str
    key: str

    def metadata(self, path: str) -> httpx.Response:
        return httpx.get(
            f"{self.url}/api/v1/metadata",
            params={"path": path},
            headers={"Authorization": f"Bearer {self.key}"},
            timeout=10,
        )


def stop(proc: subprocess.Popen[str], timeout: float = 20) -> int:
    """SIGTERM to this one process (by its PID), SIGKILL if it does not go in time."""
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    return proc.returncode


class ServerLog:
    """The server's stderr, read on a thread so the pipe never fills."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        self._pipe = proc.stderr
        self._lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._pipe:
            self._lines.append(line)

    def text(self) -> str:
        return "".join(self._lines)

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        """The first group of ``pattern`` once a line matches it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.text())
            if found:
                return found.group(1)
            if not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"the bundled server did not start:\n{self.text()}")

    def close(self) -> None:
        self._reader.join(timeout=10)
        self._pipe.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@contextmanager
def bundled_server(dist: Path, data: Path, email: str) -> Iterator[Server]:
    """``dropline-server serve`` from the bundle on ``data``, with ``email``'s API key;
    on the way out, checks that it shut down cleanly."""
    exe = dist / "dropline-server" / "dropline-server"

    def admin(*args: str) -> str:
        done = subprocess.run(
            [str(exe), *args, "--data-dir", str(data)],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == 0, f"{args}: {done.stderr}"
        return done.stdout.strip()

    admin("tenants", "create", TENANT)
    admin("users", "create", "--tenant", TENANT, "--email", email, "--no-password")
    key = admin("api-keys", "create", "--tenant", TENANT, "--user", email)
    proc = subprocess.Popen(
        [str(exe), "serve", "--data-dir", str(data), "--host", "127.0.0.1", "--port", "0"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = ServerLog(proc)
    try:
        url = log.wait_for(r"listening on (http://127\.0\.0\.1:\d+)")
        deadline = time.monotonic() + 30
        while not _ready(url):
            assert time.monotonic() < deadline, f"the bundled server is not ready:\n{log.text()}"
            time.sleep(0.1)
        yield Server(url, key)
    finally:
        code = stop(proc)
        log.close()
    # uvicorn shuts down gracefully, then raises the SIGTERM it caught again, so a
    # supervisor sees how it ended; the log line tells that from being killed outright.
    assert code in (0, -signal.SIGTERM), log.text()
    assert "Finished server process" in log.text(), log.text()
