"""Rate limits and the defender's counts shared through the database, as several nodes
use them: the buckets are rows updated atomically, so a limit holds whichever node a
request reaches, and a ban made by one node holds on the others."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from dropline.server.guard import defender as defender_module
from dropline.server.guard.defender import Defender
from dropline.server.guard.ratelimit import RateLimiter
from dropline.server.guard.shared_limits import SharedRateLimiter, limiter_for
from dropline.server.storage import schema
from dropline.server.storage.db import Database
from dropline.server.storage.migrations import migrate

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    found = Database(f"sqlite:///{tmp_path / 'dropline.db'}")
    migrate(found)
    yield found
    found.dispose()


def test_two_nodes_share_one_bucket(db: Database) -> None:
    nodes = [SharedRateLimiter(db, {"credential": "10/hour"}) for _ in range(2)]
    decisions = [nodes[n % 2].hit("credential", "key-1") for n in range(20)]
    assert sum(d.allowed for d in decisions) == 10
    assert all(d.allowed for d in decisions[:10])
    refused = decisions[-1]
    assert refused.remaining == 0
    assert refused.headers()["Retry-After"] == str(refused.reset_after)
    assert refused.reset_after > 300  # one token of ten an hour comes back in 6 minutes
    # Another key has its own bucket.
    assert nodes[0].hit("credential", "key-2").allowed


def test_a_bucket_refills_at_its_rate(db: Database) -> None:
    limiter = SharedRateLimiter(db, {"credential": "5/second"})
    assert sum(limiter.hit("credential", "k").allowed for _ in range(8)) == 5
    time.sleep(0.5)  # two and a half tokens back
    assert sum(limiter.hit("credential", "k").allowed for _ in range(5)) == 2


def test_a_refusal_by_one_limit_takes_nothing_from_the_others(db: Database) -> None:
    limiter = SharedRateLimiter(db, {"credential": "3/hour;10/day"})
    assert sum(limiter.hit("credential", "k").allowed for _ in range(6)) == 3
    with db.read() as conn:
        daily = conn.execute(
            select(schema.rate_buckets.c.tokens).where(
                schema.rate_buckets.c.key == "credential:1:k"
            )
        ).scalar_one()
    assert round(daily) == 7  # three taken, none for the three refused hits


def test_the_embedded_server_keeps_its_buckets_in_memory(db: Database) -> None:
    assert isinstance(limiter_for(db, {"ip": "1/second"}), RateLimiter)


def test_failures_on_two_nodes_add_up_to_a_ban_both_enforce(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(defender_module, "SYNC_SECONDS", 0.2)
    a = Defender(db, max_failures=4, window_seconds=300, ban_seconds=60, shared=True)
    b = Defender(db, max_failures=4, window_seconds=300, ban_seconds=60, shared=True)
    assert b.banned_for("203.0.113.9") == 0
    for node in (a, b, a):
        assert node.failure("203.0.113.9") is None
    ban = b.failure("203.0.113.9")  # the fourth, on either node, reaches the limit
    assert ban is not None and ban.strikes == 1
    assert b.banned_for("203.0.113.9") > 0
    time.sleep(0.25)
    assert 0 < a.banned_for("203.0.113.9") <= 60  # node a read it from the shared table
    assert b.banned_for("198.51.100.1") == 0
    assert b.lift("203.0.113.9")
    assert a.banned_for("203.0.113.9") == 0  # lifted on one node, lifted everywhere


def test_hits_from_four_processes_at_once_on_postgresql_stay_within_the_limit(
    postgres_url: str,
) -> None:
    db = Database(postgres_url)
    try:
        migrate(db)
    finally:
        db.dispose()
    nodes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.server.guard.shared_hits", postgres_url, "60/hour", "40"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    allowed = []
    for node in nodes:
        out, _err = node.communicate(timeout=120)
        assert node.returncode == 0
        allowed.append(int(out))
    # 160 hits, 60 tokens (and one more per minute the run took, at most).
    assert 60 <= sum(allowed) <= 61, allowed
