"""A throwaway PostgreSQL cluster for tests: Debian's server binaries, ``initdb`` and
``pg_ctl`` in a temporary directory, listening on 127.0.0.1 (a free port) and a unix
socket in that directory; one cluster per test process, a fresh database per test.

Speed over durability: ``fsync=off``, no full-page writes, small shared buffers. The
cluster is thrown away at the end (``pg_ctl stop -m immediate``, then the postmaster's
PID if it is still there).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

PG_BIN_DIRS = (Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin"))
SUPERUSER = "dropline"
# A database created from template1 copies its files: creating one per test costs
# milliseconds, which is why each test gets its own instead of sharing and cleaning.
TEMPLATE = "template1"


def pg_bin_dir() -> Path:
    for candidate in PG_BIN_DIRS:
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    raise RuntimeError(
        "PostgreSQL server binaries not found: install Debian's postgresql (tools/system-deps.sh)"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresCluster:
    """One PostgreSQL server in its own temporary directory."""

    def __init__(self) -> None:
        self.base_dir: Path | None = None
        self.port = 0
        self.pid: int | None = None
        self._counter = itertools.count(1)
        self._migrated: str | None = None
        self._lock = threading.Lock()

    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.base_dir is not None
        return self.base_dir

    def _as_owner(self, argv: list[str]) -> list[str]:
        # The server refuses to run as root: as root, run it as Debian's postgres user.
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *argv]
        return argv

    def start(self) -> PostgresCluster:
        bin_dir = pg_bin_dir()
        self.base_dir = Path(tempfile.mkdtemp(prefix="dropline-pg-"))
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            os.chown(self.base_dir, owner.pw_uid, owner.pw_gid)
        subprocess.run(
            self._as_owner(
                [
                    str(bin_dir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    SUPERUSER,
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _attempt in range(5):
            self.port = _free_port()
            options = " ".join(
                [
                    "-c listen_addresses=127.0.0.1",
                    f"-p {self.port}",
                    f"-k {self.socket_dir}",
                    "-c fsync=off",
                    "-c synchronous_commit=off",
                    "-c full_page_writes=off",
                    "-c shared_buffers=32MB",
                    "-c max_connections=300",
                ]
            )
            started = subprocess.run(
                self._as_owner(
                    [
                        str(bin_dir / "pg_ctl"),
                        "start",
                        "-D",
                        str(self.data_dir),
                        "-w",
                        "-t",
                        "30",
                        "-l",
                        str(self.base_dir / "server.log"),
                        "-o",
                        options,
                    ]
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if started.returncode == 0:
                self.pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
                atexit.register(self.stop)
                return self
        log = (self.base_dir / "server.log").read_text(errors="replace")[-2000:]
        self.stop()
        raise RuntimeError(f"PostgreSQL did not start: {log}")

    def admin_dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} dbname={database}"

    def url(self, database: str) -> str:
        """The SQLAlchemy URL of ``database`` (psycopg 3 over loopback TCP)."""
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, template: str = TEMPLATE) -> str:
        """A new database copied from ``template`` (by default empty); returns its name."""
        with self._lock:
            name = f"test_{os.getpid()}_{next(self._counter)}"
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def migrated_template(self) -> str:
        """A database with every migration applied, made once per cluster: a server
        started on a copy of it finds nothing to migrate (a second saved per test)."""
        with self._lock:
            if self._migrated is not None:
                return self._migrated
        # Imported here: the cluster itself is useful without the server's code.
        from dropline.server.storage.db import Database
        from dropline.server.storage.migrations import migrate

        name = self.create_database()
        db = Database(self.url(name))
        try:
            migrate(db)
        finally:
            # A template must have no connections while it is copied.
            db.dispose()
        with self._lock:
            self._migrated = name
        return name

    def drop_database(self, name: str) -> None:
        # FORCE ends connections a server under test may have left behind.
        with psycopg.connect(self.admin_dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    @contextlib.contextmanager
    def fresh_database(self, *, migrated: bool = False) -> Iterator[str]:
        """The URL of a new database, dropped afterwards: empty, or with ``migrated``
        the server's schema in place."""
        name = self.create_database(self.migrated_template() if migrated else TEMPLATE)
        try:
            yield self.url(name)
        finally:
            self.drop_database(name)

    def stop(self) -> None:
        if self.base_dir is None:
            return
        if self.pid is not None:
            pg_ctl = str(pg_bin_dir() / "pg_ctl")
            subprocess.run(
                self._as_owner([pg_ctl, "stop", "-D", str(self.data_dir), "-m", "immediate", "-w"]),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _kill_if_alive(self.pid)
            self.pid = None
        shutil.rmtree(self.base_dir, ignore_errors=True)
        self.base_dir = None


def _kill_if_alive(pid: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


_shared: PostgresCluster | None = None
_shared_lock = threading.Lock()


def shared_cluster() -> PostgresCluster:
    """This process's cluster, started on first use and stopped when the process exits
    (each pytest-xdist worker is a process, so each has its own)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = PostgresCluster().start()
        return _shared


def stop_shared_cluster() -> None:
    global _shared
    with _shared_lock:
        if _shared is not None:
            _shared.stop()
            _shared = None
