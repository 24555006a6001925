"""The engine's durable memory, one SQLite file per engine (WAL, batched transactions).

It holds, per sync folder: the base state of every synced path, the queue of work not
done yet (written before the work starts, so a crash loses nothing), transfer state
for resuming (tus URL, partial download), per-file issues with their backoff, the
remote cursor; and the transfer history. Used from the engine's event loop only;
scanner threads read through :meth:`Journal.reader` (WAL lets readers run beside the
writer). A journal that fails its integrity check at open is set aside and a new one
started (:mod:`dropline.sync.journal_check`); :attr:`Journal.damaged` says so.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlite_utils

from dropline.sync.journal_check import open_sound
from dropline.sync.journal_migrations import migrate
from dropline.sync.records import Base, Remote
from dropline.sync.types import Direction, HistoryQuery, HistoryRow, Issue, Result

FILE_NAME = "journal.sqlite3"

_BASE_COLS = "path, is_dir, size, mtime_ns, inode, sha256, remote_id, rev"


def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    if not readonly:
        conn.execute("PRAGMA journal_mode=WAL")
        # NORMAL is durable across a crash of this process under WAL; only a power cut
        # can lose the last commits, and a rescan recovers from that.
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _base(row: tuple[Any, ...]) -> Base:
    return Base(bool(row[1]), row[2] or 0, row[3] or 0, row[4] or 0, row[5], row[6], row[7])


def remote_to_json(remote: Remote | None) -> str:
    if remote is None:
        return "null"
    return json.dumps(
        [remote.id, remote.is_dir, remote.size, remote.sha256, remote.rev, remote.mtime]
    )


def remote_from_json(text: str) -> Remote | None:
    data = json.loads(text)
    if data is None:
        return None
    return Remote(data[0], bool(data[1]), int(data[2]), data[3], data[4], data[5])


class BaseReader:
    """Read-only lookups of one folder's base: what the scanner needs."""

    def __init__(self, conn: sqlite3.Connection, folder_id: int) -> None:
        self._conn = conn
        self.folder_id = folder_id

    def children(self, parent: str) -> dict[str, Base]:
        rows = self._conn.execute(
            f"SELECT {_BASE_COLS} FROM base WHERE folder_id = ? AND parent = ?",
            (self.folder_id, parent),
        ).fetchall()
        return {row[0].rpartition("/")[2]: _base(row) for row in rows}

    def signatures(self, parent: str) -> dict[str, tuple[int, int, int, int]]:
        """``(is_dir, size, mtime_ns, inode)`` of each child, as plain tuples: a restart
        compares 100,000 of them with the disk, and building a :class:`Base` for each
        cost more than the comparison."""
        rows = self._conn.execute(
            "SELECT path, is_dir, ifnull(size, 0), ifnull(mtime_ns, 0), ifnull(inode, 0) "
            "FROM base WHERE folder_id = ? AND parent = ?",
            (self.folder_id, parent),
        ).fetchall()
        return {row[0].rpartition("/")[2]: row[1:] for row in rows}

    def get(self, path: str) -> Base | None:
        row = self._conn.execute(
            f"SELECT {_BASE_COLS} FROM base WHERE folder_id = ? AND path = ?",
            (self.folder_id, path),
        ).fetchone()
        return None if row is None else _base(row)

    def descendants(self, path: str) -> dict[str, Base]:
        if not path:
            rows = self._conn.execute(
                f"SELECT {_BASE_COLS} FROM base WHERE folder_id = ?", (self.folder_id,)
            ).fetchall()
        else:
            rows = self._conn.execute(
                f"SELECT {_BASE_COLS} FROM base WHERE folder_id = ? AND path >= ? AND path < ?",
                (self.folder_id, path + "/", path + "0"),  # "0" sorts right after "/"
            ).fetchall()
        return {row[0]: _base(row) for row in rows}

    def close(self) -> None:
        self._conn.close()


@dataclass(frozen=True, slots=True)
class QueueItem:
    path: str
    local: bool  # look at the disk
    remote_known: bool  # the feed told us the server's state...
    remote: Remote | None  # ...which is this (None: gone)
    added_at: float


@dataclass(frozen=True, slots=True)
class TransferRow:
    path: str
    direction: Direction
    url: str | None
    partial: str | None
    sha256: str | None
    size: int
    mtime_ns: int
    inode: int
    remote_id: str | None
    rev: str | None


class Journal:
    def __init__(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.path = home / FILE_NAME
        # Where a journal that failed its integrity check was set aside (None: it was
        # sound). The engine then rebuilds what it knew from the server and the disk.
        self.damaged: Path | None
        self.conn, self.damaged = open_sound(self.path, _connect)
        self.db = sqlite_utils.Database(self.conn)
        self._depth = 0
        migrate(self.db)

    def close(self) -> None:
        self.conn.close()

    def reader(self, folder_id: int) -> BaseReader:
        """A separate read-only connection, for a scan running in another thread."""
        return BaseReader(_connect(self.path, readonly=True), folder_id)

    def base_reader(self, folder_id: int) -> BaseReader:
        """Lookups on the journal's own connection (event-loop thread only)."""
        return BaseReader(self.conn, folder_id)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One commit for everything inside; nested uses join the outer transaction."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.conn.execute("BEGIN IMMEDIATE")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self.conn.execute("ROLLBACK")
            raise
        self._depth = 0
        self.conn.execute("COMMIT")

    # Folders

    def folder_id(self, local: str, remote: str) -> int:
        row = self.conn.execute(
            "SELECT id, remote FROM folders WHERE local = ?", (local,)
        ).fetchone()
        if row is not None:
            if row[1] != remote:
                # Pointed somewhere else: the old base says nothing about the new place.
                self.forget_folder(row[0])
                return self.folder_id(local, remote)
            return int(row[0])
        cur = self.conn.execute(
            "INSERT INTO folders (local, remote, added_at) VALUES (?, ?, ?)",
            (local, remote, time.time()),
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def forget_folder(self, folder_id: int) -> None:
        with self.transaction():
            for table in ("base", "queue", "transfers", "issues"):
                self.conn.execute(f"DELETE FROM {table} WHERE folder_id = ?", (folder_id,))
            self.conn.execute("DELETE FROM folders WHERE id = ?", (folder_id,))

    def folder_names(self) -> dict[int, str]:
        return {r[0]: r[1] for r in self.conn.execute("SELECT id, local FROM folders")}

    def cursor(self, folder_id: int) -> str | None:
        row = self.conn.execute("SELECT cursor FROM folders WHERE id = ?", (folder_id,)).fetchone()
        return None if row is None else row[0]

    def set_cursor(self, folder_id: int, cursor: str | None) -> None:
        self.conn.execute("UPDATE folders SET cursor = ? WHERE id = ?", (cursor, folder_id))

    # Base

    def get_base(self, folder_id: int, path: str) -> Base | None:
        return self.base_reader(folder_id).get(path)

    def descendants(self, folder_id: int, path: str) -> dict[str, Base]:
        return self.base_reader(folder_id).descendants(path)

    def put_base(self, folder_id: int, path: str, base: Base | None) -> None:
        if base is None:
            self.conn.execute(
                "DELETE FROM base WHERE folder_id = ? AND path = ?", (folder_id, path)
            )
            return
        self.conn.execute(
            "INSERT OR REPLACE INTO base (folder_id, path, parent, is_dir, size, mtime_ns, inode,"
            " sha256, remote_id, rev) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                folder_id,
                path,
                path.rpartition("/")[0],
                int(base.is_dir),
                base.size,
                base.mtime_ns,
                base.inode,
                base.sha256,
                base.remote_id,
                base.rev,
            ),
        )

    def forget_subtree(self, folder_id: int, path: str) -> None:
        with self.transaction():
            self.put_base(folder_id, path, None)
            for p in self.descendants(folder_id, path):
                self.put_base(folder_id, p, None)

    def move_base(self, folder_id: int, src: str, dst: str, moved: Base) -> None:
        """``src`` (and everything under it) now lives at ``dst``."""
        with self.transaction():
            children = self.descendants(folder_id, src)
            self.put_base(folder_id, src, None)
            self.put_base(folder_id, dst, moved)
            for p, b in children.items():
                self.put_base(folder_id, p, None)
                self.put_base(folder_id, dst + p[len(src) :], b)

    def base_by_remote_id(self, folder_id: int, remote_id: str) -> tuple[str, Base] | None:
        row = self.conn.execute(
            f"SELECT {_BASE_COLS} FROM base WHERE folder_id = ? AND remote_id = ?",
            (folder_id, remote_id),
        ).fetchone()
        return None if row is None else (row[0], _base(row))

    def count_files(self, folder_id: int) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM base WHERE folder_id = ? AND is_dir = 0", (folder_id,)
        ).fetchone()
        return int(row[0])

    # Queue

    def enqueue_local(self, folder_id: int, paths: Iterable[str]) -> None:
        now = time.time()
        with self.transaction():
            self.conn.executemany(
                "INSERT OR IGNORE INTO queue (folder_id, path, source, added_at)"
                " VALUES (?, ?, 'local', ?)",
                ((folder_id, p, now) for p in paths),
            )

    def enqueue_remote(self, folder_id: int, items: Iterable[tuple[str, Remote | None]]) -> None:
        now = time.time()
        with self.transaction():
            self.conn.executemany(
                "INSERT OR REPLACE INTO queue (folder_id, path, source, remote, added_at)"
                " VALUES (?, ?, 'remote', ?, ?)",
                ((folder_id, p, remote_to_json(r), now) for p, r in items),
            )

    def pending(
        self, folder_id: int, limit: int = 10_000, skip: Collection[str] = ()
    ) -> list[QueueItem]:
        """The oldest queued paths, up to ``limit``, leaving out those in ``skip`` (being
        transferred or held): a round then takes the next work behind what is running,
        instead of finding the same running paths at the head of the queue each time."""
        rows = self.conn.execute(
            "SELECT path, source, remote, added_at FROM queue WHERE folder_id = ?"
            " ORDER BY added_at, path LIMIT ?",
            (folder_id, limit + len(skip)),
        ).fetchall()
        merged: dict[str, QueueItem] = {}
        for path, source, remote, added in rows:
            if path in skip:
                continue
            old = merged.get(path)
            if old is None and len(merged) >= limit:
                break
            local = source == "local" or (old is not None and old.local)
            known = source == "remote" or (old is not None and old.remote_known)
            state = (
                remote_from_json(remote) if source == "remote" else (old.remote if old else None)
            )
            # The newest row read: done with the item, done with every row it was made
            # of (rows come oldest first). With the oldest, a remote row queued beside a
            # local one outlived the round that planned it and sat in the queue until
            # some later wake-up (a minute after a restart that interrupted a publish).
            merged[path] = QueueItem(path, local, known, state, added)
        return list(merged.values())

    def pending_count(self, folder_id: int) -> int:
        row = self.conn.execute(
            "SELECT count(DISTINCT path) FROM queue WHERE folder_id = ?", (folder_id,)
        ).fetchone()
        return int(row[0])

    def dequeue(self, folder_id: int, item: QueueItem) -> None:
        """Done with this item; a newer entry for the same path that arrived meanwhile stays."""
        # "+added_at": look the row up by its primary key. Left plain, SQLite chose the
        # (folder_id, added_at) index, and a burst queued in one go shares one added_at:
        # every dequeue scanned the whole burst (10,000 files: 8.6 s of the engine's time).
        self.conn.execute(
            "DELETE FROM queue WHERE folder_id = ? AND path = ? AND +added_at <= ?",
            (folder_id, item.path, item.added_at),
        )

    def is_queued(self, folder_id: int, path: str) -> bool:
        row = self.conn.execute(
            "SELECT 1 FROM queue WHERE folder_id = ? AND path = ? LIMIT 1", (folder_id, path)
        ).fetchone()
        return row is not None

    def dequeue_path(self, folder_id: int, path: str) -> None:
        self.conn.execute("DELETE FROM queue WHERE folder_id = ? AND path = ?", (folder_id, path))

    # Transfers

    def transfer(self, folder_id: int, path: str, direction: Direction) -> TransferRow | None:
        row = self.conn.execute(
            "SELECT path, direction, url, partial, sha256, size, mtime_ns, inode, remote_id, rev"
            " FROM transfers WHERE folder_id = ? AND path = ? AND direction = ?",
            (folder_id, path, str(direction)),
        ).fetchone()
        if row is None:
            return None
        return TransferRow(
            row[0],
            Direction(row[1]),
            row[2],
            row[3],
            row[4],
            row[5] or 0,
            row[6] or 0,
            row[7] or 0,
            row[8],
            row[9],
        )

    def transfers(self, folder_id: int) -> list[TransferRow]:
        rows = self.conn.execute(
            "SELECT path, direction FROM transfers WHERE folder_id = ?", (folder_id,)
        ).fetchall()
        found = [self.transfer(folder_id, p, Direction(d)) for p, d in rows]
        return [t for t in found if t is not None]

    def put_transfer(self, folder_id: int, row: TransferRow) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO transfers (folder_id, path, direction, url, partial, sha256,"
            " size, mtime_ns, inode, remote_id, rev, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                folder_id,
                row.path,
                str(row.direction),
                row.url,
                row.partial,
                row.sha256,
                row.size,
                row.mtime_ns,
                row.inode,
                row.remote_id,
                row.rev,
                time.time(),
            ),
        )

    def drop_transfer(self, folder_id: int, path: str, direction: Direction) -> None:
        self.conn.execute(
            "DELETE FROM transfers WHERE folder_id = ? AND path = ? AND direction = ?",
            (folder_id, path, str(direction)),
        )

    # Issues

    def raise_issue(
        self,
        folder_id: int,
        path: str,
        kind: str,
        message: str,
        hint: str,
        *,
        retry_at: float | None = None,
        related: tuple[str, ...] = (),
    ) -> tuple[Issue, bool]:
        """Record (or refresh) the issue of this kind on this path; True when it is new."""
        now = time.time()
        row = self.conn.execute(
            "SELECT id, attempts, since FROM issues WHERE folder_id = ? AND path = ? AND kind = ?",
            (folder_id, path, kind),
        ).fetchone()
        if row is None:
            cur = self.conn.execute(
                "INSERT INTO issues (folder_id, path, kind, message, hint, since, retry_at,"
                " attempts, related) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?)",
                (folder_id, path, kind, message, hint, now, retry_at, json.dumps(related)),
            )
            issue_id, new = cur.lastrowid, True
        else:
            issue_id, new = row[0], False
            self.conn.execute(
                "UPDATE issues SET message = ?, hint = ?, retry_at = ?, attempts = attempts + 1,"
                " related = ? WHERE id = ?",
                (message, hint, retry_at, json.dumps(related), issue_id),
            )
        assert issue_id is not None
        issue = self.issue(issue_id)
        assert issue is not None
        return issue, new

    def attempts(self, folder_id: int, path: str, kind: str) -> int:
        row = self.conn.execute(
            "SELECT attempts FROM issues WHERE folder_id = ? AND path = ? AND kind = ?",
            (folder_id, path, kind),
        ).fetchone()
        return 0 if row is None else int(row[0])

    def clear_issues(
        self, folder_id: int, path: str, kinds: Iterable[str] | None = None
    ) -> list[int]:
        rows = self.conn.execute(
            "SELECT id, kind FROM issues WHERE folder_id = ? AND path = ?", (folder_id, path)
        ).fetchall()
        wanted = None if kinds is None else set(kinds)
        ids = [r[0] for r in rows if wanted is None or r[1] in wanted]
        for issue_id in ids:
            self.conn.execute("DELETE FROM issues WHERE id = ?", (issue_id,))
        return ids

    def _issues(self, where: str, args: tuple[Any, ...]) -> list[Issue]:
        names = self.folder_names()
        rows = self.conn.execute(
            "SELECT id, folder_id, path, kind, message, hint, since, retry_at, related"
            f" FROM issues {where} ORDER BY id",
            args,
        ).fetchall()
        return [
            Issue(
                r[0],
                names.get(r[1], "?"),
                r[2],
                r[3],
                r[4],
                r[5],
                r[6],
                r[7],
                tuple(json.loads(r[8] or "[]")),
            )
            for r in rows
        ]

    def issues(self, folder_id: int | None = None) -> list[Issue]:
        if folder_id is None:
            return self._issues("", ())
        return self._issues("WHERE folder_id = ?", (folder_id,))

    def issue(self, issue_id: int) -> Issue | None:
        found = self._issues("WHERE id = ?", (issue_id,))
        return found[0] if found else None

    def issue_folder(self, issue_id: int) -> int | None:
        row = self.conn.execute("SELECT folder_id FROM issues WHERE id = ?", (issue_id,)).fetchone()
        return None if row is None else int(row[0])

    def delete_issue(self, issue_id: int) -> None:
        self.conn.execute("DELETE FROM issues WHERE id = ?", (issue_id,))

    def due_retries(self, folder_id: int, now: float) -> list[str]:
        rows = self.conn.execute(
            "SELECT DISTINCT path FROM issues WHERE folder_id = ? AND retry_at IS NOT NULL"
            " AND retry_at <= ?",
            (folder_id, now),
        ).fetchall()
        return [r[0] for r in rows]

    def next_retry(self, folder_id: int) -> float | None:
        row = self.conn.execute(
            "SELECT min(retry_at) FROM issues WHERE folder_id = ? AND retry_at IS NOT NULL",
            (folder_id,),
        ).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # History

    def add_history(
        self,
        folder: str,
        path: str,
        direction: Direction,
        size: int,
        duration: float,
        result: Result,
        error: str | None = None,
    ) -> HistoryRow:
        now = time.time()
        cur = self.conn.execute(
            "INSERT INTO history (time, folder, path, direction, size, duration, result, error)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (now, folder, path, str(direction), size, duration, str(result), error),
        )
        assert cur.lastrowid is not None
        return HistoryRow(
            cur.lastrowid, now, folder, path, direction, size, duration, result, error
        )

    def history(self, query: HistoryQuery) -> list[HistoryRow]:
        clauses: list[str] = []
        args: list[Any] = []
        filters: Mapping[str, Any] = {
            "id < ?": query.before_id,
            "folder = ?": query.folder,
            "direction = ?": None if query.direction is None else str(query.direction),
            "result = ?": None if query.result is None else str(query.result),
            "time >= ?": query.since,
            "time < ?": query.until,
        }
        for clause, value in filters.items():
            if value is not None:
                clauses.append(clause)
                args.append(value)
        if query.search:
            clauses.append("lower(path) LIKE ? ESCAPE '\\'")
            escaped = (
                query.search.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            )
            args.append(f"%{escaped}%")
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self.conn.execute(
            "SELECT id, time, folder, path, direction, size, duration, result, error"
            f" FROM history {where} ORDER BY id DESC LIMIT ?",
            (*args, max(0, min(query.limit, 10_000))),
        ).fetchall()
        return [
            HistoryRow(r[0], r[1], r[2], r[3], Direction(r[4]), r[5], r[6], Result(r[7]), r[8])
            for r in rows
        ]
