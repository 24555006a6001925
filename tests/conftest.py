"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dropline.server.settings import Settings
from tests.support.browser import pkce_tokens
from tests.support.live import LiveServer, running_server
from tests.support.receiver import Receiver


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    """Async tests run on asyncio, the loop the SDK and the agent are written for (anyio's
    plugin would also run them on trio whenever trio happens to be installed)."""
    return "asyncio"


@pytest.fixture
def server_settings(tmp_path: Path) -> Settings:
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
