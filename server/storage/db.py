"""The database handle: one SQLAlchemy Core engine, read connections and write transactions.

SQLite (WAL) is the embedded default; PostgreSQL (``postgresql+psycopg://``) serves
several nodes. Writes go through :meth:`Database.write` and, on either dialect, one
writer at a time commits: SQLite because it has a single writer, PostgreSQL because
each write transaction first takes one transaction-level advisory lock shared by every
node. So every check-then-write invariant of the services holds across nodes, and
the change feed's sequence numbers are handed out in commit order (readers paging
with ``seq > cursor`` can never skip a change that commits late). Readers never wait:
WAL on SQLite, MVCC on PostgreSQL. Dialect differences stay in this package
(``dropline.server.storage``), never in the services.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text

# Connections one node keeps open to PostgreSQL (and as many again in a burst). Each
# request holds one for a few milliseconds and long-polls hold none while they wait,
# so a small pool serves a busy node; the database's max_connections must cover
# (pool size x 2) x nodes, plus the operator's own sessions.
POOL_SIZE_ENV = "DROPLINE_DATABASE_POOL_SIZE"
DEFAULT_POOL_SIZE = 10
# pg_advisory_xact_lock's key for "a write transaction is running" (any fixed number
# no other advisory lock uses; the leases and migrations choose their own).
WRITER_LOCK_KEY = 0x44524F50  # "DROP"
_TAKE_WRITER_LOCK = text(f"SELECT pg_advisory_xact_lock({WRITER_LOCK_KEY})")


def pool_size_from_env() -> int:
    raw = os.environ.get(POOL_SIZE_ENV, "").strip()
    if not raw:
        return DEFAULT_POOL_SIZE
    try:
        size = int(raw)
    except ValueError as exc:
        raise ValueError(f"{POOL_SIZE_ENV} must be an integer, got {raw!r}") from exc
    if size < 1:
        raise ValueError(f"{POOL_SIZE_ENV} must be at least 1, got {size}")
    return size


class Database:
    def __init__(self, url: str, *, pool_size: int | None = None) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            kwargs["pool_size"] = 16
            kwargs["max_overflow"] = 16
        elif self.is_postgres:
            size = pool_size if pool_size is not None else pool_size_from_env()
            kwargs["pool_size"] = size
            kwargs["max_overflow"] = size
            # A node outlives a database restart or failover: stale connections are
            # noticed on checkout instead of failing the request that drew them.
            kwargs["pool_pre_ping"] = True
        self.pool_size: int | None = kwargs.get("pool_size")
        self.engine: Engine = create_engine(url, **kwargs)
        # Writers of this process queue here rather than on the database's lock, so one
        # node never holds more than one connection waiting for it.
        self._write_lock = threading.Lock()
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._disposed = False
        # A connection still in use when the handle is disposed (a worker thread finishing
        # its statement at shutdown) is closed when it comes back, not left open to the
        # garbage collector.
        event.listen(self.engine, "checkin", self._close_after_dispose)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def read(self) -> Iterator[Connection]:
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write(self, *, savepoints: bool = False) -> Iterator[Connection]:
        """One write transaction: committed on success, rolled back on any exception.

        ``savepoints``: the caller will use ``conn.begin_nested()`` inside it.
        """
        with self._write_lock, self.engine.begin() as conn:
            if self.is_sqlite:
                if savepoints:
                    # pysqlite opens its transaction only at the first INSERT, UPDATE or
                    # DELETE: a SAVEPOINT before that would start the transaction itself
                    # and its RELEASE would commit it. Opened here, every savepoint nests
                    # inside it.
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
            elif self.is_postgres:
                # Released by COMMIT or ROLLBACK, after the commit is visible to others:
                # the next writer, on any node, starts from everything this one wrote.
                conn.execute(_TAKE_WRITER_LOCK)
            yield conn

    def dispose(self) -> None:
        self._disposed = True
        self.engine.dispose()

    def _close_after_dispose(self, dbapi_conn: Any, _record: Any) -> None:
        if self._disposed and dbapi_conn is not None:
            dbapi_conn.close()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across application crashes under WAL; only a power cut can
    # lose the last commits, never corrupt the database.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
