"""Fixtures for the SDK tests: a fault-injecting transport, and a client of the live server
that goes through it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from dropline.sdk.client import DroplineClient
from dropline.sdk.credentials import ApiKeyCredentials
from dropline.sdk.retry import RetryPolicy
from tests.support.faults import FaultTransport
from tests.support.live import LiveServer

QUICK_RETRY = RetryPolicy(attempts=4, initial=0.01, maximum=0.05)


@pytest.fixture
def transport() -> FaultTransport:
    """The real transport, with faults a test injects and a count of what it saw."""
    return FaultTransport()


@pytest.fixture
async def api(
    live_server: LiveServer, api_key: str, transport: FaultTransport
) -> AsyncIterator[DroplineClient]:
    """A client of the live server (``api_key``'s user) through ``transport``, quick retries."""
    async with DroplineClient(
        live_server.url, ApiKeyCredentials(api_key), retry=QUICK_RETRY, transport=transport
    ) as client:
        yield client
