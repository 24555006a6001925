"""Long-poll wake-ups across nodes (LISTEN/NOTIFY): two servers on one PostgreSQL database,
a write through one wakes a long-poll the other holds; a listener whose connection the
database ends connects again and wakes its waiters."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import psycopg
import pytest

from dropline.server.files.change_wakeups import (
    APPLICATION_NAME,
    CHANNEL,
    ChangeBroadcast,
    ChangeListener,
    wire,
)
from dropline.server.files.changes import ChangeNotifier
from dropline.server.files.records import Change, Entry, FileHook
from dropline.server.identity.accounts import Principal
from dropline.server.settings import Settings
from dropline.server.storage.db import Database
from dropline.server.storage.migrations import migrate
from tests.support.live import LiveServer, running_server


def listener_pids(url: str) -> list[int]:
    """The backends of the change listeners connected to ``url``'s database."""
    dsn = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = %s AND query LIKE 'LISTEN%%'",
            (APPLICATION_NAME,),
        ).fetchall()
    return sorted(int(row[0]) for row in rows)


def wait_for(condition: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def waiting(live: LiveServer) -> int:
    notifier: ChangeNotifier = live.app.state.changes.notifier  # type: ignore[attr-defined]
    return notifier.waiting()


class HeldLongPoll(threading.Thread):
    """``GET /api/v1/changes/wait`` in a thread; ``answered_at`` when it came back."""

    def __init__(self, url: str, key: str, cursor: str, timeout: float = 30) -> None:
        super().__init__(daemon=True)
        self.url, self.key, self.cursor, self.timeout = url, key, cursor, timeout
        self.page: dict[str, object] = {}
        self.answered_at = 0.0

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=self.timeout + 10) as c:
            r = c.get(
                "/api/v1/changes/wait",
                params={"cursor": self.cursor, "timeout": self.timeout},
                headers={"Authorization": f"Bearer {self.key}"},
            )
        self.answered_at = time.monotonic()
        r.raise_for_status()
        self.page = r.json()


def test_a_write_through_one_server_wakes_a_long_poll_held_by_another(
    tmp_path: Path, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DROPLINE_DATABASE_URL", postgres_url)
    with (
        running_server(Settings(data_dir=tmp_path / "a", port=0)) as a,
        running_server(Settings(data_dir=tmp_path / "b", port=0)) as b,
    ):
        key = a.new_key()
        wait_for(lambda: len(listener_pids(postgres_url)) == 2)
        auth = {"Authorization": f"Bearer {key}"}
        cursor = httpx.get(b.url + "/api/v1/changes/latest-cursor", headers=auth).json()["cursor"]
        held = HeldLongPoll(b.url, key, cursor)
        held.start()
        wait_for(lambda: waiting(b) == 1)
        r = httpx.post(a.url + "/api/v1/folders", json={"path": "/from-a"}, headers=auth)
        assert r.status_code == 201, r.text
        written = time.monotonic()
        held.join(timeout=30)
        assert held.page, "the long-poll never answered"
        assert held.answered_at - written < 1.0
        assert [c["entry"]["path"] for c in held.page["changes"]] == ["/from-a"]  # type: ignore[attr-defined]


def test_a_killed_listener_connection_reconnects_and_wakes_its_waiters(postgres_url: str) -> None:
    db = Database(postgres_url)
    migrate(db)

    async def scenario() -> None:
        notifier = ChangeNotifier()
        notifier.bind(asyncio.get_running_loop())
        listener = ChangeListener(db, notifier)
        task = asyncio.create_task(listener.run())
        try:
            await asyncio.wait_for(listener.connected.wait(), 15)
            [first] = await asyncio.to_thread(listener_pids, postgres_url)
            held = notifier.register("space-1")
            untouched = notifier.register("space-2")
            admin = postgres_url.replace("postgresql+psycopg://", "postgresql://")
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute("SELECT pg_terminate_backend(%s)", (first,))
            # Nothing was notified: the reconnect itself wakes every waiter, which then
            # re-reads whatever was committed while nobody listened.
            await asyncio.wait_for(held, 10)
            assert untouched.done()
            [second] = await asyncio.to_thread(listener_pids, postgres_url)
            assert second != first
            # And it listens again: another session's NOTIFY wakes only its space.
            again, other = notifier.register("space-3"), notifier.register("space-4")
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f"NOTIFY {CHANNEL}, 'space-3'")
            await asyncio.wait_for(again, 1.0)
            await asyncio.sleep(0.2)
            assert not other.done()
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    try:
        asyncio.run(scenario())
    finally:
        db.dispose()


def principal_of(space: str) -> Principal:
    return Principal("tenant", space, "credential", "api_key", frozenset())


def test_each_committed_write_notifies_each_space_it_changed_once(postgres_url: str) -> None:
    """The NOTIFY is part of the write's transaction: a rolled-back write sends nothing,
    and a write of many changes sends one notification per space."""
    db = Database(postgres_url)
    broadcast = ChangeBroadcast()
    entry = Entry("e", "a", "/a", "folder", 0, None, "r", 0.0, None)
    change = Change(seq=1, action="created", old_path=None, entry=entry)
    admin = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    try:
        with psycopg.connect(admin, autocommit=True) as listening:
            listening.execute(f"LISTEN {CHANNEL}")
            with pytest.raises(RuntimeError), db.write() as conn:
                broadcast.recorded(conn, principal_of("space-0"), change)
                raise RuntimeError("the write fails after its change rows")
            with db.write() as conn:
                for space in ("space-1", "space-2", "space-1", "space-1"):
                    broadcast.recorded(conn, principal_of(space), change)
            with db.write() as conn:  # a new transaction on the same pooled connection
                broadcast.recorded(conn, principal_of("space-1"), change)
            got = [n.payload for n in listening.notifies(timeout=1.0)]
        assert got == ["space-1", "space-2", "space-1"]
    finally:
        db.dispose()


def test_on_sqlite_nothing_is_broadcast_or_listened_to(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'one.db'}")
    hooks: list[FileHook] = []
    try:
        assert wire(db, ChangeNotifier(), hooks) is None
        assert hooks == []
    finally:
        db.dispose()
