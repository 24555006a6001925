"""Bursts and slow writers: every file goes up exactly once, and only when complete."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import pytest

from dropline.sdk.client import DroplineClient
from tests.support.live import ServerProcess
from tests.sync.engine_helpers import (
    FAST,
    StartEngine,
    client_for,
    eventually,
    remote_entry,
    settled,
    sha,
)

pytestmark = pytest.mark.anyio


async def test_burst_of_ten_thousand_files_each_uploaded_exactly_once(
    root: Path, own_server: tuple[ServerProcess, str], start_engine: StartEngine
) -> None:
    (root / "scans").mkdir()
    # The server in its own process: with 10,000 uploads it must not share the GIL.
    server, key = own_server
    async with (
        client_for(server.url, key) as sdk,
        start_engine(url=server.url, key=key) as engine,
    ):
        await settled(engine)
        for i in range(10_000):
            (root / "scans" / f"page-{i:05d}.txt").write_bytes(b"page %d\n" % i)
        await eventually(lambda: engine.counters().files_uploaded >= 10_000, timeout=240)
        await settled(engine, timeout=60)
        assert engine.counters().files_uploaded == 10_000
        listed = await sdk.list_folder("/scans")
        assert len(listed) == 10_000
        by_name = {e.name: e for e in listed}
        assert by_name["page-04321.txt"].sha256 == sha(b"page 4321\n")
        await asyncio.sleep(1.0)  # nothing is sent twice later either
        assert engine.counters().files_uploaded == 10_000


async def test_file_written_slowly_is_uploaded_once_and_whole(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    chunks = [os.urandom(64 * 1024) for _ in range(10)]
    async with start_engine() as engine:
        await settled(engine)
        with (root / "video.mov").open("wb") as fh:
            for chunk in chunks:
                fh.write(chunk)
                fh.flush()
                # Pauses longer than the stability window: only the open file tells.
                await asyncio.sleep(0.4)
            assert engine.counters().files_uploaded == 0
        await eventually(lambda: engine.counters().files_uploaded == 1)
        await settled(engine)
        entry = await remote_entry(sdk, "/video.mov")
        assert entry is not None
        assert entry.size == 10 * 64 * 1024 and entry.sha256 == sha(b"".join(chunks))
        assert engine.counters().files_uploaded == 1


async def test_file_changed_during_its_upload_is_abandoned_and_sent_again(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    first = os.urandom(8 * 1024 * 1024)
    second = os.urandom(6 * 1024 * 1024)
    slow = replace(FAST, upload_limit_bps=2 * 1024 * 1024, chunk_size=1024 * 1024)
    async with start_engine(settings=slow) as engine:
        await settled(engine)
        (root / "draft.bin").write_bytes(first)
        await eventually(lambda: engine.counters().bytes_uploaded >= 2 * 1024 * 1024)
        (root / "draft.bin").write_bytes(second)  # saved again while going up
        engine.set_bandwidth(None, None)
        await eventually(lambda: engine.counters().files_uploaded == 1, timeout=60)
        await settled(engine)
        entry = await remote_entry(sdk, "/draft.bin")
        assert entry is not None and entry.sha256 == sha(second)
        assert engine.counters().files_uploaded == 1  # the first version never published
