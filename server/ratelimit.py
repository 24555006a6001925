"""Request rate limits per credential and per source address, with RateLimit headers.

Built on the ``limits`` library's moving window (in memory, per server process).
``limits`` has no token bucket; a moving window gives the same promise a bucket
of size N refilled over the window does for sustained load (never more than N in
any window) and its exact reset time makes ``Retry-After`` honest.
Headers follow the IETF RateLimit header fields draft: ``RateLimit-Policy`` and
``RateLimit`` as structured fields naming the policy.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    policy: str
    limit: int
    window: int
    remaining: int
    reset_after: int

    def headers(self) -> dict[str, str]:
        out = {
            "RateLimit-Policy": f'"{self.policy}";q={self.limit};w={self.window}',
            "RateLimit": f'"{self.policy}";r={self.remaining};t={self.reset_after}',
        }
        if not self.allowed:
            out["Retry-After"] = str(max(1, self.reset_after))
        return out


class RateLimiter:
    """Named policies (``credential``, ``ip``), each one or more ``limits`` strings."""

    def __init__(self, policies: dict[str, str]) -> None:
        self._storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._items: dict[str, list[RateLimitItem]] = {
            name: parse_many(spec) for name, spec in policies.items()
        }

    def hit(self, policy: str, key: str) -> Decision:
        """Count one request for ``key``; the tightest of the policy's limits decides."""
        items = self._items[policy]
        now = time.time()
        decisions = []
        for item in items:
            allowed = self._limiter.hit(item, policy, key)
            stats = self._limiter.get_window_stats(item, policy, key)
            decisions.append(
                Decision(
                    allowed=allowed,
                    policy=policy,
                    limit=item.amount,
                    window=item.get_expiry(),
                    remaining=max(0, stats.remaining),
                    reset_after=max(0, math.ceil(stats.reset_time - now)),
                )
            )
        refused = [d for d in decisions if not d.allowed]
        if refused:
            return max(refused, key=lambda d: d.reset_after)
        return min(decisions, key=lambda d: d.remaining)


__all__ = ["Decision", "RateLimiter"]
