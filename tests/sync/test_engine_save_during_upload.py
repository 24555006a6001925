"""A document saved again (a new file renamed over it) while its earlier save is going up:
the upload publishes the earlier save, and the new one must follow by itself. Found by
the fault campaign's office.save-sequence: the change queued during the upload was
taken off the queue with it, and the server kept the earlier save for good."""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace
from pathlib import Path

import pytest

from dropline.sdk.client import DroplineClient
from tests.sync.engine_helpers import FAST, StartEngine, eventually, remote_entry, settled, sha

pytestmark = pytest.mark.anyio


async def test_a_save_that_lands_while_the_last_one_uploads_goes_up_after_it(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    first, second = os.urandom(300_000), os.urandom(300_500)
    # One request of six seconds, the file read whole before it: the save lands in it.
    slow = replace(FAST, upload_limit_bps=50_000)
    async with start_engine(settings=slow) as engine:
        (root / "budget.xlsx").write_bytes(first)
        await eventually(lambda: engine.counters().bytes_hashed >= len(first), timeout=30)
        await asyncio.sleep(1.0)
        temp = root / "3F2A1B9C"  # Excel's save: a new file renamed over the document
        temp.write_bytes(second)
        os.replace(temp, root / "budget.xlsx")
        await eventually(lambda: engine.counters().files_uploaded >= 1, timeout=30)
        engine.set_bandwidth(None, None)
        await settled(engine, timeout=60)

        entry = await remote_entry(sdk, "/budget.xlsx")
        assert entry is not None and entry.sha256 == sha(second)
        assert engine.issues() == []
