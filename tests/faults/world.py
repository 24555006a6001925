"""The parts a fault trial runs against: the server as a process of its own, the fault
proxy in front of it, an account, real agents (``python -m dropline.agent run``) that
reach the server only through the proxy, and an SDK client that reaches it directly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from dropline.agent.control import AgentNotRunning, ControlClient, ControlError
from dropline.agent.paths import AgentPaths
from dropline.sdk.client import DroplineClient
from dropline.server.identity.accounts import Identity
from dropline.server.storage.db import Database
from dropline.server.storage.migrations import migrate
from tests.faults.proxy import FaultProxy
from tests.faults.server_proc import WarmServer
from tests.sync.engine_helpers import client_for

REPO = Path(__file__).resolve().parents[2]
SCOPES = ("files:read", "files:write", "transfers", "webhooks")
# Workers that look for due jobs and deliveries often, and loopback targets allowed.
SERVER_ENV = {
    "DROPLINE_ALLOW_PRIVATE_TARGETS": "1",
    "DROPLINE_WORKER_POLL_SECONDS": "0.1",
    "DROPLINE_WEBHOOK_RETRY_SCHEDULE": "0.5,0.5,1,1,2",
    "DROPLINE_TRANSFER_RETRY_SCHEDULE": "0.5,0.5,1",
}


class Agent:
    """One agent home and its sync folders; the agent runs as a child process."""

    def __init__(self, base: Path, name: str, server_url: str, key: str) -> None:
        self.name = name
        self.dir = base / name
        self.paths = AgentPaths.resolve(self.dir / "home")
        self.server_url = server_url
        self.key = key
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.folders: list[tuple[Path, str]] = []

    @property
    def journal(self) -> Path:
        return self.paths.state / "journal.sqlite3"

    def configure(self, folders: list[tuple[Path, str]]) -> None:
        """Sync exactly these (local, remote) folders; a running agent applies it at once."""
        self.folders = folders
        lines = [f'server_url = "{self.server_url}"', ""]
        for local, remote in folders:
            local.mkdir(parents=True, exist_ok=True)
            lines += ["[[folders]]", f'local = "{local}"', f'remote = "{remote}"', ""]
        self.paths.home.mkdir(parents=True, exist_ok=True)
        tmp = self.paths.config.with_suffix(".new")
        tmp.write_text("\n".join(lines))
        os.replace(tmp, self.paths.config)

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DROPLINE_")}
        env.update(
            {
                "DROPLINE_API_KEY": self.key,  # from the environment, as a service gets it
                "DROPLINE_POLICY_FILE": str(self.dir / "no-policy.toml"),
                "PYTHONPATH": str(REPO),
            }
        )
        env.pop("NOTIFY_SOCKET", None)
        return env

    def start(self, wait: float = 60) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "agent.stderr").open("ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dropline.agent", "run", "--home", str(self.paths.home)]
                + (["--verbose"] if os.environ.get("FAULTS_VERBOSE") else []),
                env=self._env(),
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        self.starts += 1
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agent {self.name} exited with {self.proc.returncode}")
            try:
                self.status()
                return
            except (AgentNotRunning, ControlError, OSError):
                time.sleep(0.05)
        raise RuntimeError(f"agent {self.name} did not answer within {wait} s")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL by process id, as a power cut or the OOM killer would."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, Any]:
        with ControlClient(self.paths.socket, timeout=10) as control:
            return control.call("status")

    def idle(self) -> bool:
        """Idle in every folder with nothing queued (what the tray shows as up to date)."""
        try:
            status = self.status()
        except (AgentNotRunning, ControlError, OSError):
            return False
        folders = status["folders"]
        return bool(folders) and all(f["state"] == "idle" and not f["pending"] for f in folders)


class World:
    """A server process on ``base/server``, an account, the proxy, and agents through it."""

    def __init__(self, base: Path, server_env: dict[str, str] | None = None) -> None:
        self.base = base
        self.data = base / "server"
        env = {**SERVER_ENV, **(server_env or {})}
        self.server = WarmServer(self.data, env, base / "server.stderr")
        self.key = ""
        self.proxy: FaultProxy | None = None
        self.agents: list[Agent] = []

    def start(self) -> World:
        self.data.mkdir(parents=True, exist_ok=True)
        db = Database(f"sqlite:///{self.data / 'dropline.db'}")
        try:
            migrate(db)
            identity = Identity(db)
            identity.create_tenant("acme")
            identity.create_user("acme", "ops@example.com", "correct horse battery staple")
            _key_id, self.key = identity.create_api_key("acme", "ops@example.com", SCOPES)
        finally:
            db.dispose()
        self.server.start(timeout=60)
        self.proxy = FaultProxy(self.server.port)
        self.proxy.start()
        return self

    @property
    def url(self) -> str:
        """The server itself (for the checks, which no fault may touch)."""
        return self.server.url

    def through_proxy(self) -> FaultProxy:
        assert self.proxy is not None
        return self.proxy

    def agent(self, name: str) -> Agent:
        found = Agent(self.base, name, self.through_proxy().url, self.key)
        self.agents.append(found)
        return found

    def sdk(self) -> DroplineClient:
        return client_for(self.url, self.key)

    def kill_server(self) -> None:
        self.server.kill()

    def restart_server(self) -> None:
        self.server.start(timeout=60)  # on the same port and data directory

    def close(self) -> None:
        for agent in self.agents:
            agent.stop()
        if self.proxy is not None:
            self.proxy.stop()
        self.server.stop()
