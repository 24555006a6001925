"""Standing in for systemd where it is not PID 1: who a service runs as, the files it may
read, the environment and specifiers its manager gives it, and the notify socket a
Type=notify service reports to. The unit's own settings come from ``units``."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.packaging import units

# The PATH systemd gives services of the system manager and of user managers.
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
USER_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]  # every group, as initgroups() gives a service its User='s
    home: Path
    shell: str

    @classmethod
    def of(cls, name: str) -> Account:
        pw = pwd.getpwnam(name)
        groups = tuple(os.getgrouplist(name, pw.pw_gid))
        return cls(name, pw.pw_uid, pw.pw_gid, groups, Path(pw.pw_dir), pw.pw_shell)

    def identity(self) -> dict[str, Any]:
        """``subprocess`` arguments that make a child this account, groups and all."""
        return {"user": self.uid, "group": self.gid, "extra_groups": list(self.groups)}

    def run(
        self, argv: list[str], env: Mapping[str, str] | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=dict(env) if env is not None else {"PATH": SYSTEM_PATH, "HOME": str(self.home)},
            cwd=self.home if self.home.is_dir() else "/",
            stdin=subprocess.DEVNULL,
            check=False,
            **self.identity(),
        )

    def reader(self) -> units.Reader:
        """Reads a file with this account's rights, as its user manager reads drop-ins."""

        def read(path: Path) -> str | None:
            done = self.run(["cat", "--", str(path)])
            return done.stdout if done.returncode == 0 else None

        return read

    def group_names(self) -> set[str]:
        return {grp.getgrgid(g).gr_name for g in self.groups}


def user_manager_env(account: Account, runtime: Path) -> dict[str, str]:
    """What ``systemd --user`` puts in the environment of each of its services."""
    return {
        "HOME": str(account.home),
        "USER": account.name,
        "LOGNAME": account.name,
        "SHELL": account.shell,
        "PATH": USER_PATH,
        "XDG_RUNTIME_DIR": str(runtime),
        "INVOCATION_ID": uuid.uuid4().hex,
    }


def system_service_env(account: Account) -> dict[str, str]:
    """What the system manager puts in the environment of a service with User=."""
    return {
        "HOME": str(account.home),
        "USER": account.name,
        "LOGNAME": account.name,
        "SHELL": account.shell,
        "PATH": SYSTEM_PATH,
        "INVOCATION_ID": uuid.uuid4().hex,
    }


def user_specifiers(account: Account, runtime: Path, unit: str) -> dict[str, str]:
    """The specifiers of systemd.unit(5) as a user manager expands them."""
    return {
        "h": str(account.home),
        "u": account.name,
        "U": str(account.uid),
        "g": grp.getgrgid(account.gid).gr_name,
        "G": str(account.gid),
        "t": str(runtime),
        "E": str(account.home / ".config"),
        "S": str(account.home / ".local" / "state"),
        "C": str(account.home / ".cache"),
        "T": "/tmp",
        "n": unit,
        "N": unit.rsplit(".", 1)[0],
        "p": unit.rsplit(".", 1)[0].split("@")[0],
    }


def system_specifiers(account: Account, unit: str) -> dict[str, str]:
    """The specifiers as the system manager expands them for a service with User=."""
    return {
        **user_specifiers(account, Path("/run"), unit),
        "E": "/etc",
        "S": "/var/lib",
        "C": "/var/cache",
    }


@contextmanager
def runtime_dir(account: Account) -> Iterator[Path]:
    """``/run/user/UID``, made as logind makes it at login (owned by the user, 0700) and
    removed afterwards, unless it was already there."""
    path = Path("/run/user") / str(account.uid)
    made = not path.exists()
    if made:
        path.mkdir(mode=0o700, parents=True)
        os.chown(path, account.uid, account.gid)
    try:
        yield path
    finally:
        if made:
            shutil.rmtree(path, ignore_errors=True)


class NotifySocket:
    """The datagram socket of sd_notify(3), as the manager offers it in NOTIFY_SOCKET."""

    def __init__(self, path: Path, owner: Account) -> None:
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        os.chown(path, owner.uid, owner.gid)
        self._sock.settimeout(0.2)
        self.messages: list[str] = []

    def wait_for(self, field: str, timeout: float = 30) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(field in m.splitlines() for m in self.messages):
                return True
            try:
                self.messages.append(self._sock.recv(4096).decode())
            except TimeoutError:
                continue
        return any(field in m.splitlines() for m in self.messages)

    def close(self) -> None:
        self._sock.close()
        self.path.unlink(missing_ok=True)


def sandbox_prefix(unit: units.Unit) -> list[str]:
    """The unit's NoNewPrivileges= applied with setpriv(1), which then execs the command
    (so its PID is the main PID, as NotifyAccess=main needs)."""
    value = (unit.value("Service", "NoNewPrivileges") or "no").lower()
    return ["setpriv", "--no-new-privs"] if value in ("yes", "true", "1", "on") else []
