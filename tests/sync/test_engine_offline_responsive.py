"""While the server is away the engine waits for it without spinning: a path whose hold
runs out meanwhile (a file that was settling, an upload to retry) waits for the server
too, and the event loop stays free for everything else the agent does (its control
socket, the tray's status)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from dropline.sync.types import State
from tests.support.live import ServerProcess
from tests.sync.engine_helpers import StartEngine, eventually, settled

pytestmark = pytest.mark.anyio


async def test_a_hold_that_runs_out_offline_leaves_the_event_loop_free(
    root: Path, own_server: tuple[ServerProcess, str], start_engine: StartEngine
) -> None:
    server, key = own_server
    (root / "before.txt").write_text("synced")
    async with start_engine(url=server.url, key=key) as engine:
        await settled(engine)
        server.kill()
        (root / "later.txt").write_text("saved while offline")
        await eventually(lambda: engine.status().state is State.OFFLINE, timeout=30)
        # A path held until a moment that passes while the server is away, as a file
        # still settling or an upload waiting for its retry is.
        loop = engine._loops[str(root)]
        loop.holds["later.txt"] = time.monotonic() + 0.2
        loop.wake()
        longest, last = 0.0, time.monotonic()
        for _ in range(60):
            await asyncio.sleep(0.05)
            now = time.monotonic()
            longest, last = max(longest, now - last), now
        assert longest < 0.5, f"the event loop was held for {longest:.1f} s"
        assert engine.status().folders[0].pending > 0  # queued, waiting for the server
