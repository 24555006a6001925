"""Rate limits shared by every node: the token buckets of guard.ratelimit kept as rows of
``rate_buckets``, each hit one atomic upsert (``INSERT ... ON CONFLICT DO UPDATE ...
RETURNING``, on PostgreSQL and SQLite alike), so a limit holds across nodes.

Used when the database is shared (PostgreSQL). The embedded shape keeps the in-memory
buckets: one process sees every request, and a write per request would cost it more
(docs/operations.md, "Background work on several nodes", has both measured). Each
node's own clock refills the buckets; nodes kept in step by NTP differ by
milliseconds, which moves a bucket by a fraction of a token.
"""

from __future__ import annotations

import math
import time
from typing import Any, Protocol

from limits import RateLimitItem, parse_many
from sqlalchemy import ColumnElement, Connection, case, delete, func, update
from sqlalchemy.dialects import postgresql, sqlite

from dropline.server.guard.ratelimit import Decision, RateLimiter
from dropline.server.storage import schema
from dropline.server.storage.db import Database

B = schema.rate_buckets
# How often a node drops buckets that have refilled (a missing bucket starts full).
PRUNE_EVERY = 60.0


class Limiter(Protocol):
    def hit(self, policy: str, key: str) -> Decision: ...


def _least(conn: Connection, a: Any, b: Any) -> ColumnElement[Any]:
    # Two-argument min(): LEAST on PostgreSQL, the scalar min() on SQLite.
    return func.min(a, b) if conn.dialect.name == "sqlite" else func.least(a, b)


def _greatest(conn: Connection, a: Any, b: Any) -> ColumnElement[Any]:
    return func.max(a, b) if conn.dialect.name == "sqlite" else func.greatest(a, b)


def take(
    conn: Connection, key: str, capacity: float, rate: float, now: float
) -> tuple[float, bool]:
    """Refill ``key``'s bucket to ``now`` and take one token if there is one, in one
    statement; returns (tokens left, whether one was taken). A new bucket starts full."""
    # A node whose clock is behind the last writer's refills nothing rather than
    # draining the bucket.
    elapsed = _greatest(conn, now - B.c.at, 0.0)
    refilled = _least(conn, capacity, B.c.tokens + elapsed * rate)
    insert = (sqlite.insert if conn.dialect.name == "sqlite" else postgresql.insert)(B)
    statement = (
        insert.values(key=key, tokens=capacity - 1, at=now, allowed=True)
        .on_conflict_do_update(
            index_elements=[B.c.key],
            set_={
                # Every SET reads the row as it was: take a token only if a whole one is there.
                "tokens": case((refilled >= 1, refilled - 1), else_=refilled),
                "allowed": refilled >= 1,
                "at": _greatest(conn, B.c.at, now),
            },
        )
        .returning(B.c.tokens, B.c.allowed)
    )
    row = conn.execute(statement).one()
    return float(row.tokens), bool(row.allowed)


def give_back(conn: Connection, key: str) -> None:
    """Return the token a hit took (another limit of the same policy said no)."""
    conn.execute(update(B).where(B.c.key == key).values(tokens=B.c.tokens + 1))


class SharedRateLimiter:
    """:class:`~dropline.server.guard.ratelimit.RateLimiter`'s policies and decisions,
    with the buckets in the database."""

    def __init__(self, db: Database, policies: dict[str, str]) -> None:
        self.db = db
        self._items: dict[str, list[RateLimitItem]] = {
            name: parse_many(spec) for name, spec in policies.items()
        }
        self._longest = max(
            (float(item.get_expiry()) for items in self._items.values() for item in items),
            default=1.0,
        )
        self._last_prune = 0.0
        self.clock = time.time  # wall time, shared by the nodes; tests hold it still

    def hit(self, policy: str, key: str) -> Decision:
        """Take one token for ``key`` from each of the policy's buckets, all or none; the
        tightest decides."""
        now = self.clock()
        results = []
        # Not Database.write: that takes the writer lock every node shares, and a bucket
        # needs none. Each upsert locks its own row until the commit, which keeps the
        # check and the take atomic on PostgreSQL, and SQLite has one writer anyway.
        with self.db.engine.begin() as conn:
            for i, item in enumerate(self._items[policy]):
                capacity, window = float(item.amount), float(item.get_expiry())
                bucket = f"{policy}:{i}:{key}"
                tokens, taken = take(conn, bucket, capacity, capacity / window, now)
                results.append((item, bucket, tokens, taken, capacity / window, capacity))
            allowed = all(taken for *_rest, taken, _rate, _cap in results)
            if not allowed:
                for _item, bucket, _tokens, taken, _rate, _cap in results:
                    if taken:
                        give_back(conn, bucket)
            if now - self._last_prune > PRUNE_EVERY:
                self._last_prune = now
                conn.execute(delete(B).where(B.c.at < now - self._longest))
        decisions = []
        for item, _bucket, tokens, taken, rate, capacity in results:
            if allowed:
                reset = (capacity - tokens) / rate  # until the bucket is full again
            else:
                tokens += 1 if taken else 0  # given back
                reset = max(0.0, 1 - tokens) / rate  # until the next token
            decisions.append(
                Decision(
                    allowed=allowed,
                    policy=policy,
                    limit=item.amount,
                    window=item.get_expiry(),
                    remaining=max(0, math.floor(tokens)),
                    reset_after=math.ceil(reset),
                )
            )
        if not allowed:
            return max(decisions, key=lambda d: d.reset_after)
        return min(decisions, key=lambda d: d.remaining)


def limiter_for(db: Database, policies: dict[str, str]) -> Limiter:
    """The shared buckets on a shared database (PostgreSQL); in memory on the embedded one."""
    if db.is_sqlite:
        return RateLimiter(policies)
    return SharedRateLimiter(db, policies)


__all__ = ["Limiter", "SharedRateLimiter", "give_back", "limiter_for", "take"]
