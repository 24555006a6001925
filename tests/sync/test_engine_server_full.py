"""The server's disk is full (its file storage on a small tmpfs; the tests run as root, as
CI does): an upload it refuses with 507 becomes a per-file ``server-full`` issue retried
on a short backoff, not a server error left for minutes, and the file goes up soon after
space is freed."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropline.server.settings import Settings
from dropline.sync import folder_actions
from dropline.sync.types import FolderSpec
from tests.faults.scenarios.disk_full import fill, mount, unmount
from tests.support.live import LiveServer, running_server
from tests.sync.engine_helpers import (
    StartEngine,
    client_for,
    eventually,
    remote_entry,
    settled,
    sha,
)

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


@pytest.fixture
def full_server(tmp_path: Path) -> Iterator[tuple[LiveServer, Path]]:
    """A server whose uploads, blobs and checksums are on a 16 MiB tmpfs."""
    disk = mount(tmp_path / "small-disk", 16 * MiB)
    try:
        data = tmp_path / "server-data"
        data.mkdir()
        for name in ("uploads", "blobs", "checksums"):
            (disk / name).mkdir()
            (data / name).symlink_to(disk / name)
        with running_server(Settings(data_dir=data, port=0)) as live:
            yield live, disk
    finally:
        unmount(disk)


async def test_an_upload_the_full_server_refuses_is_a_server_full_issue_until_space_is_freed(
    root: Path, full_server: tuple[LiveServer, Path], start_engine: StartEngine
) -> None:
    live, disk = full_server
    key = live.new_key()
    filler = fill(disk, 256 * 1024)
    data = os.urandom(2 * MiB)
    (root / "report.bin").write_bytes(data)
    async with start_engine(FolderSpec(root), url=live.url, key=key) as engine:

        def refused() -> list[float]:
            return [
                i.retry_at or 0.0
                for i in engine.issues()
                if i.kind == "server-full" and i.path.lstrip("/") == "report.bin"
            ]

        await eventually(lambda: bool(refused()), timeout=60)
        [retry_at] = refused()
        assert retry_at - time.time() <= folder_actions.DISK_FULL_RETRY_CAP + 1

        filler.unlink()
        await eventually(lambda: not refused(), timeout=60)
        await settled(engine)
        async with client_for(live.url, key) as sdk:
            entry = await remote_entry(sdk, "/report.bin")
        assert entry is not None and entry.sha256 == sha(data)
