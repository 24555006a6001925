"""The database handle on PostgreSQL: the pool sized per node, and connections still in
use at dispose closed when they come back."""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest
from sqlalchemy import text

from dropline.server.storage.db import Database
from tests.support.postgres import PostgresCluster


def test_a_connection_in_use_at_dispose_is_closed_when_returned(
    postgres_cluster: PostgresCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)
    with postgres_cluster.fresh_database() as url:
        db = Database(url)
        held = db.engine.connect()
        held.execute(text("SELECT 1"))
        raw = held.connection.dbapi_connection
        assert raw is not None
        db.dispose()
        held.close()
        assert raw.closed
        del held, raw
        gc.collect()
    assert unraisable == []


@pytest.mark.parametrize("raw", ["0", "-1", "ten"])
def test_a_bad_pool_size_is_refused(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPLINE_DATABASE_POOL_SIZE", raw)
    with pytest.raises(ValueError, match="DROPLINE_DATABASE_POOL_SIZE"):
        Database("postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_the_pool_is_sized_per_node(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPLINE_DATABASE_POOL_SIZE", "4")
    db = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")
    try:
        assert db.pool_size == 4
        assert db.engine.pool.size() == 4  # type: ignore[attr-defined]
    finally:
        db.dispose()
