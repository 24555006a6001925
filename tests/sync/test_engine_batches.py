"""Small files go up in batch requests, and each file's answer is applied on its own."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from dropline.sdk.client import DroplineClient
from dropline.sync.journal import Journal
from dropline.sync.types import AfterUpload, FolderMode, FolderSpec, HistoryQuery, Result
from tests.support.live import LiveServer
from tests.sync.engine_helpers import (
    FAST,
    StartEngine,
    eventually,
    remote_entry,
    remote_tree,
    settled,
    sha,
)

pytestmark = pytest.mark.anyio


async def test_files_found_together_go_up_in_batches_of_the_configured_size(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    (root / "scans").mkdir()
    for i in range(250):
        (root / "scans" / f"page-{i:03d}.txt").write_bytes(b"page %d\n" % i)
    # One big file beside them keeps the resumable path.
    big = bytes(range(256)) * 8192  # 2 MiB
    (root / "scans" / "poster.tif").write_bytes(big)
    _settled_long_ago(root)
    settings = replace(FAST, batch_files=100)
    async with start_engine(settings=settings) as engine:
        await eventually(lambda: engine.counters().files_uploaded >= 251, timeout=60)
        await settled(engine)
        counters = engine.counters()
        # The first scan finds all 250 at once: 100 + 100 + 50.
        assert counters.upload_batches == 3
        assert counters.files_uploaded == 251
        assert counters.bytes_uploaded == sum(p.stat().st_size for p in (root / "scans").iterdir())
        tree = await remote_tree(sdk, "/scans")
        assert len(tree) == 251
        assert tree["/scans/page-123.txt"] == sha(b"page 123\n")
        assert tree["/scans/poster.tif"] == sha(big)
        ok = [r for r in engine.history(HistoryQuery(limit=1000)) if r.result is Result.OK]
        assert len(ok) == 251  # one history row per file, batch or not
        assert not engine.issues()


async def test_a_refused_file_in_a_batch_becomes_its_own_issue_and_the_others_land(
    root: Path, live_server: LiveServer, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    _block_extension(live_server, ".exe")
    for i in range(5):
        (root / f"good-{i}.txt").write_bytes(b"good %d\n" % i)
    (root / "setup.exe").write_bytes(b"MZ not welcome\n")
    _settled_long_ago(root)
    async with start_engine() as engine:
        await eventually(lambda: engine.counters().files_uploaded >= 5, timeout=30)
        await eventually(lambda: any(i.path == "setup.exe" for i in engine.issues()))
        assert engine.counters().upload_batches == 1
        assert engine.counters().files_uploaded == 5
        for i in range(5):
            entry = await remote_entry(sdk, f"/good-{i}.txt")
            assert entry is not None and entry.sha256 == sha(b"good %d\n" % i)
        assert await remote_entry(sdk, "/setup.exe") is None
        issues = engine.issues()
        assert [(i.path, i.kind) for i in issues] == [("setup.exe", "forbidden")]
        assert "blocked_extensions" in issues[0].message or "exe" in issues[0].message
        assert issues[0].retry_at is not None  # tried again later, like a single upload
        history = engine.history(HistoryQuery(limit=1000))
        assert sorted(r.path for r in history if r.result is Result.OK) == [
            f"good-{i}.txt" for i in range(5)
        ]
        assert {r.path for r in history if r.result is Result.FAILED} == {"setup.exe"}
        assert (root / "setup.exe").read_bytes() == b"MZ not welcome\n"  # nothing lost here


async def test_a_batch_repeated_after_a_crash_sends_nothing_twice(
    tmp_path: Path, root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    """The engine died after the server committed a batch but before the journal heard:
    the queue still holds the files, and the repeat converges without a second copy."""
    names = [f"note-{i:02d}.txt" for i in range(30)]
    for name in names:
        (root / name).write_bytes(name.encode())
    _settled_long_ago(root)
    async with start_engine() as engine:
        await eventually(lambda: engine.counters().upload_batches == 1)
        await settled(engine)
    before = {n: await remote_entry(sdk, f"/{n}") for n in names}
    assert all(e is not None for e in before.values())
    # Forget what the answer taught the journal, as a crash before applying it would.
    journal = Journal(tmp_path / "home")
    try:
        fid = journal.folder_id(str(root), "/")
        with journal.transaction():
            for name in names:
                journal.put_base(fid, name, None)
            journal.enqueue_local(fid, names)
    finally:
        journal.close()
    async with start_engine() as engine:
        await settled(engine)
        await eventually(lambda: engine.status().folders[0].pending == 0)
        assert not engine.issues()
        after = {n: await remote_entry(sdk, f"/{n}") for n in names}
        # The same entries at the same revisions: the repeat published nothing new.
        assert {n: (e.id, e.rev) for n, e in after.items() if e} == {
            n: (e.id, e.rev) for n, e in before.items() if e
        }
        assert sorted(p.name for p in root.iterdir() if p.is_file()) == names  # no copies
        assert engine.counters().files_uploaded == 0


async def test_upload_only_hands_over_each_file_of_a_batch(
    tmp_path: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    root = tmp_path / "Outbox"
    root.mkdir()
    for i in range(20):
        (root / f"invoice-{i:02d}.pdf").write_bytes(b"%%PDF invoice %d\n" % i)
    _settled_long_ago(root)
    spec = FolderSpec(root, "/outbox", FolderMode.UPLOAD_ONLY, after_upload=AfterUpload.REMOVE)
    async with start_engine(spec) as engine:
        await eventually(lambda: not list(root.glob("*.pdf")), timeout=30)
        await settled(engine)
        assert engine.counters().upload_batches == 1
        assert not engine.issues()
        tree = await remote_tree(sdk, "/outbox")
        assert tree == {
            f"/outbox/invoice-{i:02d}.pdf": sha(b"%%PDF invoice %d\n" % i) for i in range(20)
        }


def _settled_long_ago(root: Path) -> None:
    """Files written a minute ago: the first scan finds every one settled, none held."""
    past = time.time() - 60
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (past, past))


def _block_extension(live: LiveServer, extension: str) -> None:
    """The tenant's policy refuses files ending in ``extension`` (set by its admin)."""
    live.identity.create_user("acme", "root@acme.example", "long enough", admin=True)
    _id, key = live.identity.create_api_key("acme", "root@acme.example", ("admin",))
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"}) as admin:
        r = admin.put("/api/v1/admin/policy", json={"blocked_extensions": [extension]})
        assert r.status_code == 200, r.text
