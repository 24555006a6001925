"""Run ``dropline-agent`` as a child process, and the CLI, for end-to-end tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dropline.agent.control import AgentNotRunning, ControlClient, ControlError
from dropline.agent.paths import AgentPaths
from tests.support.receiver import wait_until

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class CliResult:
    code: int
    out: str
    err: str


class AgentEnv:
    """One agent home with its policy file and test keyring; runs the agent and the CLI."""

    def __init__(self, tmp: Path, name: str = "agent") -> None:
        self.home = tmp / name
        self.paths = AgentPaths.resolve(self.home)
        self.policy = tmp / f"{name}-policy.toml"
        self.keyring_file = tmp / f"{name}-keyring.json"
        self.extra_env: dict[str, str] = {}
        self.proc: subprocess.Popen[bytes] | None = None

    def env(self) -> dict[str, str]:
        env = {
            k: v for k, v in os.environ.items() if k not in ("DROPLINE_API_KEY", "NOTIFY_SOCKET")
        }
        env.update(
            {
                "DROPLINE_POLICY_FILE": str(self.policy),
                "PYTHON_KEYRING_BACKEND": "tests.agent.keyring_backend.FileKeyring",
                "DROPLINE_TEST_KEYRING": str(self.keyring_file),
                "PYTHONPATH": str(ROOT),
                "BROWSER": "true",  # a browser that does nothing unless a test sets one
            }
        )
        env.update(self.extra_env)
        return env

    def use_scripted_browser(self, email: str, password: str, log: Path) -> None:
        """The browser the agent opens signs in as ``email`` and follows the redirect."""
        self.extra_env.update(
            {
                "BROWSER": f"{sys.executable} {ROOT}/tests/agent/scripted_browser.py %s",
                "DROPLINE_TEST_EMAIL": email,
                "DROPLINE_TEST_PASSWORD": password,
                "DROPLINE_TEST_BROWSER_LOG": str(log),
            }
        )

    def write_config(self, text: str) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.paths.config.with_suffix(".new")
        tmp.write_text(text)
        os.replace(tmp, self.paths.config)

    def cli(self, *args: str, stdin: str | None = None, timeout: float = 120) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-m", "dropline.agent", *args, "--home", str(self.home)],
            input=stdin.encode() if stdin is not None else None,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            env=self.env(),
            cwd=ROOT,
            timeout=timeout,
            check=False,
        )
        return CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    def start(self, wait: float = 30) -> subprocess.Popen[bytes]:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dropline.agent", "run", "--home", str(self.home)],
            env=self.env(),
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"agent exited with {self.proc.returncode}: {err}")
            try:
                with ControlClient(self.paths.socket, timeout=5) as c:
                    c.hello()
                return self.proc
            except (AgentNotRunning, ControlError):
                time.sleep(0.05)
        raise RuntimeError("agent did not answer")

    def client(self) -> ControlClient:
        return ControlClient(self.paths.socket, timeout=30)

    def stop(self, timeout: float = 30) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait(timeout=10)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None
        return code

    def log_text(self) -> str:
        path = self.paths.logs / "agent.log"
        return path.read_text() if path.exists() else ""


def wait_for(predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy (30 s by default for an agent)."""
    return wait_until(predicate, timeout, interval)
