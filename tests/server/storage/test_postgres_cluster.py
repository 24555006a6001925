"""The throwaway PostgreSQL cluster of the tests: each test gets its own empty database."""

from __future__ import annotations

from sqlalchemy import create_engine, text

from tests.support.postgres import PostgresCluster


def test_each_database_is_new_empty_and_separate(postgres_cluster: PostgresCluster) -> None:
    with postgres_cluster.fresh_database() as first, postgres_cluster.fresh_database() as second:
        assert first != second
        one = create_engine(first)
        try:
            with one.begin() as conn:
                conn.execute(text("CREATE TABLE marker (id integer)"))
        finally:
            one.dispose()
        other = create_engine(second)
        try:
            with other.connect() as conn:
                tables = conn.execute(
                    text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
                ).scalar_one()
                assert tables == 0
                assert conn.execute(text("SHOW fsync")).scalar_one() == "off"
        finally:
            other.dispose()


def test_a_dropped_database_is_gone(postgres_cluster: PostgresCluster) -> None:
    with postgres_cluster.fresh_database() as url:
        name = url.rsplit("/", 1)[1]
    engine = create_engine(postgres_cluster.url("postgres"))
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text("SELECT count(*) FROM pg_database WHERE datname = :n"), {"n": name}
            ).scalar_one()
        assert found == 0
    finally:
        engine.dispose()
