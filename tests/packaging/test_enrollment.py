"""Unattended enrollment: the workstation .deb installed, a policy naming the server and a
folder for every user, a drop-in with the API key; a new user's agent then syncs a
dropped file with no command typed, and ``dropline-agent doctor`` agrees.

systemd is not PID 1 here, so no login starts ``systemd --user``. The test stands in for
it: it reads the installed unit and its drop-ins along the user manager's search path
with the user's rights (as the manager does), and runs the unit's own ExecStart= as the
user with the environment the manager would give it, the runtime directory logind would
make, and a notify socket for Type=notify.
"""

from __future__ import annotations

import grp
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest

from tests.packaging import debinstall, standin, units
from tests.packaging.bundled_server import Server, bundled_server
from tools import debs

UNIT = "dropline-agent.service"
DROPIN_DIR = Path("/etc/systemd/user") / f"{UNIT}.d"
POLICY = Path("/etc/dropline/policy.toml")
USER, GROUP = "dlenroll", "dlenroll-sync"
EMAIL = "enroll@example.com"


@dataclass
class Agent:
    account: standin.Account
    unit: units.Unit
    env: dict[str, str]
    proc: subprocess.Popen[bytes]
    notify: standin.NotifySocket
    folder: Path

    def stop(self) -> int | None:
        """SIGTERM to the agent's PID, as systemd stops a unit; its exit status."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        return self.proc.returncode


def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def server(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("enroll-server") / "data"
    with bundled_server(dist, data, EMAIL) as running:
        yield running


@pytest.fixture(scope="module")
def machine(dist: Path, server: Server) -> Iterator[standin.Account]:
    """The package installed, the policy and the key drop-in written as IT would, and a
    new user in the group that may read the key; all gone afterwards."""
    assert os.geteuid() == 0, "this test installs a package: run it as root, as CI does"
    deb = debs.deb_path(dist, debs.WORKSTATION, version("dropline"))
    assert not DROPIN_DIR.exists(), f"{DROPIN_DIR} exists on this machine: not the test's"
    subprocess.run(["groupadd", GROUP], check=True)
    try:
        subprocess.run(["useradd", "-m", "-G", GROUP, "-s", "/bin/sh", USER], check=True)
        try:
            with debinstall.installed([deb]):
                write_policy(server.url)
                write_key_dropin(server.key)
                account = standin.Account.of(USER)
                # IT's step: the policy's folder exists (for new accounts, via /etc/skel).
                made = account.run(["mkdir", "-p", str(account.home / "Dropline")])
                assert made.returncode == 0, made.stderr
                yield account
        finally:
            shutil.rmtree(DROPIN_DIR, ignore_errors=True)
            subprocess.run(["userdel", "-r", USER], capture_output=True, check=False)
    finally:
        subprocess.run(["groupdel", GROUP], check=False)


def write_policy(url: str) -> None:
    POLICY.write_text(
        "# Written by IT: the server and the folder every user gets.\n"
        f'server_url = "{url}"\n'
        'locked = ["server_url"]\n\n'
        "[[folders]]\n"
        'local = "~/Dropline"\n'
        'remote = "/"\n'
        'mode = "two-way"\n'
    )


def write_key_dropin(key: str) -> None:
    """The key where the user manager reads it: 0640 root:GROUP. systemd reads a user
    unit's drop-ins with the user's rights and skips one it cannot open, so a 0600 file
    would give no key; the group limits the key to the users who sync."""
    DROPIN_DIR.mkdir(mode=0o755)
    path = DROPIN_DIR / "key.conf"
    path.touch(mode=0o640)
    os.chown(path, 0, grp.getgrnam(GROUP).gr_gid)
    path.write_text(f"[Service]\nEnvironment=DROPLINE_API_KEY={key}\n")


@pytest.fixture(scope="module")
def agent(machine: standin.Account) -> Iterator[Agent]:
    """The installed unit's ExecStart= run as the user, as their systemd would at login."""
    account = machine
    with standin.runtime_dir(account) as runtime:
        base = standin.user_manager_env(account, runtime)
        search = units.unit_paths(user=True, run_as=lambda argv: read_out(account, argv, base))
        unit = units.load(UNIT, search, account.reader())
        specifiers = standin.user_specifiers(account, runtime, UNIT)
        notify = standin.NotifySocket(runtime / "notify", account)
        env = {
            **base,
            **units.environment(unit, specifiers, account.reader()),
            "NOTIFY_SOCKET": str(notify.path),
        }
        argv = standin.sandbox_prefix(unit) + units.exec_start(unit, specifiers)
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=account.home,  # a user manager's services start in the home directory
            umask=units.umask(unit),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **account.identity(),
        )
        handle = Agent(account, unit, env, proc, notify, account.home / "Dropline")
        try:
            yield handle
        finally:
            handle.stop()
            notify.close()


def read_out(account: standin.Account, argv: list[str], env: dict[str, str]) -> str:
    done = account.run(argv, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_key_reaches_the_agent_only_through_a_drop_in_its_user_can_read(
    agent: Agent,
) -> None:
    assert agent.unit.path == Path("/usr/lib/systemd/user") / UNIT
    assert agent.unit.dropins == (DROPIN_DIR / "key.conf",)
    assert agent.env["DROPLINE_API_KEY"].startswith("dlk_")
    assert "DROPLINE_API_KEY" not in POLICY.read_text()
    # Root-only, the same drop-in is skipped by the user's manager: no key at all.
    key_conf = DROPIN_DIR / "key.conf"
    key_conf.chmod(0o600)
    try:
        search = [agent.unit.path.parent, DROPIN_DIR.parent]
        hidden = units.load(UNIT, search, agent.account.reader())
    finally:
        key_conf.chmod(0o640)
    assert hidden.dropins == ()
    assert "DROPLINE_API_KEY" not in units.environment(
        hidden, {"h": "/nonexistent"}, agent.account.reader()
    )


def test_agent_reports_ready_to_its_manager(agent: Agent) -> None:
    assert agent.notify.wait_for("READY=1"), f"no READY=1: {agent.notify.messages}"
    assert agent.proc.poll() is None


def test_dropped_file_arrives_on_the_server_with_the_same_sha256(
    agent: Agent, server: Server
) -> None:
    assert agent.notify.wait_for("READY=1")
    content = os.urandom(300_000)
    staged = agent.account.home / "report.pdf"
    staged.write_bytes(content)
    os.chown(staged, agent.account.uid, agent.account.gid)
    # The user drops it in (cp as the user): nothing else is typed.
    copied = agent.account.run(["cp", str(staged), str(agent.folder / "report.pdf")])
    assert copied.returncode == 0, copied.stderr
    expected = hashlib.sha256(content).hexdigest()

    def arrived() -> bool:
        resp = server.metadata("/report.pdf")
        return resp.status_code == 200 and resp.json()["sha256"] == expected

    eventually(arrived, "report.pdf on the server with its SHA-256", timeout=60)


def test_doctor_as_the_user_reports_ok(agent: Agent) -> None:
    """Run from the user's session (which has no key in its environment: only the
    service has), every check passes."""
    assert agent.notify.wait_for("READY=1")
    session = {k: agent.env[k] for k in ("HOME", "USER", "LOGNAME", "SHELL", "PATH")}
    session["XDG_RUNTIME_DIR"] = agent.env["XDG_RUNTIME_DIR"]
    done = agent.account.run(["/usr/bin/dropline-agent", "doctor"], env=session)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = [
        re.fullmatch(r"\[(ok|FAIL)\s*\] ([^:]+): .*", line) for line in done.stdout.splitlines()
    ]
    assert checks and all(c is not None and c.group(1) == "ok" for c in checks), done.stdout
    names = {c.group(2) for c in checks if c is not None}
    assert {"config", "agent", "credentials", "server", f"folder {agent.folder}"} <= names


def test_stop_then_purge_leaves_the_users_files(agent: Agent) -> None:
    assert agent.stop() == 0
    assert agent.notify.wait_for("STOPPING=1", timeout=5), agent.notify.messages
    debinstall.apt("purge", "dropline")
    assert not POLICY.exists() and not Path("/opt/dropline").exists()
    home = agent.account.home
    kept = [home / "Dropline" / "report.pdf", home / ".config" / "dropline"]
    for path in kept:
        assert path.exists(), f"{path} was removed by the purge"
        assert path.stat().st_uid == agent.account.uid
    # The drop-in is the administrator's file, not the package's: a purge keeps it.
    assert (DROPIN_DIR / "key.conf").exists()
