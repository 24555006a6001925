"""``dropline-server migrate --sql`` and ``--check``: the SQL a DBA reviews, printed
without connecting, does on a new PostgreSQL database what ``migrate`` does; ``--check``
fails while migrations are pending."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import inspect

from dropline.server.storage.db import Database
from dropline.server.storage.migrations import MIGRATIONS, SCRIPT_LOCATION, migrate
from tests.support.postgres import PostgresCluster
from tests.support.server_cli import run

ALL = [name for name, _fn in MIGRATIONS]
# Nothing listens on port 1: a command that tried to connect would fail.
NOWHERE = "postgresql+psycopg://dropline@127.0.0.1:1/nowhere"


def _schema(url: str) -> dict[str, set[str]]:
    db = Database(url)
    try:
        with db.read() as conn:
            found = inspect(conn)
            return {
                t: {c["name"] for c in found.get_columns(t)}
                | {f"index {i['name']}" for i in found.get_indexes(t)}
                for t in found.get_table_names()
            }
    finally:
        db.dispose()


def test_sql_prints_the_postgresql_upgrade_without_connecting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DROPLINE_DATABASE_URL", NOWHERE)
    done = run(tmp_path / "data", "migrate", "--sql")
    sql = done.stdout
    assert sql.startswith("BEGIN;")
    assert "SELECT pg_advisory_xact_lock(" in sql
    assert "CREATE TABLE tenants (" in sql
    assert "CREATE TABLE webhook_deliveries (" in sql
    assert "SERIAL" in sql  # PostgreSQL's DDL, not SQLite's
    assert f"INSERT INTO alembic_version (version_num) VALUES ('{ALL[0]}')" in sql
    assert f"UPDATE alembic_version SET version_num='{ALL[-1]}'" in sql
    assert sql.rstrip().endswith("COMMIT;")
    assert not (tmp_path / "data").exists()  # nothing made, nothing opened


def test_sql_from_a_migration_prints_only_what_follows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DROPLINE_DATABASE_URL", NOWHERE)
    sql = run(tmp_path / "data", "migrate", "--sql", "--from", ALL[-2]).stdout
    assert f"Running upgrade {ALL[-2]} -> {ALL[-1]}" in sql
    assert "CREATE TABLE tenants" not in sql
    assert f"UPDATE alembic_version SET version_num='{ALL[-1]}'" in sql

    unknown = run(tmp_path / "data", "migrate", "--sql", "--from", "042_nothing", ok=False)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("dropline-server: no migration '042_nothing'; known: ")
    alone = run(tmp_path / "data", "migrate", "--from", ALL[0], ok=False)
    assert (alone.returncode, alone.stderr.strip()) == (
        1,
        "dropline-server: --from goes with --sql",
    )


def test_the_reviewed_sql_run_by_a_dba_gives_the_schema_migrate_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_cluster: PostgresCluster
) -> None:
    with postgres_cluster.fresh_database() as by_dba, postgres_cluster.fresh_database() as by_us:
        monkeypatch.setenv("DROPLINE_DATABASE_URL", by_dba)
        sql = run(tmp_path / "data", "migrate", "--sql").stdout
        with psycopg.connect(by_dba.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(sql.encode())  # as psql -f would
        db = Database(by_us)
        try:
            migrate(db)
        finally:
            db.dispose()
        assert _schema(by_dba) == _schema(by_us)
        # The database the DBA upgraded is up to date for the server too.
        check = run(tmp_path / "data", "migrate", "--check")
        assert check.stderr.strip() == f"the database is up to date ({len(ALL)} migrations applied)"


def test_check_fails_while_migrations_are_pending_and_applies_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    pending = run(data, "migrate", "--check", ok=False)
    assert pending.returncode == 1
    assert pending.stderr.strip() == f"{len(ALL)} migrations pending: {', '.join(ALL)}"
    assert run(data, "migrate", "--check", ok=False).returncode == 1  # still nothing applied
    run(data, "migrate")
    done = run(data, "migrate", "--check")
    assert done.stderr.strip() == f"the database is up to date ({len(ALL)} migrations applied)"


def test_alembic_s_own_commands_read_the_history(tmp_path: Path) -> None:
    """For a DBA who knows Alembic: a two-line alembic.ini pointing at the package's
    environment, and the database the settings name."""
    data = tmp_path / "data"
    run(data, "migrate")
    ini = tmp_path / "alembic.ini"
    ini.write_text(f"[alembic]\nscript_location = {SCRIPT_LOCATION}\n")
    env = {**os.environ, "DROPLINE_DATABASE_URL": f"sqlite:///{data / 'dropline.db'}"}

    def alembic(*args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "alembic", "-c", str(ini), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert alembic("current").strip() == f"{ALL[-1]} (head)"
    history = alembic("history").splitlines()
    assert history[-1].startswith(f"<base> -> {ALL[0]}, ")
    assert len(history) == len(ALL)


def test_a_database_out_of_reach_is_one_line_without_the_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "DROPLINE_DATABASE_URL", "postgresql+psycopg://dropline:s3cret-pw@127.0.0.1:1/nowhere"
    )
    done = run(tmp_path / "data", "migrate", "--check", ok=False)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("dropline-server: cannot use the database: ")
    assert "port 1" in line and "Traceback" not in done.stderr
    assert "s3cret-pw" not in done.stderr
