"""A folder deleted here reaches the server as one delete of the folder, so the server's
trash holds it as one item that comes back whole; and never takes along what changed on
the server meanwhile."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dropline.sdk.client import DroplineClient
from dropline.sdk.models import EntryType
from dropline.sdk.resumable import upload_file
from dropline.sync.remote import RemoteFeed
from tests.sync.engine_helpers import (
    StartEngine,
    eventually,
    remote_entry,
    remote_tree,
    settled,
    sha,
)

pytestmark = pytest.mark.anyio


async def test_a_folder_deleted_here_is_one_item_in_the_servers_trash(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    async with start_engine() as engine:
        (root / "docs" / "sub").mkdir(parents=True)
        (root / "docs" / "a.txt").write_bytes(b"a")
        (root / "docs" / "sub" / "b.txt").write_bytes(b"b")
        (root / "loose.txt").write_bytes(b"loose")
        await settled(engine)
        assert len(await remote_tree(sdk)) == 5
        shutil.rmtree(root / "docs")
        (root / "loose.txt").unlink()
        await settled(engine)
        assert await remote_tree(sdk) == {}
        items = await sdk.trash()
        assert sorted((i.path, i.type, i.files) for i in items) == [
            ("/docs", EntryType.FOLDER, 2),
            ("/loose.txt", EntryType.FILE, 1),
        ]
        # It comes back whole, and down into the folder.
        folder = next(i for i in items if i.path == "/docs")
        await sdk.restore_from_trash(folder.id)
        await eventually(lambda: (root / "docs" / "sub" / "b.txt").exists())
        await settled(engine)
        assert (root / "docs" / "a.txt").read_bytes() == b"a"
        assert (root / "docs" / "sub" / "b.txt").read_bytes() == b"b"


@pytest.mark.parametrize("feed_lags", [False, True])
async def test_a_folder_deleted_here_keeps_a_file_changed_on_the_server(
    tmp_path: Path,
    root: Path,
    sdk: DroplineClient,
    start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
    feed_lags: bool,
) -> None:
    async with start_engine() as engine:
        (root / "docs" / "deep").mkdir(parents=True)
        (root / "docs" / "deep" / "budget.xlsx").write_bytes(b"v1")
        (root / "docs" / "notes.txt").write_bytes(b"notes")
        await settled(engine)
        entry = await remote_entry(sdk, "/docs/deep/budget.xlsx")
        assert entry is not None
        if feed_lags:
            # The feed has not told us yet: the folder's delete must look for itself.
            async def lagging(*_args: object) -> None:
                return None

            monkeypatch.setattr(RemoteFeed, "_apply", lagging)
        engine.pause()
        shutil.rmtree(root / "docs")
        src = tmp_path / "v2"
        src.write_bytes(b"v2 from a colleague")
        await upload_file(sdk, src, "/docs/deep/budget.xlsx", if_rev=entry.rev)
        engine.resume()
        await eventually(lambda: (root / "docs" / "deep" / "budget.xlsx").exists())
        await settled(engine)
        assert (root / "docs" / "deep" / "budget.xlsx").read_bytes() == b"v2 from a colleague"
        tree = await remote_tree(sdk)
        assert tree["/docs/deep/budget.xlsx"] == sha(b"v2 from a colleague")
