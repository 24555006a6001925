"""``make demo``: a local Dropline to try by hand, started from scratch or from ``./.demo/``.

Each part of the demo is one function that starts what it needs and returns a
handle to stop it; ``main`` runs the parts in order and stops them in reverse on
Ctrl-C. The server part starts ``dropline-server`` on 127.0.0.1 with a demo
tenant, user and API key (the key is kept in ``.demo/api-key``, mode 0600: it is
a local demo, so it is printed too). The tray part starts ``dropline-tray`` for
the demo agent when a display exists.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

log = logging.getLogger("tools.demo")

DEMO_DIR = Path(".demo")
PREFERRED_PORT = 8600
TENANT = "demo"
EMAIL = "demo@example.com"
# Transfers and webhooks too, so the API guide's examples run against the demo as written.
DEMO_SCOPES = ("files:read", "files:write", "transfers", "webhooks")


@dataclass
class Part:
    """One running piece of the demo and how to stop it."""

    name: str
    stop: Callable[[], None]
    alive: Callable[[], bool]
    info: dict[str, str] = field(default_factory=dict)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def ensure_api_key(data_dir: Path, key_file: Path) -> str:
    """The demo user's API key: the saved one while it still works, else a new one."""
    from dropline.server.identity.accounts import Identity, IdentityError
    from dropline.server.settings import Settings
    from dropline.server.storage.db import Database
    from dropline.server.storage.migrations import migrate

    data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(Settings(data_dir=data_dir).database_url)
    try:
        migrate(db)
        identity = Identity(db)
        if key_file.exists():
            saved = key_file.read_text(encoding="ascii").strip()
            principal = identity.authenticate_api_key(saved)
            if principal is not None and set(DEMO_SCOPES) <= principal.scopes:
                return saved
        try:
            identity.tenant_id(TENANT)
        except IdentityError:
            identity.create_tenant(TENANT)
        try:
            identity.user_id(identity.tenant_id(TENANT), EMAIL)
        except IdentityError:
            identity.create_user(TENANT, EMAIL, password=None)
        _key_id, key = identity.create_api_key(TENANT, EMAIL, DEMO_SCOPES, name="make demo")
    finally:
        db.dispose()
    write_secret(key_file, key)
    return key


def write_secret(path: Path, value: str) -> None:
    # Created with 0600 from the start, so the secret is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    os.chmod(path, 0o600)


def ensure_password(data_dir: Path, password_file: Path) -> str:
    """The demo user's password for the web client and the tray's browser sign-in:
    the saved one, or a new random one saved beside the API key."""
    from dropline.server.identity.accounts import Identity
    from dropline.server.settings import Settings
    from dropline.server.storage.db import Database

    if password_file.exists():
        password = password_file.read_text(encoding="ascii").strip()
    else:
        password = secrets.token_urlsafe(12)
        write_secret(password_file, password)
    db = Database(Settings(data_dir=data_dir).database_url)
    try:
        Identity(db).set_password(TENANT, EMAIL, password)
    finally:
        db.dispose()
    return password


def start_server(demo_dir: Path) -> Part:
    """``dropline-server serve`` on 127.0.0.1:8600, or on a free port if 8600 is taken."""
    data_dir = demo_dir / "server"
    key = ensure_api_key(data_dir, demo_dir / "api-key")
    password = ensure_password(data_dir, demo_dir / "password")
    port = PREFERRED_PORT if port_is_free(PREFERRED_PORT) else 0
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dropline.server.cli",
            "serve",
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stderr=subprocess.PIPE,
        text=True,
        # The admin setting that lets webhooks and pushes reach this machine's loopback.
        env={**os.environ, "DROPLINE_ALLOW_PRIVATE_TARGETS": "1"},
    )
    assert proc.stderr is not None
    url = ""
    for line in proc.stderr:
        sys.stderr.write(line)
        match = re.search(r"listening on (\S+)", line)
        if match:
            url = match.group(1)
            break
    if not url:
        proc.wait()
        raise SystemExit(f"demo: the server did not start (exit {proc.returncode})")
    # Keep passing the server's messages through so warnings stay visible.
    relay = threading.Thread(target=_relay, args=(proc,), daemon=True)
    relay.start()
    _wait_ready(url)

    def stop() -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        relay.join(timeout=5)

    def alive() -> bool:
        return proc.poll() is None

    info = {"url": url, "key": key, "password": password, "data_dir": str(data_dir)}
    return Part("server", stop, alive, info)


def _relay(proc: subprocess.Popen[str]) -> None:
    assert proc.stderr is not None
    with proc.stderr:
        for line in proc.stderr:
            sys.stderr.write(line)


def _wait_ready(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise SystemExit(f"demo: the server at {url} did not become ready")


def describe_server(part: Part) -> str:
    url, key = part.info["url"], part.info["key"]
    return "\n".join(
        [
            f"Dropline server: {url}   (data in {part.info['data_dir']})",
            f"API key for {EMAIL} (also in {DEMO_DIR / 'api-key'}):",
            f"  {key}",
            "Try it:",
            f'  curl -s -H "Authorization: Bearer {key}" {url}/api/v1/me',
            "More: the curl walkthrough in docs/api.md (export DROPLINE_URL and DROPLINE_API_KEY "
            "as printed above).",
            f"In a browser: {url}/ as {EMAIL}, password {part.info['password']} "
            f"(also in {DEMO_DIR / 'password'}).",
        ]
    )


AGENT_CONFIG = """\
# The demo agent's settings ('make demo' keeps server_url up to date).
# Edit freely: the running agent applies valid changes at once.
server_url = "{url}"

[[folders]]
local = "{folder}"
remote = "/"
mode = "two-way"
"""


def start_sync_agent(demo_dir: Path, server: Part) -> Part:
    """``dropline-agent run`` with home ``.demo/agent``, syncing ``.demo/Dropline`` with ``/``.

    The API key reaches the agent through its environment only, never its config file.
    """
    from dropline.agent.configedit import ConfigEditor
    from dropline.agent.control import AgentNotRunning, ControlClient, ControlError
    from dropline.agent.paths import AgentPaths

    home = (demo_dir / "agent").absolute()
    folder = (demo_dir / "Dropline").absolute()
    folder.mkdir(parents=True, exist_ok=True)
    paths = AgentPaths.resolve(home)
    paths.ensure()
    # An empty policy path: the demo is not governed by this machine's IT policy.
    policy = home / "demo-policy.toml"
    if not paths.config.exists():
        paths.config.write_text(AGENT_CONFIG.format(url=server.info["url"], folder=folder))
    else:
        editor = ConfigEditor(paths.config, policy)
        editor.set("server_url", server.info["url"])
        if editor.current().folder(folder) is None:
            editor.add_folder({"local": str(folder), "remote": "/", "mode": "two-way"})
    env = {
        **os.environ,
        "DROPLINE_API_KEY": server.info["key"],
        "DROPLINE_POLICY_FILE": str(policy),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "dropline.agent", "run", "--home", str(home)],
        env=env,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"demo: the agent did not start (exit {proc.returncode})")
        try:
            with ControlClient(paths.socket, timeout=5) as client:
                client.hello()
            break
        except (AgentNotRunning, ControlError):
            if time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("demo: the agent did not answer") from None
            time.sleep(0.1)

    def stop() -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    def alive() -> bool:
        return proc.poll() is None

    return Part("agent", stop, alive, {"home": str(home), "folder": str(folder)})


def describe_agent(part: Part, server: Part) -> str:
    home = os.path.relpath(part.info["home"])
    folder = os.path.relpath(part.info["folder"])
    url, key = server.info["url"], server.info["key"]
    return "\n".join(
        [
            f"Dropline agent: syncing {folder}/ with / on the server   (home {home})",
            "Drop a file in and watch it arrive:",
            f"  cp README.md {folder}/",
            f"  .venv/bin/dropline-agent status --home {home}",
            f"  .venv/bin/dropline-agent history --home {home}",
            f'  curl -s -H "Authorization: Bearer {key}" "{url}/api/v1/metadata?path=/README.md"',
        ]
    )


def has_display(env: dict[str, str] | None = None) -> bool:
    """A desktop to show the tray on (X11 or Wayland)."""
    env = dict(os.environ) if env is None else env
    return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))


def start_tray(agent: Part) -> Part:
    """``dropline-tray`` for the demo agent's home; it leaves the agent to the demo."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dropline.ui.app",
            "--home",
            agent.info["home"],
            "--no-start-agent",
        ],
        stdin=subprocess.DEVNULL,
    )

    def stop() -> None:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    def alive() -> bool:
        return proc.poll() is None

    return Part("tray", stop, alive, {"home": agent.info["home"]})


def describe_tray(agent: Part, started: bool) -> str:
    home = os.path.relpath(agent.info["home"])
    if started:
        return "Dropline tray: its icon is in your panel (History, Issues, Settings in its menu)"
    return (
        "No display here, so the tray app is not started; on a desktop run\n"
        f"  .venv/bin/dropline-tray --home {home}"
    )


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    # A plain `kill` stops the demo as cleanly as Ctrl-C: the parts are stopped too.
    signal.signal(signal.SIGTERM, _interrupt)
    DEMO_DIR.mkdir(exist_ok=True)
    parts: list[Part] = []
    try:
        server = start_server(DEMO_DIR)
        parts.append(server)
        print(describe_server(server), flush=True)
        agent = start_sync_agent(DEMO_DIR, server)
        parts.append(agent)
        print("\n" + describe_agent(agent, server), flush=True)
        if has_display():
            parts.append(start_tray(agent))
        print("\n" + describe_tray(agent, has_display()), flush=True)
        print("\nRunning; press Ctrl-C to stop.", flush=True)
        while True:
            stopped = [p.name for p in parts if not p.alive()]
            if stopped:
                print(f"demo: {', '.join(stopped)} stopped", file=sys.stderr)
                return 1
            time.sleep(1)
    except KeyboardInterrupt:
        print("\nStopping.", file=sys.stderr)
        return 0
    finally:
        for part in reversed(parts):
            part.stop()


if __name__ == "__main__":
    sys.exit(main())
