"""Bursts and slow writers: every file goes up exactly once, and only when complete."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import pytest

from dropline.sync.types import FolderSpec
from tests.support.live import LiveServer
from tests.sync.engine_helpers import (
    FAST,
    client_for,
    eventually,
    remote_entry,
    running_engine,
    server_process,
    settled,
    sha,
)

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_burst_of_ten_thousand_files_each_uploaded_exactly_once(tmp_path: Path) -> None:
    root = tmp_path / "Dropline"
    (root / "scans").mkdir(parents=True)
    # The server in its own process: with 10,000 uploads it must not share the GIL.
    server, key = server_process(tmp_path / "server-data")
    try:
        await _burst(tmp_path, root, server.url, key)
    finally:
        server.stop()


async def _burst(tmp_path: Path, root: Path, url: str, key: str) -> None:
    async with (
        client_for(url, key) as sdk,
        running_engine(tmp_path / "home", url, key, [FolderSpec(root)]) as engine,
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
    tmp_path: Path, live_server: LiveServer, api_key: str
) -> None:
    root = tmp_path / "Dropline"
    root.mkdir()
    chunks = [os.urandom(64 * 1024) for _ in range(10)]
    async with (
        client_for(live_server.url, api_key) as sdk,
        running_engine(tmp_path / "home", live_server.url, api_key, [FolderSpec(root)]) as engine,
    ):
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
    tmp_path: Path, live_server: LiveServer, api_key: str
) -> None:
    root = tmp_path / "Dropline"
    root.mkdir()
    first = os.urandom(8 * 1024 * 1024)
    second = os.urandom(6 * 1024 * 1024)
    slow = replace(FAST, upload_limit_bps=2 * 1024 * 1024, chunk_size=1024 * 1024)
    async with (
        client_for(live_server.url, api_key) as sdk,
        running_engine(
            tmp_path / "home", live_server.url, api_key, [FolderSpec(root)], slow
        ) as engine,
    ):
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
