"""Fixtures shared by every test package."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dropline.server.settings import Settings
from tests.support.browser import pkce_tokens
from tests.support.live import LiveServer, running_server
from tests.support.postgres import PostgresCluster, shared_cluster, stop_shared_cluster
from tests.support.receiver import Receiver
from tests.support.s3 import s3_env

__all__ = ["s3_env"]  # the fixture, used by name

# DROPLINE_TEST_BACKEND picks what every server a test starts keeps its state in:
#   sqlite (default)  the embedded SQLite database and blobs on local disk;
#   postgres          a fresh database of a throwaway PostgreSQL cluster
#                     (tests/support/postgres.py), blobs on local disk;
#   postgres-s3       that database, and blobs in a fresh bucket of moto's S3 server
#                     (tests/support/s3.py).
BACKENDS = ("sqlite", "postgres", "postgres-s3")
TEST_BACKEND = os.environ.get("DROPLINE_TEST_BACKEND", "sqlite")
if TEST_BACKEND not in BACKENDS:
    raise pytest.UsageError(f"DROPLINE_TEST_BACKEND must be one of {BACKENDS}, not {TEST_BACKEND}")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests run on asyncio, the loop the SDK and the agent are written for (anyio's
    plugin would also run them on trio whenever trio happens to be installed)."""
    return "asyncio"


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """This test process's PostgreSQL cluster, stopped at the end of the session."""
    yield shared_cluster()
    stop_shared_cluster()


@pytest.fixture
def postgres_url(postgres_cluster: PostgresCluster) -> Iterator[str]:
    """The SQLAlchemy URL of a new empty PostgreSQL database, dropped after the test."""
    with postgres_cluster.fresh_database() as url:
        yield url


@pytest.fixture
def server_backend(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The backend this run tests. With postgres, DROPLINE_DATABASE_URL names a fresh
    database (and with postgres-s3, DROPLINE_BLOB_URL and the AWS variables a fresh
    bucket of this test process's moto_server) for the whole test: in-process servers,
    server processes and the test's own ``Settings(...)`` all meet in them."""
    if TEST_BACKEND == "sqlite":
        yield TEST_BACKEND
        return
    if TEST_BACKEND == "postgres-s3":
        request.getfixturevalue("s3_env")
    cluster: PostgresCluster = request.getfixturevalue("postgres_cluster")
    # The schema comes from a migrated template; the migrations themselves ran on it.
    with cluster.fresh_database(migrated=True) as url:
        monkeypatch.setenv("DROPLINE_DATABASE_URL", url)
        yield TEST_BACKEND


@pytest.fixture
def server_settings(tmp_path: Path, server_backend: str) -> Settings:
    return Settings(data_dir=tmp_path / "server-data", port=0)


@pytest.fixture
def live_server(server_settings: Settings) -> Iterator[LiveServer]:
    with running_server(server_settings) as live:
        yield live


@pytest.fixture
def api_key(live_server: LiveServer) -> str:
    return live_server.new_key()


@pytest.fixture
def signed_in(live_server: LiveServer) -> dict[str, Any]:
    """The tokens of carol@example.com (acme), signed in through the desktop (PKCE) flow."""
    live_server.new_key(tenant="acme", email="carol@example.com")
    return pkce_tokens(live_server.url, "carol@example.com")


@pytest.fixture
def ops_settings(server_settings: Settings) -> Settings:
    """Transfers and webhooks: loopback targets allowed, retries a fraction of a second apart."""
    return replace(
        server_settings,
        allow_private_targets=True,
        webhook_retry_schedule=(0.2, 0.2, 0.2, 0.2, 0.2),
        transfer_retry_schedule=(0.2, 0.2, 0.2),
        worker_poll_seconds=0.05,
    )


@pytest.fixture
def ops_server(ops_settings: Settings) -> Iterator[LiveServer]:
    with running_server(ops_settings) as live:
        yield live


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """A real HTTP receiver on 127.0.0.1 (webhooks, push transfers)."""
    found = Receiver().start()
    yield found
    found.stop()
