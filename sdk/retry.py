"""When and how long to retry a failed API call: tenacity with full-jitter exponential backoff.

Transient failures (``DroplineError.retryable``: timeouts, connection errors,
502/503/504, 429) are retried a bounded number of times, waiting at least what a
``Retry-After`` asks; permanent ones are raised at once. A call that may already
have taken effect on the server is only replayed when it is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt, wait_random_exponential

from dropline.sdk.errors import CircuitOpenError, DroplineError, request_may_have_applied

log = logging.getLogger(__name__)

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How many times and how patiently to retry. Tests shrink the waits or inject ``sleep``."""

    attempts: int = 6  # tries in all, the first one included
    initial: float = 1.0  # the first backoff window: a wait drawn from [0, initial]
    maximum: float = 60.0  # no backoff window grows past this
    # A Retry-After longer than this is not waited out here: the error (with its
    # retry_after) goes to the caller, whose queue can wait without holding a request.
    max_retry_after: float = 300.0
    sleep: Sleep | None = None

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if self.initial < 0 or self.maximum < 0:
            raise ValueError("RetryPolicy waits must not be negative")

    def should_retry(self, exc: BaseException, *, idempotent: bool) -> bool:
        """Whether ``exc`` is worth another attempt of a call (idempotent or not)."""
        if not isinstance(exc, DroplineError) or isinstance(exc, CircuitOpenError):
            return False
        if not exc.retryable:
            return False
        if exc.retry_after is not None and exc.retry_after > self.max_retry_after:
            return False
        return idempotent or not request_may_have_applied(exc)

    def backoff(self, failures: int, retry_after: float | None = None) -> float:
        """Full-jitter wait after the ``failures``-th failure in a row, at least ``retry_after``."""
        window = min(self.maximum, self.initial * 2 ** max(0, failures - 1))
        delay = random.uniform(0, window)
        return max(delay, retry_after) if retry_after is not None else delay

    async def pause(self, seconds: float) -> None:
        await (self.sleep or asyncio.sleep)(seconds)

    def retrying(self, *, idempotent: bool = True, what: str = "request") -> AsyncRetrying:
        """A tenacity controller for one logical call, described as ``what`` in the log."""
        jitter = wait_random_exponential(multiplier=self.initial, max=self.maximum)

        def wait(state: RetryCallState) -> float:
            delay = float(jitter(state))
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, DroplineError) and exc.retry_after is not None:
                delay = max(delay, exc.retry_after)
            return delay

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            log.warning(
                "%s failed (attempt %d of %d: %s); retrying in %.2f s",
                what,
                state.attempt_number,
                self.attempts,
                failure_reason(exc),
                delay,
            )

        kwargs: dict[str, object] = {}
        if self.sleep is not None:
            kwargs["sleep"] = self.sleep
        return AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=wait,
            retry=_RetryIf(self, idempotent),
            before_sleep=before_sleep,
            reraise=True,
            **kwargs,  # type: ignore[arg-type]
        )

    async def call(
        self,
        fn: Callable[[], Awaitable[T]],
        *,
        idempotent: bool = True,
        what: str = "request",
    ) -> T:
        """Run ``fn`` under this policy and return its result or raise its last error."""
        async for attempt in self.retrying(idempotent=idempotent, what=what):
            with attempt:
                return await fn()
        raise AssertionError("unreachable: tenacity re-raises the last error")  # pragma: no cover


# A policy that never retries: for calls whose callers run their own recovery.
NO_RETRY = RetryPolicy(attempts=1)


def failure_reason(exc: BaseException | None) -> str:
    if exc is None:
        return "no error"
    if isinstance(exc, DroplineError):
        status = f"HTTP {exc.status}, " if exc.status else ""
        return f"{status}{type(exc).__name__}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


class _RetryIf:
    """tenacity ``retry=`` predicate: only transient errors, replay rules for non-idempotent."""

    def __init__(self, policy: RetryPolicy, idempotent: bool) -> None:
        self.policy = policy
        self.idempotent = idempotent

    def __call__(self, state: RetryCallState) -> bool:
        if state.outcome is None or not state.outcome.failed:
            return False
        exc = state.outcome.exception()
        return exc is not None and self.policy.should_retry(exc, idempotent=self.idempotent)
