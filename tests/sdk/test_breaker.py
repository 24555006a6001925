"""Circuit breaker states with a fake clock, and the client failing fast against a real
unreachable port and recovering against the real server."""

from __future__ import annotations

import socket

import pytest

from dropline.sdk.breaker import BreakerState, CircuitBreaker
from dropline.sdk.client import DroplineClient
from dropline.sdk.credentials import ApiKeyCredentials
from dropline.sdk.errors import CircuitOpenError, NotFoundError, UnavailableError
from dropline.sdk.retry import NO_RETRY
from tests.support.faults import FaultTransport, route
from tests.support.live import LiveServer


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_opens_after_threshold_consecutive_failures() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, reset_timeout=10, clock=clock)
    for _ in range(2):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError) as caught:
        breaker.before_call()
    assert caught.value.retry_after == pytest.approx(10)
    assert caught.value.retryable


def test_a_success_resets_the_count() -> None:
    breaker = CircuitBreaker(failure_threshold=3, clock=FakeClock())
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 2


def test_half_open_after_cool_down_lets_exactly_one_probe_through() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=10, clock=clock)
    breaker.record_failure()
    clock.now += 9.9
    with pytest.raises(CircuitOpenError) as caught:
        breaker.before_call()
    assert caught.value.retry_after == pytest.approx(0.1)
    clock.now += 0.1
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()  # the probe
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # a second caller while the probe is out


def test_successful_probe_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=5, clock=clock)
    breaker.record_failure()
    clock.now += 5
    breaker.before_call()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    breaker.before_call()
    breaker.before_call()  # no probe limit once closed


def test_failed_probe_opens_again_for_a_full_cool_down() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=5, clock=clock)
    breaker.record_failure()
    breaker.record_failure()
    clock.now += 5
    breaker.before_call()
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    clock.now += 4
    with pytest.raises(CircuitOpenError):
        breaker.before_call()


def test_a_released_probe_frees_the_slot() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=1, clock=clock)
    breaker.record_failure()
    clock.now += 1
    breaker.before_call()
    breaker.release()  # e.g. the probing call was cancelled
    breaker.before_call()


def no_retry_client(
    url: str, key: str, breaker: CircuitBreaker, transport: FaultTransport
) -> DroplineClient:
    """A client without retries, so every failure reaches ``breaker``."""
    return DroplineClient(
        url, ApiKeyCredentials(key), retry=NO_RETRY, breaker=breaker, transport=transport
    )


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    sock.close()
    return port


@pytest.mark.anyio
async def test_client_fails_fast_while_the_server_is_unreachable(
    transport: FaultTransport,
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=30, clock=clock)
    url = f"http://127.0.0.1:{closed_port()}"
    async with no_retry_client(url, "dlk_x", breaker, transport) as client:
        for _ in range(2):
            with pytest.raises(UnavailableError) as caught:
                await client.me()
            assert not isinstance(caught.value, CircuitOpenError)  # a real refused connection
        for _ in range(5):
            with pytest.raises(CircuitOpenError):
                await client.me()
    assert transport.count("GET") == 2  # nothing went out while open


@pytest.mark.anyio
async def test_breaker_closes_when_the_server_answers_the_probe(
    live_server: LiveServer, api_key: str, transport: FaultTransport
) -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout=30, clock=clock)
    transport.inject(route("GET", "/api/v1/me"), times=2, status=503, slug="unavailable")
    async with no_retry_client(live_server.url, api_key, breaker, transport) as client:
        for _ in range(2):
            with pytest.raises(UnavailableError):
                await client.me()
        with pytest.raises(CircuitOpenError):
            await client.me()
        clock.now += 30
        account = await client.me()  # the probe, answered by the real server
        assert account.email == "alice@example.com"
        assert breaker.state is BreakerState.CLOSED


@pytest.mark.anyio
async def test_permanent_errors_do_not_trip_the_breaker(
    live_server: LiveServer, api_key: str, transport: FaultTransport
) -> None:
    breaker = CircuitBreaker(failure_threshold=1, clock=FakeClock())
    transport.inject(route("GET", "/api/v1/me"), times=3, status=404, slug="not-found")
    async with no_retry_client(live_server.url, api_key, breaker, transport) as client:
        for _ in range(3):
            with pytest.raises(NotFoundError):
                await client.me()
        assert breaker.state is BreakerState.CLOSED
        assert (await client.me()).tenant_name == "acme"


@pytest.mark.anyio
async def test_after_an_outage_the_long_poll_probes_with_a_quick_call(
    live_server: LiveServer, api_key: str, transport: FaultTransport
) -> None:
    # A long-poll as the only probe would keep every other call failing fast for the
    # whole poll; the client probes with a plain page first.
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_timeout=30, clock=clock)
    async with no_retry_client(live_server.url, api_key, breaker, transport) as client:
        cursor = await client.latest_cursor()
        await client.create_folder("/while-offline")
        transport.inject(route("GET", "/api/v1/me"), status=503, slug="unavailable")
        with pytest.raises(UnavailableError):
            await client.me()
        assert breaker.state is BreakerState.OPEN
        clock.now += 30
        page = await client.wait_changes(cursor, timeout=60)  # would block 60 s if long-polled
        assert [c.entry.path for c in page.changes] == ["/while-offline"]
        assert transport.count("GET", "/api/v1/changes/wait") == 0
        assert breaker.state is BreakerState.CLOSED
        # Closed again: an empty feed is long-polled as usual.
        empty = await client.wait_changes(page.cursor, timeout=1)
        assert empty.changes == ()
        assert transport.count("GET", "/api/v1/changes/wait") == 1
