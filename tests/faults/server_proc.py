"""The server as a process of its own (``dropline-server serve`` on a fixed loopback port),
killed with SIGKILL by its id and started again on the same data directory from a warm
standby (tests/faults/warm_server.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class WarmServer:
    def __init__(self, data: Path, env: dict[str, str], log: Path) -> None:
        self.data = data
        self.env = env
        self.log = log
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self._standby: subprocess.Popen[str] | None = None
        self.starts = 0

    def _spawn(self) -> subprocess.Popen[str]:
        with self.log.open("a") as err:
            return subprocess.Popen(
                [sys.executable, "-m", "tests.faults.warm_server"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                cwd=REPO,
                env={**os.environ, **self.env, "PYTHONPATH": str(REPO)},
            )

    def start(self, timeout: float = 60) -> str:
        proc = self._standby or self._spawn()
        self._standby = None
        assert proc.stdin is not None and proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the server's standby did not come up (exit {proc.poll()})")
        args = f"serve --data-dir {self.data} --port {self.port} --log-level warning\n"
        proc.stdin.write(args)
        proc.stdin.flush()
        self.proc = proc
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}; see {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.02)
        else:
            raise RuntimeError(f"the server did not listen within {timeout} s")
        self._standby = self._spawn()  # the next start warms up while this one serves
        return self.url

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        standby, self._standby = self._standby, None
        if standby is not None:
            standby.kill()
            standby.wait(timeout=30)
