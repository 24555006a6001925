"""Downloads onto a full disk: a small real file system (tmpfs with a size limit) holds the
sync folder, the server stays outside it. A file that cannot fit is refused before its
first byte; a disk that fills up midway leaves nothing behind and the old file as it was;
either way the file is a ``disk-full`` issue that clears when space is freed."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from dropline.sdk.client import DroplineClient
from dropline.sdk.resumable import upload_file
from dropline.sync import folder_actions
from dropline.sync.disk_space import free_bytes, size_text
from dropline.sync.engine import Engine
from dropline.sync.fs import PARTIAL_DIR
from dropline.sync.types import Direction, FolderSpec, TransferProgress
from tests.sync.engine_helpers import FAST, StartEngine, eventually, remote_entry, settled, sha

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs mounted for this test (the tests run as root, as CI does)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], check=True)


@pytest.fixture(autouse=True)
def quick_disk_full_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry a full disk every second instead of backing off to half a minute."""
    monkeypatch.setattr(folder_actions, "DISK_FULL_RETRY_CAP", 1.0)


def fill(path: Path, size: int) -> None:
    """Take ``size`` bytes of the disk (or as much as there is)."""
    with path.open("wb") as fh:
        try:
            for _ in range(size // (256 * 1024)):
                fh.write(os.urandom(256 * 1024))
            fh.flush()
        except OSError:
            pass  # full already: that is what we wanted


def partial_files(root: Path) -> list[str]:
    directory = root / PARTIAL_DIR
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def disk_full_issues(engine: Engine, path: str) -> list[str]:
    return [i.message for i in engine.issues() if i.kind == "disk-full" and i.path == path]


async def put(sdk: DroplineClient, tmp_path: Path, remote: str, data: bytes) -> None:
    src = tmp_path / "upload-source"
    src.write_bytes(data)
    entry = await remote_entry(sdk, remote)
    await upload_file(sdk, src, remote, if_rev=None if entry is None else entry.rev)


async def test_a_download_bigger_than_the_free_space_is_refused_until_space_is_freed(
    tmp_path: Path, small_disk: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    root = small_disk / "Dropline"
    root.mkdir()
    filler = small_disk / "someone else's file.bin"  # on the same disk, outside the folder
    fill(filler, 10 * MiB)
    big = os.urandom(8 * MiB)
    await put(sdk, tmp_path, "/big.bin", big)
    await put(sdk, tmp_path, "/small.txt", b"fits easily")

    async with start_engine(FolderSpec(root)) as engine:
        await eventually(lambda: bool(disk_full_issues(engine, "big.bin")))
        await eventually(lambda: (root / "small.txt").exists())  # the folder goes on
        [message] = disk_full_issues(engine, "big.bin")
        assert "needs 8.0 MB" in message, message
        [issue] = [i for i in engine.issues() if i.kind == "disk-full"]
        assert "Free up space" in issue.hint
        assert not (root / "big.bin").exists()
        assert partial_files(root) == []  # refused before a byte was written
        assert free_bytes(small_disk) > 5 * MiB  # ...so the disk is as full as it was

        filler.unlink()
        await eventually(lambda: (root / "big.bin").exists())
        await settled(engine)
        assert sha((root / "big.bin").read_bytes()) == sha(big)
        assert disk_full_issues(engine, "big.bin") == []
        assert partial_files(root) == []


async def test_a_disk_that_fills_up_midway_leaves_the_old_file_and_no_partial(
    tmp_path: Path, small_disk: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    root = small_disk / "Dropline"
    root.mkdir()
    old = b"the version everyone has" * 1000
    (root / "ledger.bin").write_bytes(old)
    new = os.urandom(10 * MiB)
    filler = small_disk / "filler.bin"
    slow = replace(FAST, download_limit_bps=3 * MiB)  # slow enough to fill the disk midway

    async with start_engine(FolderSpec(root), settings=slow) as engine:
        await settled(engine)
        assert (await remote_entry(sdk, "/ledger.bin")) is not None
        events = engine.subscribe()
        await put(sdk, tmp_path, "/ledger.bin", new)

        async for event in events:
            if (
                isinstance(event, TransferProgress)
                and event.direction is Direction.DOWN
                and event.bytes_done >= 3 * MiB
            ):
                break
        # Midway: someone else takes nearly all that is left (on the engine's own thread,
        # so the download cannot finish first).
        fill(filler, free_bytes(small_disk) - 256 * 1024)
        engine.unsubscribe(events)

        await eventually(lambda: bool(disk_full_issues(engine, "ledger.bin")))
        [message] = disk_full_issues(engine, "ledger.bin")
        assert f"needs {size_text(len(new))}" in message, message
        assert (root / "ledger.bin").read_bytes() == old  # nothing replaced
        await eventually(lambda: partial_files(root) == [])  # the partial file is gone
        assert sorted(p.name for p in root.iterdir()) == [".dropline", "ledger.bin"]

        filler.unlink()
        await eventually(lambda: sha((root / "ledger.bin").read_bytes()) == sha(new), 60)
        await settled(engine)
        assert disk_full_issues(engine, "ledger.bin") == []
        assert partial_files(root) == []
