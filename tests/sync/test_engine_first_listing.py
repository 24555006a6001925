"""The first listing of the server races the engine's own work: folders it makes and
files it uploads after the listing passed their place are not "deleted on the server"."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from dropline.sdk.breaker import CircuitBreaker
from dropline.sdk.client import ApiKeyCredentials, DroplineClient
from dropline.sync.engine import Engine
from dropline.sync.types import FolderSpec
from tests.support.live import LiveServer
from tests.sync.engine_helpers import (
    FAST,
    QUICK_RETRY,
    client_for,
    eventually,
    local_tree,
    remote_tree,
    settled,
)

pytestmark = pytest.mark.anyio

LATE = 2.0  # seconds a listing's answer takes to arrive


class SlowListing(httpx.AsyncBaseTransport):
    """Folder listings answer late: what the server had when asked, arriving
    after the engine has made folders and uploaded files of its own."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.listings = 0
        self.answered = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "GET" and request.url.path == "/api/v1/files":
            self.listings += 1
            await response.aread()
            await asyncio.sleep(LATE)
            self.answered += 1
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_what_the_engine_made_while_listing_is_not_taken_for_deleted(
    tmp_path: Path, root: Path, live_server: LiveServer, api_key: str
) -> None:
    for i in range(6):
        (root / f"d{i}" / "sub").mkdir(parents=True)
        for j in range(4):
            (root / f"d{i}" / f"f{j}.txt").write_text(f"file {i}.{j}")
            (root / f"d{i}" / "sub" / f"g{j}.txt").write_text(f"nested {i}.{j}")
    expected = local_tree(root)
    transport = SlowListing()

    def client() -> DroplineClient:
        return DroplineClient(
            live_server.url,
            ApiKeyCredentials(api_key),
            retry=QUICK_RETRY,
            breaker=CircuitBreaker(failure_threshold=5, reset_timeout=1.0),
            transport=transport,
        )

    engine = Engine(tmp_path / "home", client, [FolderSpec(root)], FAST)
    await engine.start()
    try:
        await settled(engine, timeout=30)
        await eventually(
            lambda: transport.listings > 0 and transport.answered == transport.listings
        )
        await settled(engine, timeout=30)
        assert [i.kind for i in engine.issues()] == []  # no mass delete held the folder
        assert local_tree(root) == expected  # nothing deleted here
        async with client_for(live_server.url, api_key) as sdk:
            assert await remote_tree(sdk) == expected
    finally:
        await engine.stop()
