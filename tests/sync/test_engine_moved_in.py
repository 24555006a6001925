"""Files and folders moved into a synced folder go up at once; a file written in place
still waits for its writer to close it.

The hold for a close that never comes (``aggregator.OPEN_WAIT``) is stretched far beyond
every wait here: a moved-in file that were held would never arrive in time, so these
tests check that nothing is held, not how fast the machine is.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from dropline.sdk.client import DroplineClient
from dropline.sync import aggregator
from tests.sync.engine_helpers import (
    StartEngine,
    eventually,
    remote_entry,
    remote_tree,
    settled,
    sha,
)

pytestmark = pytest.mark.anyio

NEVER = 3600.0  # seconds: a held file would wait this long


@pytest.fixture(autouse=True)
def hold_for_an_hour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aggregator, "OPEN_WAIT", NEVER)


@pytest.fixture
def desktop(tmp_path: Path) -> Path:
    """A folder outside the synced one, on the same file system."""
    outside = tmp_path / "Desktop"
    outside.mkdir()
    return outside


def aged(path: Path, data: bytes) -> Path:
    """A file that sat elsewhere for an hour, as the files people drag in usually have."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    then = path.stat().st_mtime - 3600
    os.utime(path, (then, then))
    return path


async def test_file_moved_in_is_uploaded_without_waiting_for_a_close(
    root: Path, desktop: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    data = os.urandom(300_000)
    async with start_engine() as engine:
        await settled(engine)
        os.rename(aged(desktop / "invoice.pdf", data), root / "invoice.pdf")
        await eventually(lambda: engine.counters().files_uploaded == 1, timeout=5)
        entry = await remote_entry(sdk, "/invoice.pdf")
        assert entry is not None and entry.sha256 == sha(data)
        await settled(engine)
        assert engine.counters().files_uploaded == 1


async def test_file_written_elsewhere_and_moved_in_at_once_is_uploaded_whole(
    root: Path, desktop: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    # Its mtime is fresh, so the settling window applies; the hold for a close does not.
    data = os.urandom(200_000)
    async with start_engine() as engine:
        await settled(engine)
        (desktop / "scan.png").write_bytes(data)
        os.rename(desktop / "scan.png", root / "scan.png")
        await eventually(lambda: engine.counters().files_uploaded == 1, timeout=5)
        await settled(engine)
        assert await remote_tree(sdk) == {"/scan.png": sha(data)}
        assert engine.counters().files_uploaded == 1


async def test_folder_with_nested_files_moved_in_is_uploaded_whole(
    root: Path, desktop: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    files = {
        "/project/README": b"readme",
        "/project/src/main.py": b"print('hi')",
        "/project/src/lib/util.py": b"def util(): ...",
        "/project/docs/deep/er/notes.txt": b"notes",
    }
    for path, data in files.items():
        aged(desktop / path.lstrip("/"), data)
    async with start_engine() as engine:
        await settled(engine)
        os.rename(desktop / "project", root / "project")  # one event for the whole tree
        await eventually(lambda: engine.counters().files_uploaded == len(files), timeout=10)
        await settled(engine)
        folders = ["/project", "/project/src", "/project/src/lib", "/project/docs"]
        folders += ["/project/docs/deep", "/project/docs/deep/er"]
        assert await remote_tree(sdk) == {
            **{p: sha(d) for p, d in files.items()},
            **dict.fromkeys(folders),
        }
        assert engine.counters().files_uploaded == len(files)


async def test_file_moved_in_over_a_synced_one_is_one_new_revision(
    root: Path, desktop: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    async with start_engine() as engine:
        (root / "rates.csv").write_bytes(b"old rates")
        await settled(engine)
        before = await remote_entry(sdk, "/rates.csv")
        assert before is not None
        os.rename(aged(desktop / "rates.csv", b"new rates"), root / "rates.csv")
        await eventually(lambda: engine.counters().files_uploaded == 2, timeout=5)
        await settled(engine)
        after = await remote_entry(sdk, "/rates.csv")
        assert after is not None and after.sha256 == sha(b"new rates")
        assert after.id == before.id and after.rev != before.rev
        assert engine.counters().files_uploaded == 2


async def test_file_written_in_place_waits_for_its_close(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    first, rest = os.urandom(100_000), os.urandom(100_000)
    async with start_engine() as engine:
        await settled(engine)
        with (root / "export.csv").open("wb") as fh:
            fh.write(first)
            fh.flush()
            os.utime(root / "export.csv", (0, 0))  # not even an old mtime lets it through
            # Far past the debounce and the settling window: only the open file holds it.
            await asyncio.sleep(1.5)
            assert engine.counters().files_uploaded == 0
            assert await remote_entry(sdk, "/export.csv") is None
            fh.write(rest)
        await eventually(lambda: engine.counters().files_uploaded == 1, timeout=5)
        await settled(engine)
        assert await remote_tree(sdk) == {"/export.csv": sha(first + rest)}
        assert engine.counters().files_uploaded == 1
