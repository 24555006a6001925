"""The PyInstaller bundles in dist/: every command answers, the bundled tray runs offscreen
against the bundled agent, and the bundled agent and server sync a file both ways."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import httpx
import pytest

from dropline.agent.control import AgentNotRunning, ControlClient, ControlError
from dropline.agent.paths import AgentPaths
from dropline.sdk import ApiKeyCredentials, DroplineClient, upload_file
from tests.packaging.bundled_server import Server, bundled_server, stop

COMMANDS = (
    ("dropline", "dropline-agent"),
    ("dropline", "dropline-tray"),
    ("dropline-server", "dropline-server"),
)
EMAIL = "sync@example.com"


@dataclass
class Agent:
    home: Path
    folder: Path
    socket: Path


def run(
    cmd: list[str | Path], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(c) for c in cmd],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        stdin=subprocess.DEVNULL,
    )


def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize(("bundle", "command"), COMMANDS)
def test_command_answers_version_and_help(dist: Path, bundle: str, command: str) -> None:
    exe = dist / bundle / command
    done = run([exe, "--version"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{command} {version('dropline')}"
    done = run([exe, "--help"])
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"usage: {command}")


def test_qt_platform_plugins_load_from_the_bundle(dist: Path) -> None:
    """The X11 plugin gets as far as looking for a display, so every library it needs was
    found (with one missing, Qt reports only that it could not load the plugin)."""
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "xcb",
        "DISPLAY": ":97",  # nothing listens there
        "DROPLINE_AGENT_HOME": str(dist / "no-such-agent"),
    }
    done = run([dist / "dropline" / "dropline-tray", "--no-start-agent"], env=env)
    assert done.returncode != 0
    assert "could not connect to display" in done.stderr, done.stderr


@pytest.fixture(scope="module")
def server(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with bundled_server(dist, tmp_path_factory.mktemp("server") / "data", EMAIL) as running:
        yield running


@pytest.fixture(scope="module")
def agent(dist: Path, server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Agent]:
    """``dropline-agent run`` from the bundle, syncing one two-way folder with the server.

    The key comes from DROPLINE_API_KEY and the keyring is switched off, as on an
    unattended workstation; the policy path names no file, so this machine's
    /etc/dropline/policy.toml (if a package installed one) does not apply.
    """
    top = tmp_path_factory.mktemp("agent")
    home, folder = top / "home", top / "Dropline"
    home.mkdir()
    folder.mkdir()
    (home / "agent.toml").write_text(
        f'server_url = "{server.url}"\n\n'
        f'[[folders]]\nlocal = "{folder}"\nremote = "/"\nmode = "two-way"\n'
    )
    env = {
        **os.environ,
        "DROPLINE_API_KEY": server.key,
        "DROPLINE_POLICY_FILE": str(top / "no-policy.toml"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    env.pop("DROPLINE_AGENT_HOME", None)
    with open(top / "agent.out", "w") as out:
        proc = subprocess.Popen(
            [dist / "dropline" / "dropline-agent", "run", "--home", home],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    paths = AgentPaths.resolve(home)
    try:
        eventually(lambda: _answers(paths.socket, proc), "the bundled agent answers")
        yield Agent(home, folder, paths.socket)
    finally:
        code = stop(proc, timeout=30)
        assert code == 0, f"agent exit {code}: {(top / 'agent.out').read_text()}"


def _answers(sock: Path, proc: subprocess.Popen[str]) -> bool:
    assert proc.poll() is None, f"the bundled agent exited with {proc.returncode}"
    try:
        with ControlClient(sock, timeout=5) as client:
            client.hello()
    except (AgentNotRunning, ControlError):
        return False
    return True


def test_tray_runs_offscreen_against_the_bundled_agent(dist: Path, agent: Agent) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.Popen(
        [dist / "dropline" / "dropline-tray", "--home", agent.home, "--no-start-agent"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        eventually(
            lambda: proc.poll() is not None or _connected_to(agent.socket, proc.pid),
            "the tray connects to the agent's control socket",
        )
        time.sleep(3)
        assert proc.poll() is None, "the bundled tray exited while running"
        assert _connected_to(agent.socket, proc.pid)
    finally:
        code = stop(proc)
        assert proc.stderr is not None
        with proc.stderr:
            errors = proc.stderr.read()
    assert code == 0, errors
    assert "Traceback" not in errors, errors


def _connected_to(sock: Path, pid: int) -> bool:
    """Whether process ``pid`` holds a connection to the Unix socket ``sock`` (per ss)."""
    listing = subprocess.run(
        ["ss", "-x", "-p", "-n"], capture_output=True, text=True, check=True
    ).stdout
    ours, accepted_peers = set(), set()
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) < 8 or fields[1] != "ESTAB":
            continue
        local, local_inode, peer_inode = fields[4], fields[5], fields[7]
        if local == str(sock):
            accepted_peers.add(peer_inode)  # the agent's end of a connection
        if f"pid={pid}," in line:
            ours.add(local_inode)
    return bool(ours & accepted_peers)


def test_file_dropped_in_the_folder_arrives_on_the_server(server: Server, agent: Agent) -> None:
    data = os.urandom(300_000)
    (agent.folder / "dropped report.pdf").write_bytes(data)
    auth = {"Authorization": f"Bearer {server.key}"}
    with httpx.Client(base_url=server.url, headers=auth, timeout=10) as http:

        def arrived() -> bool:
            answer = http.get("/api/v1/metadata", params={"path": "/dropped report.pdf"})
            return answer.status_code == 200 and answer.json()["sha256"] == sha256(data)

        eventually(arrived, "the dropped file is on the server with its SHA-256")
        entry = http.get("/api/v1/metadata", params={"path": "/dropped report.pdf"}).json()
        content = http.get(f"/api/v1/files/{entry['id']}/content")
    assert content.status_code == 200
    assert sha256(content.content) == sha256(data)


def test_file_uploaded_to_the_server_arrives_in_the_folder(
    server: Server, agent: Agent, tmp_path: Path
) -> None:
    data = os.urandom(200_000)
    source = tmp_path / "from-the-api.bin"
    source.write_bytes(data)

    async def upload() -> str | None:
        async with DroplineClient(server.url, ApiKeyCredentials(server.key)) as client:
            entry = await upload_file(client, source, "/inbox/from-the-api.bin")
        return entry.sha256

    assert asyncio.run(upload()) == sha256(data)
    target = agent.folder / "inbox" / "from-the-api.bin"
    eventually(
        lambda: target.is_file() and sha256(target.read_bytes()) == sha256(data),
        "the uploaded file is in the sync folder with its SHA-256",
    )
