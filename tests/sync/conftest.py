"""Fixtures for the sync tests: the synced folder, a client of the live server, the one way
to start an engine, and a server in a process of its own."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import pytest

from dropline.sdk.client import DroplineClient
from dropline.sync.engine import Engine
from dropline.sync.types import EngineSettings, FolderSpec
from tests.support.live import LiveServer, ServerProcess
from tests.sync.engine_helpers import (
    FAST,
    StartEngine,
    client_for,
    running_engine,
    server_process,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """The synced folder, empty: tmp_path/Dropline."""
    folder = tmp_path / "Dropline"
    folder.mkdir()
    return folder


@pytest.fixture
async def sdk(live_server: LiveServer, api_key: str) -> AsyncIterator[DroplineClient]:
    """A client of the live server, signed in as the engine's user."""
    async with client_for(live_server.url, api_key) as client:
        yield client


@pytest.fixture
def start_engine(tmp_path: Path, root: Path, request: pytest.FixtureRequest) -> StartEngine:
    """``async with start_engine() as engine``: an engine (home tmp_path/home) on ``root``."""

    def start(
        *folders: FolderSpec,
        settings: EngineSettings = FAST,
        url: str | None = None,
        key: str | None = None,
    ) -> AbstractAsyncContextManager[Engine]:
        # Other folders, settings, server or key only when given. The live server starts
        # on first use, so a test against a server process of its own runs no other.
        if url is None:
            url = request.getfixturevalue("live_server").url
        if key is None:
            key = request.getfixturevalue("api_key")
        return running_engine(
            tmp_path / "home", url, key, list(folders) or [FolderSpec(root)], settings
        )

    return start


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[tuple[ServerProcess, str]]:
    """A server in a process of its own (no GIL shared with the engine) and an API key."""
    server, key = server_process(tmp_path / "server-data")
    yield server, key
    server.stop()
