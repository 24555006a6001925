"""The engine killed with SIGKILL mid-transfer resumes where the server (or the partial
file) stands; the server stopped mid-sync: nothing is lost and both sides converge."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dropline.sdk.client import DroplineClient
from dropline.sdk.resumable import upload_file
from dropline.sync.types import State
from tests.support.live import LiveServer, ServerProcess
from tests.sync.engine_helpers import (
    REPO,
    StartEngine,
    client_for,
    eventually,
    local_tree,
    remote_entry,
    remote_tree,
    settled,
)

pytestmark = pytest.mark.anyio

SIZE = 48 * 1024 * 1024
CHUNK = 1024 * 1024


class Runner:
    """The engine in a child process (tests/support/engine_runner.py)."""

    def __init__(self, tmp: Path, url: str, key: str, root: Path) -> None:
        self.tmp, self.url, self.key, self.root = tmp, url, key, root
        self.state_file = tmp / "runner-state.json"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, **settings: Any) -> None:
        config = {
            "home": str(self.tmp / "home"),
            "url": self.url,
            "folders": [{"local": str(self.root)}],
            "settings": {
                "stable_seconds": 0.2,
                "longpoll_timeout": 1,
                "chunk_size": CHUNK,
                **settings,
            },
            "state_file": str(self.state_file),
        }
        path = self.tmp / "runner.json"
        path.write_text(json.dumps(config))
        self.state_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.engine_runner", str(path)],
            cwd=REPO,
            env={**os.environ, "DROPLINE_TEST_API_KEY": self.key},
        )

    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def counter(self, name: str) -> int:
        return int(self.state().get("counters", {}).get(name, 0))

    def kill(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def runner(tmp_path: Path, root: Path, live_server: LiveServer, api_key: str) -> Any:
    """The engine in a child process, on ``root`` against the live server; stopped after."""
    r = Runner(tmp_path, live_server.url, api_key, root)
    yield r
    r.stop()


def big_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as fh:
        for _ in range(SIZE // CHUNK):
            block = os.urandom(CHUNK)
            digest.update(block)
            fh.write(block)
    return digest.hexdigest()


async def test_killed_mid_upload_resumes_at_the_servers_offset(
    runner: Runner, sdk: DroplineClient
) -> None:
    expected = big_file(runner.root / "big.bin")
    runner.start(upload_limit_bps=16 * CHUNK)  # slow enough to be caught in the middle
    await eventually(lambda: runner.counter("bytes_uploaded") >= 30 * CHUNK, timeout=60)
    runner.kill()
    sent_before = runner.counter("bytes_uploaded")
    assert sent_before < SIZE

    runner.start()
    await eventually(lambda: runner.counter("files_uploaded") == 1, timeout=120)
    resent = runner.counter("bytes_uploaded")
    assert runner.counter("bytes_hashed") == 0  # the journal remembered the hash too
    # Only what the server did not have yet went up again (plus at most one chunk).
    assert resent <= SIZE - sent_before + 2 * CHUNK
    assert resent < SIZE // 2
    entry = await remote_entry(sdk, "/big.bin")
    assert entry is not None and entry.sha256 == expected and entry.size == SIZE


async def test_killed_mid_download_resumes_from_the_partial_file(
    runner: Runner, sdk: DroplineClient, tmp_path: Path
) -> None:
    src = tmp_path / "server-copy.bin"
    expected = big_file(src)
    await upload_file(sdk, src, "/big.bin")
    runner.start(download_limit_bps=16 * CHUNK)
    await eventually(lambda: runner.counter("bytes_downloaded") >= 30 * CHUNK, timeout=60)
    runner.kill()
    got_before = runner.counter("bytes_downloaded")
    partials = list((runner.root / ".dropline" / "partial").iterdir())
    assert len(partials) == 1 and partials[0].stat().st_size > 0
    assert not (runner.root / "big.bin").exists()  # nothing half-written in place

    runner.start()
    await eventually(lambda: runner.counter("files_downloaded") == 1, timeout=120)
    fetched = runner.counter("bytes_downloaded")
    assert fetched <= SIZE - got_before + 8 * CHUNK  # what was flushed is not fetched again
    assert fetched < SIZE // 2
    assert hashlib.sha256((runner.root / "big.bin").read_bytes()).hexdigest() == expected
    assert list((runner.root / ".dropline" / "partial").iterdir()) == []
    assert runner.counter("files_uploaded") == 0


async def test_server_down_mid_sync_loses_nothing_and_converges(
    root: Path, own_server: tuple[ServerProcess, str], start_engine: StartEngine
) -> None:
    server, key = own_server
    url = server.url
    for i in range(20):
        (root / f"before-{i}.txt").write_bytes(b"before %d" % i)
    async with start_engine(url=url, key=key) as engine:
        await settled(engine)
        server.kill()
        for i in range(30):
            (root / f"during-{i}.txt").write_bytes(b"during %d" % i)
        (root / "before-0.txt").write_bytes(b"edited while offline")
        (root / "before-1.txt").unlink()
        await eventually(lambda: engine.status().state is State.OFFLINE, timeout=60)
        await asyncio.sleep(1.0)
        assert engine.status().folders[0].pending > 0  # waiting in the journal
        started = time.monotonic()
        server.start()  # again, on the same port and data
        await settled(engine, timeout=90)
        assert time.monotonic() - started < 90
        async with client_for(url, key) as sdk:
            assert await remote_tree(sdk) == local_tree(root)
        assert len(local_tree(root)) == 49
