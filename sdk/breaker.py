"""A circuit breaker that stops sending requests to a server that keeps failing.

closed --N consecutive transient failures--> open --cool-down--> half-open
half-open --probe succeeds--> closed; half-open --probe fails--> open again.
While open every call fails fast with :class:`dropline.sdk.errors.CircuitOpenError`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import StrEnum

from dropline.sdk.errors import CircuitOpenError

log = logging.getLogger(__name__)

# Seconds a tripped breaker stays open before one probe goes through. This is also how
# soon a client notices that the server is back: short enough that an agent resumes
# within seconds of a restart, while a server that is down sees one connection attempt
# per client per cool-down (12 a minute), not a client's every call.
RESET_TIMEOUT = 5.0
# The wait a refused caller is told while the half-open probe is out: the probe's answer
# decides, and a caller told "0 s" would come straight back.
PROBE_WAIT = 1.0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """Counts consecutive transient failures; one instance may be shared by many clients.

    Every caller runs in one event loop, so plain attributes need no lock: no method
    awaits between reading and writing the state.
    """

    def __init__(
        self,
        failure_threshold: int = 5,
        reset_timeout: float = RESET_TIMEOUT,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        self.failure_threshold = failure_threshold
        self.reset_timeout = reset_timeout
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        """The state now (an open breaker whose cool-down has passed reads as half-open)."""
        if self._state is BreakerState.OPEN and self._cooled_down():
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def _cooled_down(self) -> bool:
        return self._clock() - self._opened_at >= self.reset_timeout

    def before_call(self) -> None:
        """Raise :class:`CircuitOpenError` unless a request may go out now."""
        if self._state is BreakerState.CLOSED:
            return
        if self._state is BreakerState.OPEN:
            if not self._cooled_down():
                self._refuse()
            self._state = BreakerState.HALF_OPEN
            self._probe_in_flight = False
            log.info("circuit half-open: sending one probe request")
        # Half-open: exactly one probe at a time; the rest fail fast until it answers.
        if self._probe_in_flight:
            self._refuse()
        self._probe_in_flight = True

    def _refuse(self) -> None:
        remaining = max(0.0, self.reset_timeout - (self._clock() - self._opened_at))
        if self._state is BreakerState.HALF_OPEN:
            remaining = max(remaining, PROBE_WAIT)
        raise CircuitOpenError(
            "The server failed repeatedly; requests are paused and retried automatically.",
            retry_after=remaining,
        )

    def record_success(self) -> None:
        """The server answered (any answer that is not a transient failure counts)."""
        if self._state is not BreakerState.CLOSED:
            log.info("circuit closed: the server answers again")
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._probe_in_flight = False

    def record_failure(self) -> None:
        """A transient failure: timeout, connection error, 502/503/504."""
        self._failures += 1
        if self._state is BreakerState.HALF_OPEN:
            self._open("the probe request failed")
        elif self._state is BreakerState.CLOSED and self._failures >= self.failure_threshold:
            self._open(f"{self._failures} consecutive failures")

    def release(self) -> None:
        """A call ended without telling anything about the server (e.g. it was cancelled)."""
        self._probe_in_flight = False

    def _open(self, why: str) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._probe_in_flight = False
        log.warning("circuit open for %.1f s: %s", self.reset_timeout, why)
