"""After the server was away long enough for every backoff to grow, an engine with the
SDK's own circuit breaker resumes within seconds of the server answering again: the
folder's probes and the change feed wait out the breaker's cool-down (its
``retry_after``), not a backoff that doubled to a minute while the breaker refused them."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dropline.sdk.client import ApiKeyCredentials, DroplineClient
from dropline.sdk.resumable import upload_file
from dropline.sync.engine import Engine
from dropline.sync.types import FolderSpec, State
from tests.support.live import ServerProcess
from tests.sync.engine_helpers import FAST, QUICK_RETRY, eventually, remote_entry, settled, sha

pytestmark = pytest.mark.anyio

AWAY = 20.0  # seconds the server is gone: the old doubling backoff had reached 16 s
RESUMED_WITHIN = 9.0  # the breaker's 5 s cool-down, a second of jitter, the work itself


async def test_engine_resumes_within_seconds_of_a_server_restart(
    tmp_path: Path, root: Path, own_server: tuple[ServerProcess, str]
) -> None:
    server, key = own_server

    def client() -> DroplineClient:  # the breaker the agent runs with: the SDK's default
        return DroplineClient(server.url, ApiKeyCredentials(key), retry=QUICK_RETRY)

    (root / "before.txt").write_text("synced")
    engine = Engine(tmp_path / "home", client, [FolderSpec(root)], FAST)
    await engine.start()
    try:
        await settled(engine)
        server.kill()
        gone_at = time.monotonic()
        (root / "offline.txt").write_bytes(b"saved while the server was away")
        await eventually(lambda: engine.status().state is State.OFFLINE, timeout=30)
        await eventually(lambda: time.monotonic() - gone_at > AWAY, timeout=AWAY + 5)
        server.start()
        back_at = time.monotonic()
        async with client() as sdk:

            async def uploaded() -> bool:
                entry = await remote_entry(sdk, "/offline.txt")
                return entry is not None and entry.sha256 == sha(b"saved while the server was away")

            await eventually(uploaded, timeout=60)
            up_after = time.monotonic() - back_at
            # The change feed resumed too: a file added on the server comes down.
            elsewhere = tmp_path / "elsewhere.txt"
            elsewhere.write_bytes(b"written elsewhere")
            await upload_file(sdk, elsewhere, "/from-server.txt")
            await eventually(lambda: (root / "from-server.txt").exists(), timeout=60)
            down_after = time.monotonic() - back_at
        print(f"resumed: up {up_after:.1f} s, down {down_after:.1f} s after the restart")
        assert up_after < RESUMED_WITHIN, f"the upload waited {up_after:.1f} s"
        assert down_after < RESUMED_WITHIN + 2, f"the download waited {down_after:.1f} s"
    finally:
        await engine.stop()
