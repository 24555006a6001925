"""Transfer slots (small files first) and the bandwidth bucket."""

from __future__ import annotations

import asyncio

import pytest

from dropline.sync import transfer
from dropline.sync.transfer import Slots, TokenBucket

pytestmark = pytest.mark.anyio


async def test_waiting_transfers_run_smallest_first() -> None:
    slots = Slots(1)
    order: list[int] = []
    gate = asyncio.Event()

    async def job(size: int) -> None:
        async with slots.slot(size):
            order.append(size)
            await gate.wait()

    first = asyncio.create_task(job(500))
    await asyncio.sleep(0)
    rest = [asyncio.create_task(job(s)) for s in (9_000_000, 10, 70_000)]
    await asyncio.sleep(0.01)
    assert order == [500]  # one slot: the others wait
    gate.set()
    await asyncio.gather(first, *rest)
    assert order == [500, 10, 70_000, 9_000_000]
    assert slots.busy == 0


async def test_cancelled_waiter_gives_its_turn_away() -> None:
    slots = Slots(1)
    hold = asyncio.Event()

    async def holder() -> None:
        async with slots.slot(1):
            await hold.wait()

    async def waiter() -> str:
        async with slots.slot(2):
            return "ran"

    h = asyncio.create_task(holder())
    await asyncio.sleep(0)
    cancelled = asyncio.create_task(waiter())
    second = asyncio.create_task(waiter())
    await asyncio.sleep(0)
    cancelled.cancel()
    hold.set()
    assert await second == "ran"
    await h
    assert slots.busy == 0


async def test_bucket_paces_bytes_to_the_rate(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    clock = [100.0]

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    monkeypatch.setattr(transfer.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(transfer.asyncio, "sleep", fake_sleep)
    bucket = TokenBucket(1000)
    for _ in range(5):
        await bucket.take(1000)
    assert sum(slept) == pytest.approx(5.0)  # 5,000 bytes at 1,000 bytes/s
    bucket.set_rate(None)
    await bucket.take(10**9)
    assert sum(slept) == pytest.approx(5.0)  # unlimited: no wait
