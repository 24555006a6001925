"""Upgrades and downgrades: a database an older version left behind (only the first
migrations applied) is brought up to date when the server starts, or by ``migrate``;
one that names a migration this version does not know is refused by every command."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from dropline.server.identity.accounts import Identity
from dropline.server.settings import Settings
from dropline.server.storage.db import Database
from dropline.server.storage.lock import DataDirLock
from dropline.server.storage.migrations import MIGRATIONS, NewerSchema, applied, migrate
from tests.server import tus
from tests.support.live import ServerProcess
from tests.support.server_cli import run

ALL = [name for name, _fn in MIGRATIONS]
NEWER = "999_from_a_newer_dropline"
REFUSAL = (
    f"dropline-server: this data directory was written by a newer Dropline (migration {NEWER}); "
    "install that version or newer"
)


def old_database(data: Path, count: int) -> Database:
    """The database of a version that shipped only the first ``count`` migrations."""
    data.mkdir(parents=True, exist_ok=True)
    db = Database(Settings(data_dir=data).database_url)
    assert migrate(db, MIGRATIONS[:count]) == ALL[:count]
    return db


def recorded(data: Path) -> list[str]:
    with closing(sqlite3.connect(data / "dropline.db")) as conn:
        return [n for (n,) in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]


def test_an_older_database_is_upgraded_when_the_server_starts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = old_database(data, 2)
    # Accounts made by the older version, with only its tables there.
    identity = Identity(db)
    identity.create_tenant("acme")
    identity.create_user("acme", "alice@acme.example", None)
    _key_id, key = identity.create_api_key(
        "acme", "alice@acme.example", ("files:read", "files:write")
    )
    db.dispose()
    assert recorded(data) == ALL[:2]

    server = ServerProcess(data)
    server.start()
    try:
        assert recorded(data) == ALL
        with httpx.Client(
            base_url=server.url,
            headers={"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"},
        ) as c:
            # The old key works, and so do the tables the newer migrations added (audit).
            assert tus.upload(c, "/after-upgrade.txt", b"upgraded").status_code == 201
            assert c.get("/api/v1/metadata", params={"path": "/after-upgrade.txt"}).json()[
                "sha256"
            ] == tus.sha256(b"upgraded")
    finally:
        server.stop()
    assert "audit chain intact: 1 rows" in run(data, "audit", "verify").stderr


def test_migrate_applies_what_is_pending_and_says_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old_database(data, 1).dispose()
    done = run(data, "migrate")
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("applied ")] == [
        f"applied {name}" for name in ALL[1:]
    ]
    assert recorded(data) == ALL
    again = run(data, "migrate")
    assert again.returncode == 0
    assert again.stderr.strip() == f"the database is up to date ({len(ALL)} migrations applied)"


def test_migrate_waits_for_no_server_when_there_is_work(tmp_path: Path) -> None:
    data = tmp_path / "data"
    old_database(data, 1).dispose()
    with DataDirLock(data, "serve"):  # as a running server holds it
        refused = run(data, "migrate", ok=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"dropline-server: the data directory {data} is in use by dropline-server serve "
        f"(process {os.getpid()}); stop it first"
    )
    assert recorded(data) == ALL[:1]


def test_a_database_from_a_newer_dropline_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    db = old_database(data, 1)
    with db.write() as conn:
        conn.exec_driver_sql(
            "INSERT INTO schema_migrations (name, applied_at) VALUES (?, 0)", (NEWER,)
        )
    with pytest.raises(NewerSchema) as caught:
        migrate(db)
    assert caught.value.name == NEWER
    # The older code applied none of its own pending migrations either.
    assert applied(db) == [ALL[0], NEWER]
    db.dispose()

    for command in (["serve", "--port", "0"], ["tenants", "list"], ["migrate"]):
        refused = run(data, *command, ok=False)
        assert (refused.returncode, refused.stderr.strip()) == (1, REFUSAL), command
    assert recorded(data) == [ALL[0], NEWER]


def test_revisions_of_a_database_made_before_authors_were_kept_gain_the_columns(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    db = old_database(data, 4)
    with db.write() as conn:
        # The table as 0.1.0's migration 002 made it: no author columns.
        conn.exec_driver_sql("ALTER TABLE revisions DROP COLUMN client")
        conn.exec_driver_sql("ALTER TABLE revisions DROP COLUMN user_id")
    assert migrate(db) == ALL[4:]
    with closing(sqlite3.connect(data / "dropline.db")) as conn:
        columns = {row[1] for row in conn.execute("PRAGMA table_info(revisions)")}
        tables = {n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    db.dispose()
    assert {"user_id", "client"} <= columns
    assert "web_sessions" in tables
