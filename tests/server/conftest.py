"""Fixtures for the server tests: API clients for several users of the live server, and
alice's client of the ops server."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.server.ops_helpers import ops_client
from tests.support.live import LiveServer


def api_client(
    live: LiveServer, tenant: str = "acme", email: str = "alice@example.com"
) -> httpx.Client:
    key = live.new_key(tenant=tenant, email=email)
    return httpx.Client(
        base_url=live.url,
        headers={"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"},
        timeout=30,
    )


@pytest.fixture
def client(live_server: LiveServer) -> Iterator[httpx.Client]:
    with api_client(live_server) as c:
        yield c


@pytest.fixture
def alice(ops_server: LiveServer) -> Iterator[httpx.Client]:
    """alice's client of the ops server, with the files, transfers and webhooks scopes."""
    with ops_client(ops_server) as c:
        yield c


@pytest.fixture
def bob(live_server: LiveServer) -> Iterator[httpx.Client]:
    """Another user of the same tenant."""
    with api_client(live_server, email="bob@example.com") as c:
        yield c


@pytest.fixture
def mallory(live_server: LiveServer) -> Iterator[httpx.Client]:
    """A user of another tenant."""
    with api_client(live_server, tenant="globex", email="mallory@example.com") as c:
        yield c
