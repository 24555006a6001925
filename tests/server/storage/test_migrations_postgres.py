"""The migrations on PostgreSQL: the whole history applies, nodes that start at once
migrate once (the advisory lock: the others wait, then find nothing to do), a node
starting on an empty database migrates it, and a newer revision is refused."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import inspect

from dropline.server.storage.db import Database
from dropline.server.storage.migrations import LOCK_KEY, MIGRATIONS, applied, migrate, pending
from tests.support.live import ServerProcess
from tests.support.server_cli import run

ALL = [name for name, _fn in MIGRATIONS]
MIGRATE = (sys.executable, "-m", "dropline.server.cli", "migrate")


def dsn(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


def _columns(db: Database) -> dict[str, set[str]]:
    with db.read() as conn:
        found = inspect(conn)
        return {t: {c["name"] for c in found.get_columns(t)} for t in found.get_table_names()}


def test_the_whole_history_applies_on_postgresql(postgres_url: str, tmp_path: Path) -> None:
    embedded = Database(f"sqlite:///{tmp_path / 'dropline.db'}")
    try:
        migrate(embedded)
        expected = _columns(embedded)
    finally:
        embedded.dispose()
    db = Database(postgres_url)
    try:
        assert pending(db) == ALL
        assert migrate(db) == ALL
        assert (applied(db), pending(db), migrate(db)) == (ALL, [], [])
        # The same tables and columns as on SQLite.
        assert _columns(db) == expected
        with db.read() as conn:
            version = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
            record = conn.exec_driver_sql("SELECT name FROM schema_migrations ORDER BY 1").all()
    finally:
        db.dispose()
    assert {"tenants", "entries", "webhook_deliveries", "web_sessions"} <= set(expected)
    assert [v for (v,) in version] == [ALL[-1]]
    assert [n for (n,) in record] == ALL


def _waiting(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def test_two_nodes_migrating_at_once_apply_each_migration_once(
    postgres_url: str, tmp_path: Path
) -> None:
    env = {**os.environ, "DROPLINE_DATABASE_URL": postgres_url}
    with psycopg.connect(dsn(postgres_url), autocommit=True) as holder:
        # Held here first, so both nodes surely arrive while it is taken.
        holder.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        nodes = [
            subprocess.Popen(
                [*MIGRATE, "--data-dir", str(tmp_path / f"node{i}")],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for i in (1, 2)
        ]
        try:
            deadline = time.monotonic() + 60
            while _waiting(holder) < 2:
                assert time.monotonic() < deadline, "the nodes never waited for the lock"
                assert all(node.poll() is None for node in nodes), "a node did not wait"
                time.sleep(0.05)
            holder.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
            said = [node.communicate(timeout=60) for node in nodes]
        finally:
            for node in nodes:
                if node.poll() is None:
                    node.kill()
                    node.wait()
    assert [node.returncode for node in nodes] == [0, 0], said
    lines = sorted(
        [line for line in err.splitlines() if line.startswith("applied ")] for _out, err in said
    )
    assert lines == [[], [f"applied {name}" for name in ALL]]
    assert any("0 migrations applied; the database is up to date" in err for _o, err in said)
    db = Database(postgres_url)
    try:
        assert pending(db) == []
        with db.read() as conn:
            record = conn.exec_driver_sql("SELECT name FROM schema_migrations ORDER BY 1").all()
    finally:
        db.dispose()
    assert [n for (n,) in record] == ALL


def test_serve_refuses_a_database_at_a_newer_revision(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(postgres_url)
    try:
        migrate(db)
        with db.write() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '999_from_a_newer_one'")
    finally:
        db.dispose()
    monkeypatch.setenv("DROPLINE_DATABASE_URL", postgres_url)
    for command in (["serve", "--port", "0"], ["migrate"], ["migrate", "--check"]):
        refused = run(tmp_path / "data", *command, ok=False)
        assert (refused.returncode, refused.stderr.strip()) == (
            1,
            "dropline-server: this data directory was written by a newer Dropline "
            "(migration 999_from_a_newer_one); install that version or newer",
        ), command
    with psycopg.connect(dsn(postgres_url)) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            ("999_from_a_newer_one",)
        ]


def test_a_node_starting_on_an_empty_database_migrates_it(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DROPLINE_DATABASE_URL", postgres_url)
    server = ServerProcess(tmp_path / "data")
    server.start()
    try:
        assert httpx.get(server.url + "/readyz", timeout=30).json()["checks"]["database"] == "ok"
    finally:
        server.stop()
    db = Database(postgres_url)
    try:
        assert (applied(db), pending(db)) == (ALL, [])
    finally:
        db.dispose()
