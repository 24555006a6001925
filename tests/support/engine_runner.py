"""Runs one sync engine in a child process, for the tests that kill it with SIGKILL.

``python -m tests.support.engine_runner CONFIG.json``: the config names the engine's
home, the server URL, the folders and the settings; the API key comes from the
``DROPLINE_TEST_API_KEY`` environment variable (never a file or the command line).
Every 50 ms the runner writes its counters and state to ``state_file`` (atomically),
so the parent can watch the transfer and pick its moment. SIGTERM stops it cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from dropline.sdk.breaker import CircuitBreaker
from dropline.sdk.client import ApiKeyCredentials, DroplineClient, RetryPolicy
from dropline.sync.engine import Engine
from dropline.sync.types import EngineSettings, FolderMode, FolderSpec


def _write_state(engine: Engine, target: Path) -> None:
    status = engine.status()
    doc = {
        "pid": os.getpid(),
        "state": str(status.state),
        "pending": sum(f.pending for f in status.folders),
        "folders": [str(f.state) for f in status.folders],
        "issues": status.issues,
        "counters": asdict(engine.counters()),
    }
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, target)


async def main(config: dict[str, Any]) -> None:
    key = os.environ["DROPLINE_TEST_API_KEY"]
    url = config["url"]

    def client() -> DroplineClient:
        return DroplineClient(
            url,
            ApiKeyCredentials(key),
            retry=RetryPolicy(attempts=3, initial=0.05, maximum=0.5),
            breaker=CircuitBreaker(failure_threshold=5, reset_timeout=1.0),
        )

    folders = [
        FolderSpec(Path(f["local"]), f.get("remote", "/"), FolderMode(f.get("mode", "two-way")))
        for f in config["folders"]
    ]
    engine = Engine(Path(config["home"]), client, folders, EngineSettings(**config["settings"]))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await engine.start()
    state_file = Path(config["state_file"])
    try:
        while not stop.is_set():
            _write_state(engine, state_file)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.05)
    finally:
        await engine.stop()


if __name__ == "__main__":
    asyncio.run(main(json.loads(Path(sys.argv[1]).read_text())))
