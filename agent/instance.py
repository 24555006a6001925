"""One agent per home (an fcntl lock that says who holds it) and systemd readiness.

The lock is advisory and dies with the process, so a crashed agent never blocks
the next start; the file's content only serves the message for a second start.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)


class AlreadyRunning(Exception):
    def __init__(self, lock_path: Path, holder: dict[str, Any]) -> None:
        self.holder = holder
        pid = holder.get("pid", "unknown")
        sock = holder.get("socket", "unknown")
        super().__init__(
            f"another agent is already running for this home (PID {pid}, control socket {sock}); "
            f"stop it first, or use --home for a separate agent"
        )


class InstanceLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def acquire(self, socket_path: Path) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the process lifetime
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            try:
                holder = json.loads(fh.read() or "{}")
            except ValueError:
                holder = {}
            fh.close()
            raise AlreadyRunning(self.path, holder) from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "socket": str(socket_path)}))
        fh.flush()
        os.chmod(self.path, 0o600)
        self._fh = fh

    def release(self) -> None:
        if self._fh is None:
            return
        with contextlib.suppress(OSError):
            self._fh.seek(0)
            self._fh.truncate()
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None


def sd_notify(state: str) -> bool:
    """Send ``state`` (for example ``READY=1``) to systemd when NOTIFY_SOCKET is set.

    The protocol is one datagram on a Unix socket; a dependency (sdnotify,
    systemd-python) would add a package, or a C extension, for these few lines.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
        return True
    except OSError as exc:
        log.warning("could not notify systemd: %s", exc)
        return False
