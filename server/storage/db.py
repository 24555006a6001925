"""The database handle: one SQLAlchemy Core engine, read connections and write transactions.

SQLite (WAL) is the embedded default. Writes go through :meth:`Database.write`,
which serialises writers in this process so SQLite never answers "database is
locked"; readers run concurrently under WAL. Only this module knows which
dialect is in use, so PostgreSQL can be added behind the same two methods.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        kwargs: dict[str, Any] = {}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            kwargs["pool_size"] = 16
            kwargs["max_overflow"] = 16
        self.engine: Engine = create_engine(url, **kwargs)
        self._write_lock = threading.Lock()
        if self.is_sqlite:
            event.listen(self.engine, "connect", _sqlite_pragmas)

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
            if savepoints and self.is_sqlite:
                # pysqlite opens its transaction only at the first INSERT, UPDATE or
                # DELETE: a SAVEPOINT before that would start the transaction itself and
                # its RELEASE would commit it. Opened here, every savepoint nests inside it.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            yield conn

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable across application crashes under WAL; only a power cut can
    # lose the last commits, never corrupt the database.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
