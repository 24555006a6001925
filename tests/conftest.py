"""Fixtures shared by every test package."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from server.settings import Settings
from tests.support.live import LiveServer, running_server


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
