"""Token buckets per credential and per source address, with RateLimit headers.

A policy such as ``2000/second`` (the ``limits`` library's notation, parsed by it)
is a bucket of 2000 tokens refilled at 2000 per second: a burst up to the size
of the bucket passes, a sustained rate above the refill does not. The buckets are
kept here rather than in ``limits``' in-memory storage: that storage starts a
timer thread every 10 ms while requests flow and its moving window costs O(n)
per hit, which measured as the largest share of the security overhead on small
uploads; a bucket is two floats and O(1). Headers follow the IETF RateLimit
header fields draft: ``RateLimit-Policy`` and ``RateLimit`` as structured fields.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

from limits import RateLimitItem, parse_many

# Once the table grows past this, buckets that have refilled are dropped.
PRUNE_ABOVE = 50_000


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


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Named policies (``credential``, ``endpoint``, ``ip``), each one or more limits
    (``;``-separated)."""

    def __init__(self, policies: dict[str, str]) -> None:
        self._items: dict[str, list[RateLimitItem]] = {
            name: parse_many(spec) for name, spec in policies.items()
        }
        self._buckets: dict[tuple[str, int, str], _Bucket] = {}
        self._lock = threading.Lock()
        self.clock = time.monotonic  # what refills the buckets; tests hold it still

    def hit(self, policy: str, key: str) -> Decision:
        """Take one token for ``key`` from each of the policy's buckets; the tightest decides."""
        now = self.clock()
        decisions = []
        with self._lock:
            if len(self._buckets) > PRUNE_ABOVE:
                self._prune(now)
            buckets = []
            for i, item in enumerate(self._items[policy]):
                capacity, window = float(item.amount), float(item.get_expiry())
                rate = capacity / window
                bucket = self._buckets.get((policy, i, key))
                if bucket is None:
                    bucket = self._buckets[(policy, i, key)] = _Bucket(capacity, now)
                bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * rate)
                bucket.at = now
                buckets.append((item, bucket, capacity, rate))
            allowed = all(b.tokens >= 1 for _item, b, _c, _r in buckets)
            for item, bucket, capacity, rate in buckets:
                if allowed:
                    bucket.tokens -= 1
                    reset = (capacity - bucket.tokens) / rate  # until the bucket is full again
                else:
                    reset = max(0.0, 1 - bucket.tokens) / rate  # until the next token
                decisions.append(
                    Decision(
                        allowed=allowed and bucket.tokens >= 0,
                        policy=policy,
                        limit=item.amount,
                        window=item.get_expiry(),
                        remaining=max(0, math.floor(bucket.tokens)),
                        reset_after=math.ceil(reset),
                    )
                )
        if not allowed:
            return max(decisions, key=lambda d: d.reset_after)
        return min(decisions, key=lambda d: d.remaining)

    def _prune(self, now: float) -> None:
        """Drop the buckets that have refilled: a new one starts full, so nothing changes
        for their keys (a download of 100,000 files leaves one per file)."""
        for key, bucket in list(self._buckets.items()):
            policy, index, _who = key
            item = self._items[policy][index]
            capacity, window = float(item.amount), float(item.get_expiry())
            if bucket.tokens + (now - bucket.at) * capacity / window >= capacity:
                del self._buckets[key]


__all__ = ["Decision", "RateLimiter"]
