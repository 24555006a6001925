"""Retry policy: transient failures injected in front of the real server are retried
with full-jitter backoff and Retry-After; permanent ones are raised at once."""

from __future__ import annotations

import email.utils
import logging
import time

import httpx
import pytest

from dropline.sdk.client import DroplineClient
from dropline.sdk.credentials import ApiKeyCredentials
from dropline.sdk.errors import (
    DroplineError,
    RateLimitedError,
    UnavailableError,
    from_transport_error,
)
from dropline.sdk.retry import RetryPolicy
from tests.support.faults import FaultTransport, route
from tests.support.live import LiveServer


class SleepRecorder:
    """Stands in for asyncio.sleep so tests see every wait without waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def policy(attempts: int = 4, **kwargs: float) -> tuple[RetryPolicy, SleepRecorder]:
    sleep = SleepRecorder()
    return RetryPolicy(attempts=attempts, sleep=sleep, **kwargs), sleep  # type: ignore[arg-type]


ME = route("GET", "/api/v1/me")


async def client_for(
    live: LiveServer, key: str, retry: RetryPolicy
) -> tuple[DroplineClient, FaultTransport]:
    transport = FaultTransport()
    return DroplineClient(live.url, ApiKeyCredentials(key), retry=retry, transport=transport), (
        transport
    )


@pytest.mark.anyio
@pytest.mark.parametrize("status", [502, 503, 504, 429])
async def test_transient_statuses_are_retried_until_success(
    live_server: LiveServer, api_key: str, status: int
) -> None:
    retry, sleep = policy()
    client, transport = await client_for(live_server, api_key, retry)
    transport.inject(ME, times=2, status=status)
    async with client:
        account = await client.me()
    assert account.email == "alice@example.com"
    assert transport.count("GET", "/api/v1/me") == 3
    assert len(sleep.waits) == 2


@pytest.mark.anyio
@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError])
async def test_network_failures_are_retried(
    live_server: LiveServer, api_key: str, exc: type[Exception]
) -> None:
    retry, sleep = policy()
    client, transport = await client_for(live_server, api_key, retry)
    transport.inject(ME, times=1, exc=exc)
    async with client:
        assert (await client.me()).tenant_name == "acme"
    assert transport.count("GET", "/api/v1/me") == 2
    assert len(sleep.waits) == 1


@pytest.mark.anyio
@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 412, 413, 415, 422])
async def test_permanent_statuses_are_raised_at_once(
    live_server: LiveServer, api_key: str, status: int
) -> None:
    retry, sleep = policy()
    client, transport = await client_for(live_server, api_key, retry)
    transport.inject(ME, times=5, status=status)
    async with client:
        with pytest.raises(DroplineError) as caught:
            await client.me()
    assert caught.value.status == status
    assert not caught.value.retryable
    assert transport.count("GET", "/api/v1/me") == 1
    assert sleep.waits == []


@pytest.mark.anyio
async def test_attempts_are_bounded(live_server: LiveServer, api_key: str) -> None:
    retry, sleep = policy(attempts=3)
    client, transport = await client_for(live_server, api_key, retry)
    transport.inject(ME, times=100, status=503, slug="unavailable")
    async with client:
        with pytest.raises(UnavailableError):
            await client.me()
    assert transport.count("GET", "/api/v1/me") == 3
    assert len(sleep.waits) == 2


@pytest.mark.anyio
async def test_retry_after_seconds_is_honoured(live_server: LiveServer, api_key: str) -> None:
    retry, sleep = policy(initial=0.01, maximum=0.01)
    client, transport = await client_for(live_server, api_key, retry)
    transport.inject(ME, times=1, status=429, slug="rate-limited", headers={"Retry-After": "7"})
    async with client:
        await client.me()
    assert sleep.waits == [7.0]


@pytest.mark.anyio
async def test_retry_after_http_date_is_honoured(live_server: LiveServer, api_key: str) -> None:
    retry, sleep = policy(initial=0.01, maximum=0.01)
    client, transport = await client_for(live_server, api_key, retry)
    when = email.utils.formatdate(time.time() + 20, usegmt=True)
    transport.inject(ME, times=1, status=503, headers={"Retry-After": when})
    async with client:
        await client.me()
    assert len(sleep.waits) == 1
    assert 15 <= sleep.waits[0] <= 20


@pytest.mark.anyio
async def test_retry_after_beyond_the_limit_goes_to_the_caller(
    live_server: LiveServer, api_key: str
) -> None:
    retry, sleep = policy(max_retry_after=60)
    client, transport = await client_for(live_server, api_key, retry)
    transport.inject(ME, times=1, status=429, headers={"Retry-After": "3600"})
    async with client:
        with pytest.raises(RateLimitedError) as caught:
            await client.me()
    assert caught.value.retry_after == 3600
    assert sleep.waits == []


@pytest.mark.anyio
async def test_every_retry_is_logged_with_attempt_and_reason(
    live_server: LiveServer, api_key: str, caplog: pytest.LogCaptureFixture
) -> None:
    retry, _sleep = policy(attempts=4)
    client, transport = await client_for(live_server, api_key, retry)
    transport.inject(ME, times=2, status=503, slug="unavailable")
    caplog.set_level(logging.WARNING, logger="dropline.sdk.retry")
    async with client:
        await client.me()
    messages = [r.getMessage() for r in caplog.records if r.name == "dropline.sdk.retry"]
    assert len(messages) == 2
    assert "attempt 1 of 4" in messages[0] and "attempt 2 of 4" in messages[1]
    assert all("HTTP 503" in m and "GET /api/v1/me" in m for m in messages)
    assert all(api_key not in m for m in messages)


def test_backoff_is_full_jitter_growing_from_about_a_second_to_a_cap() -> None:
    retry = RetryPolicy()
    for failures, window in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (7, 60.0), (30, 60.0)]:
        samples = [retry.backoff(failures) for _ in range(400)]
        assert all(0 <= s <= window for s in samples)
        assert max(samples) > window * 0.8  # the window really is that wide
        assert min(samples) < window * 0.2  # full jitter reaches down to zero
    assert retry.backoff(1, retry_after=9.5) == 9.5


@pytest.mark.anyio
async def test_tenacity_waits_follow_the_same_windows() -> None:
    retry, sleep = policy(attempts=6, initial=1.0, maximum=4.0)

    async def always_down() -> None:
        raise UnavailableError("down")

    with pytest.raises(UnavailableError):
        await retry.call(always_down)
    assert len(sleep.waits) == 5
    for n, wait in enumerate(sleep.waits, start=1):
        assert 0 <= wait <= min(4.0, 2 ** (n - 1))


@pytest.mark.anyio
async def test_non_idempotent_call_is_replayed_only_if_it_never_left() -> None:
    retry, _sleep = policy()
    calls = 0

    async def lost_answer() -> None:
        nonlocal calls
        calls += 1
        raise from_transport_error(httpx.ReadTimeout("no answer"))

    with pytest.raises(UnavailableError):
        await retry.call(lost_answer, idempotent=False)
    assert calls == 1  # the server may have done it: not replayed

    calls = 0

    async def refused_then_ok() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise from_transport_error(httpx.ConnectError("refused"))
        return "done"

    assert await retry.call(refused_then_ok, idempotent=False) == "done"
    assert calls == 2


@pytest.mark.anyio
async def test_foreign_exceptions_are_not_retried() -> None:
    retry, sleep = policy()

    async def bug() -> None:
        raise KeyError("a bug, not a network failure")

    with pytest.raises(KeyError):
        await retry.call(bug)
    assert sleep.waits == []


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)
    with pytest.raises(ValueError):
        RetryPolicy(initial=-1)
