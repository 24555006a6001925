"""The engine against the real server: local changes go up, remote changes come down."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dropline.sdk.client import DroplineClient
from dropline.sdk.resumable import upload_file
from tests.sync.engine_helpers import (
    StartEngine,
    eventually,
    local_tree,
    remote_entry,
    remote_tree,
    settled,
    sha,
)

pytestmark = pytest.mark.anyio


async def test_local_create_modify_rename_delete_reach_the_server(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    async with start_engine() as engine:
        (root / "a.txt").write_bytes(b"first")
        (root / "docs").mkdir()
        (root / "docs" / "b.txt").write_bytes(b"bee")
        await settled(engine)
        assert await remote_tree(sdk) == {
            "/a.txt": sha(b"first"),
            "/docs": None,
            "/docs/b.txt": sha(b"bee"),
        }
        first = await remote_entry(sdk, "/a.txt")
        assert first is not None

        (root / "a.txt").write_bytes(b"second version")
        await settled(engine)
        changed = await remote_entry(sdk, "/a.txt")
        assert changed is not None and changed.sha256 == sha(b"second version")
        assert changed.id == first.id  # a new revision of the same file

        os.rename(root / "a.txt", root / "renamed.txt")
        os.rename(root / "docs", root / "papers")
        await settled(engine)
        moved = await remote_entry(sdk, "/renamed.txt")
        assert moved is not None and moved.id == first.id  # a server move, not a re-upload
        assert await remote_tree(sdk) == {
            "/renamed.txt": sha(b"second version"),
            "/papers": None,
            "/papers/b.txt": sha(b"bee"),
        }
        uploads = engine.counters().files_uploaded
        assert uploads == 3

        (root / "renamed.txt").unlink()
        (root / "papers" / "b.txt").unlink()
        (root / "papers").rmdir()
        await settled(engine)
        assert await remote_tree(sdk) == {}


async def test_remote_changes_reach_the_folder(
    tmp_path: Path, root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    src = tmp_path / "src.bin"
    async with start_engine() as engine:
        await settled(engine)
        src.write_bytes(b"from the server")
        entry = await upload_file(sdk, src, "/inbox/report.txt")
        await eventually(lambda: (root / "inbox" / "report.txt").exists())
        await settled(engine)
        assert (root / "inbox" / "report.txt").read_bytes() == b"from the server"
        assert engine.counters().files_uploaded == 0  # our own download is not echoed back

        src.write_bytes(b"changed on the server")
        await upload_file(sdk, src, "/inbox/report.txt", if_rev=entry.rev)
        await eventually(
            lambda: (root / "inbox" / "report.txt").read_bytes() == b"changed on the server"
        )
        await sdk.move(entry.id, "/inbox/final.txt")
        await eventually(lambda: (root / "inbox" / "final.txt").exists())
        assert not (root / "inbox" / "report.txt").exists()
        folder = await remote_entry(sdk, "/inbox")
        assert folder is not None
        await sdk.move(folder.id, "/archive")
        await eventually(lambda: (root / "archive" / "final.txt").exists())
        await settled(engine)
        assert local_tree(root) == await remote_tree(sdk)
        archive = await remote_entry(sdk, "/archive")
        assert archive is not None
        await sdk.delete(archive.id)
        await eventually(lambda: not (root / "archive").exists())
        await settled(engine)
        assert local_tree(root) == {}
        assert engine.counters().files_uploaded == 0


async def test_folder_moved_in_from_outside_goes_up_whole(
    tmp_path: Path, root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    outside = tmp_path / "Desktop" / "project"
    (outside / "src").mkdir(parents=True)
    (outside / "README").write_bytes(b"readme")
    (outside / "src" / "main.py").write_bytes(b"print()")
    async with start_engine() as engine:
        await settled(engine)
        os.rename(outside, root / "project")  # one event for the whole tree
        await eventually(lambda: engine.counters().files_uploaded == 2)
        await settled(engine)
        assert await remote_tree(sdk) == {
            "/project": None,
            "/project/README": sha(b"readme"),
            "/project/src": None,
            "/project/src/main.py": sha(b"print()"),
        }
