"""Upgrades and downgrades on Alembic: a database the in-house runner of an older release
left behind (only the first migrations applied, recorded in ``schema_migrations``) is
stamped at its last migration and brought up to date when the server starts, or by
``migrate``; one that names a migration or revision this version does not know is refused
by every command before anything is written."""

from __future__ import annotations

import os
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from dropline.server.identity.accounts import Identity
from dropline.server.storage.db import Database
from dropline.server.storage.lock import DataDirLock
from dropline.server.storage.migrations import (
    MIGRATIONS,
    SCRIPT_LOCATION,
    NewerSchema,
    applied,
    migrate,
    pending,
    scripts,
)
from tests.server import tus
from tests.support.live import ServerProcess
from tests.support.server_cli import run

ALL = [name for name, _fn in MIGRATIONS]
NEWER = "999_from_a_newer_dropline"
REFUSAL = (
    f"dropline-server: this data directory was written by a newer Dropline (migration {NEWER}); "
    "install that version or newer"
)


def sqlite_url(data: Path) -> str:
    return f"sqlite:///{data / 'dropline.db'}"


def legacy_database(data: Path, count: int) -> Database:
    """The database of a release that shipped only the first ``count`` migrations, as its
    in-house runner left it: each applied in order and named in ``schema_migrations``,
    no ``alembic_version``."""
    data.mkdir(parents=True, exist_ok=True)
    db = Database(sqlite_url(data))
    with db.write() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE schema_migrations (name VARCHAR(200) NOT NULL PRIMARY KEY, "
            "applied_at FLOAT NOT NULL)"
        )
    for name, fn in MIGRATIONS[:count]:
        with db.write() as conn:
            fn(conn)
            conn.exec_driver_sql(
                "INSERT INTO schema_migrations (name, applied_at) VALUES (?, ?)",
                (name, time.time()),
            )
    return db


def recorded(data: Path) -> list[str]:
    with closing(sqlite3.connect(data / "dropline.db")) as conn:
        return [n for (n,) in conn.execute("SELECT name FROM schema_migrations ORDER BY name")]


def revision(data: Path) -> list[str]:
    with closing(sqlite3.connect(data / "dropline.db")) as conn:
        has = conn.execute(
            "SELECT count(*) FROM sqlite_master WHERE name = 'alembic_version'"
        ).fetchone()[0]
        return (
            [v for (v,) in conn.execute("SELECT version_num FROM alembic_version")] if has else []
        )


def test_every_migration_is_one_alembic_revision_in_one_line(tmp_path: Path) -> None:
    directory = scripts()
    chain = [s.revision for s in reversed(list(directory.walk_revisions()))]
    assert chain == ALL
    assert directory.get_heads() == [ALL[-1]]
    for name, previous in zip(ALL, [None, *ALL[:-1]], strict=True):
        script = directory.get_revision(name)
        assert script is not None and script.down_revision == previous
        # The revision runs the migration function of the same name, nothing of its own.
        source = Path(script.path).read_text()
        assert "run_migration(op.get_bind(), revision)" in source
    # alembic_version holds 32 characters.
    assert max(len(name) for name in ALL) <= 32
    assert SCRIPT_LOCATION.joinpath("env.py").is_file()


def test_a_new_database_is_at_the_newest_revision_and_keeps_the_old_record(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = Database(sqlite_url(data))
    assert pending(db) == ALL
    assert migrate(db) == ALL
    assert migrate(db) == []
    assert (applied(db), pending(db)) == (ALL, [])
    db.dispose()
    assert revision(data) == [ALL[-1]]
    assert recorded(data) == ALL


def test_an_older_database_is_stamped_and_upgraded_when_the_server_starts(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    db = legacy_database(data, 2)
    # Accounts made by the older version, with only its tables there.
    identity = Identity(db)
    identity.create_tenant("acme")
    identity.create_user("acme", "alice@acme.example", None)
    _key_id, key = identity.create_api_key(
        "acme", "alice@acme.example", ("files:read", "files:write")
    )
    assert (applied(db), pending(db)) == (ALL[:2], ALL[2:])
    db.dispose()
    assert (recorded(data), revision(data)) == (ALL[:2], [])

    server = ServerProcess(data)
    server.start()
    try:
        assert (recorded(data), revision(data)) == (ALL, [ALL[-1]])
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


def test_an_up_to_date_older_database_is_only_stamped(tmp_path: Path) -> None:
    data = tmp_path / "data"
    db = legacy_database(data, len(ALL))
    assert pending(db) == []
    assert migrate(db) == []
    db.dispose()
    assert (recorded(data), revision(data)) == (ALL, [ALL[-1]])


def test_migrate_applies_what_is_pending_and_says_so(tmp_path: Path) -> None:
    data = tmp_path / "data"
    legacy_database(data, 1).dispose()
    done = run(data, "migrate")
    assert done.returncode == 0, done.stderr
    assert [line for line in done.stderr.splitlines() if line.startswith("applied ")] == [
        f"applied {name}" for name in ALL[1:]
    ]
    assert (recorded(data), revision(data)) == (ALL, [ALL[-1]])
    again = run(data, "migrate")
    assert again.returncode == 0
    assert again.stderr.strip() == f"the database is up to date ({len(ALL)} migrations applied)"


def test_migrate_waits_for_no_server_when_there_is_work(tmp_path: Path) -> None:
    data = tmp_path / "data"
    legacy_database(data, 1).dispose()
    with DataDirLock(data, "serve"):  # as a running server holds it
        refused = run(data, "migrate", ok=False)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"dropline-server: the data directory {data} is in use by dropline-server serve "
        f"(process {os.getpid()}); stop it first"
    )
    assert (recorded(data), revision(data)) == (ALL[:1], [])


def test_an_older_database_naming_a_newer_migration_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    db = legacy_database(data, 1)
    with db.write() as conn:
        conn.exec_driver_sql(
            "INSERT INTO schema_migrations (name, applied_at) VALUES (?, 0)", (NEWER,)
        )
    with pytest.raises(NewerSchema) as caught:
        migrate(db)
    assert caught.value.name == NEWER
    db.dispose()

    for command in (["serve", "--port", "0"], ["tenants", "list"], ["migrate"]):
        refused = run(data, *command, ok=False)
        assert (refused.returncode, refused.stderr.strip()) == (1, REFUSAL), command
    # The older code applied none of its own pending migrations, nor stamped anything.
    assert (recorded(data), revision(data)) == ([ALL[0], NEWER], [])


def test_a_database_at_a_revision_this_code_does_not_know_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = Database(sqlite_url(data))
    migrate(db)
    with db.write() as conn:
        # A newer release's upgrade: its revision, and its name in the old record.
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = ?", (NEWER,))
        conn.exec_driver_sql("INSERT INTO schema_migrations VALUES (?, 0)", (NEWER,))
    with pytest.raises(NewerSchema) as caught:
        pending(db)
    assert caught.value.name == NEWER
    db.dispose()
    before = (data / "dropline.db").read_bytes()

    for command in (["serve", "--port", "0"], ["migrate"], ["migrate", "--check"]):
        refused = run(data, *command, ok=False)
        assert (refused.returncode, refused.stderr.strip()) == (1, REFUSAL), command
    assert revision(data) == [NEWER]
    assert (data / "dropline.db").read_bytes() == before


def test_revisions_of_a_database_made_before_authors_were_kept_gain_the_columns(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    db = legacy_database(data, 4)
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
