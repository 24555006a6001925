"""Conflicts, folder modes, editor saves, hostile names, the mass-delete guard, restarts."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from dropline.sdk.client import DroplineClient
from dropline.sdk.resumable import upload_file
from dropline.sync.conflicts import is_conflict_copy
from dropline.sync.remote import RemoteFeed
from dropline.sync.types import AfterUpload, FolderMode, FolderSpec, LocalEdits, State
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


async def test_two_sided_edit_keeps_both_versions(
    tmp_path: Path, root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    async with start_engine() as engine:
        (root / "plan.txt").write_bytes(b"original")
        await settled(engine)
        entry = await remote_entry(sdk, "/plan.txt")
        assert entry is not None
        engine.pause()
        (root / "plan.txt").write_bytes(b"edited here")
        src = tmp_path / "theirs"
        src.write_bytes(b"edited on the server")
        await upload_file(sdk, src, "/plan.txt", if_rev=entry.rev)
        engine.resume()
        await eventually(lambda: len(list(root.iterdir())) == 3)  # .dropline, both versions
        await settled(engine)
        names = sorted(p.name for p in root.iterdir() if p.name != ".dropline")
        copy = next(n for n in names if is_conflict_copy(n))
        assert copy.startswith("plan (conflicted copy testhost ") and copy.endswith(".txt")
        assert (root / "plan.txt").read_bytes() == b"edited on the server"
        assert (root / copy).read_bytes() == b"edited here"
        assert await remote_tree(sdk) == {
            "/plan.txt": sha(b"edited on the server"),
            "/" + copy: sha(b"edited here"),
        }
        assert [i.kind for i in engine.issues()] == ["conflict"]


@pytest.mark.parametrize("after", list(AfterUpload))
async def test_upload_only_folder_hands_files_over(
    tmp_path: Path, root: Path, sdk: DroplineClient, start_engine: StartEngine, after: AfterUpload
) -> None:
    spec = FolderSpec(root, "/drop", FolderMode.UPLOAD_ONLY, after_upload=after)
    async with start_engine(spec) as engine:
        await settled(engine)
        src = tmp_path / "server-side.txt"
        src.write_bytes(b"never comes down")
        await upload_file(sdk, src, "/drop/from-server.txt")
        (root / "sub").mkdir()
        (root / "sub" / "invoice.pdf").write_bytes(b"%PDF invoice")
        await settled(engine)
        assert (await remote_tree(sdk, "/drop")) == {
            "/drop/from-server.txt": sha(b"never comes down"),
            "/drop/sub": None,
            "/drop/sub/invoice.pdf": sha(b"%PDF invoice"),
        }
        assert not (root / "from-server.txt").exists()
        kept = (root / "sub" / "invoice.pdf").exists()
        archived = tmp_path / "Dropline (uploaded)" / "sub" / "invoice.pdf"
        assert kept == (after is AfterUpload.KEEP)
        assert archived.exists() == (after is AfterUpload.ARCHIVE)
        if after is AfterUpload.ARCHIVE:
            assert archived.read_bytes() == b"%PDF invoice"
        # What left the drop folder locally stays on the server.
        assert await remote_entry(sdk, "/drop/sub/invoice.pdf") is not None
        assert engine.counters().files_downloaded == 0


@pytest.mark.parametrize("edits", list(LocalEdits))
async def test_download_only_never_uploads_a_local_edit(
    tmp_path: Path, root: Path, sdk: DroplineClient, start_engine: StartEngine, edits: LocalEdits
) -> None:
    spec = FolderSpec(root, "/", FolderMode.DOWNLOAD_ONLY, local_edits=edits)
    async with start_engine(spec) as engine:
        src = tmp_path / "src"
        src.write_bytes(b"official")
        await upload_file(sdk, src, "/rates.csv")
        await eventually(lambda: (root / "rates.csv").exists())
        await settled(engine)
        (root / "rates.csv").write_bytes(b"my local edit")
        (root / "mine.txt").write_bytes(b"only here")
        await eventually(lambda: bool(engine.issues()))
        await settled(engine)
        assert await remote_tree(sdk) == {"/rates.csv": sha(b"official")}
        assert engine.counters().files_uploaded == 0
        others = [p for p in root.iterdir() if is_conflict_copy(p.name)]
        if edits is LocalEdits.RESTORE:
            assert (root / "rates.csv").read_bytes() == b"official"
            assert [p.read_bytes() for p in others] == [b"my local edit"]
        else:
            assert (root / "rates.csv").read_bytes() == b"my local edit"
            assert others == []
            assert [i.kind for i in engine.issues()] == ["local-edit"]
        assert (root / "mine.txt").read_bytes() == b"only here"


async def test_editor_save_by_rename_is_one_upload_of_the_same_file(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    async with start_engine() as engine:
        (root / "notes.txt").write_bytes(b"v1")
        await settled(engine)
        before = await remote_entry(sdk, "/notes.txt")
        assert before is not None and engine.counters().files_uploaded == 1
        # vim: keep a backup, write the new file, drop the backup.
        os.rename(root / "notes.txt", root / "notes.txt~")
        (root / "notes.txt").write_bytes(b"v2 from vim")
        (root / "notes.txt~").unlink()
        # gedit/LibreOffice: write a temporary file, then rename it over the original.
        (root / ".goutputstream-ABC123").write_bytes(b"v3 from gedit")
        os.rename(root / ".goutputstream-ABC123", root / "notes.txt")
        await settled(engine)
        after = await remote_entry(sdk, "/notes.txt")
        assert after is not None and after.sha256 == sha(b"v3 from gedit")
        assert after.id == before.id
        assert engine.counters().files_uploaded == 2
        assert await remote_tree(sdk) == {"/notes.txt": sha(b"v3 from gedit")}


async def test_names_the_server_refuses_become_issues_and_the_rest_syncs(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    hostile = ["back\\slash.txt", "line\nbreak.txt", "bell\x07.txt"]
    for name in hostile:
        (root / name).write_bytes(b"x")
    fd = os.open(os.fsencode(root) + b"/latin1-\xe9.txt", os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    (root / "fine.txt").write_bytes(b"ok")
    async with start_engine() as engine:
        await eventually(lambda: len(engine.issues()) == 4)
        await settled(engine)
        assert await remote_tree(sdk) == {"/fine.txt": sha(b"ok")}
        issues = engine.issues()
        assert {i.kind for i in issues} == {"invalid-name"}
        assert {i.path for i in issues} >= set(hostile)
        assert all(i.hint for i in issues)
        assert engine.status().state is State.IDLE


async def test_mass_delete_pauses_and_can_be_undone_or_confirmed(
    root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    for i in range(20):
        (root / f"f{i:02d}.txt").write_bytes(b"data %d" % i)
    async with start_engine() as engine:
        await settled(engine)
        assert len(await remote_tree(sdk)) == 20
        for i in range(15):
            (root / f"f{i:02d}.txt").unlink()
        await eventually(lambda: engine.status().folders[0].state is State.PAUSED)
        [issue] = engine.issues()
        assert issue.kind == "mass-delete" and "15 of 20" in issue.message
        assert len(await remote_tree(sdk)) == 20  # nothing deleted on the server
        engine.dismiss_issue(issue.id)  # bring them back
        await eventually(lambda: len(local_tree(root)) == 20)
        await settled(engine)
        assert (root / "f03.txt").read_bytes() == b"data 3"

        for i in range(15):
            (root / f"f{i:02d}.txt").unlink()
        await eventually(lambda: bool(engine.issues()))
        engine.retry_issue(engine.issues()[0].id)  # yes, delete them
        await settled(engine)
        assert len(await remote_tree(sdk)) == 5
        assert engine.issues() == []


async def test_restart_over_an_unchanged_tree_reads_no_file(
    root: Path, start_engine: StartEngine
) -> None:
    for d in range(5):
        (root / f"d{d}").mkdir()
        for i in range(20):
            (root / f"d{d}" / f"{i}.bin").write_bytes(os.urandom(2048))
    async with start_engine() as engine:
        await settled(engine)
        assert engine.counters().files_uploaded == 100
        assert engine.counters().bytes_hashed == 100 * 2048
    async with start_engine() as engine:
        await settled(engine)
        counters = engine.counters()
        assert counters.bytes_hashed == 0
        assert counters.files_uploaded == 0 and counters.files_downloaded == 0
        (root / "d0" / "0.bin").write_bytes(b"changed")
        await settled(engine)
        assert engine.counters().bytes_hashed == len(b"changed")


@pytest.mark.parametrize("feed_lags", [False, True])
async def test_local_delete_never_removes_a_file_changed_on_the_server(
    tmp_path: Path,
    root: Path,
    sdk: DroplineClient,
    start_engine: StartEngine,
    monkeypatch: pytest.MonkeyPatch,
    feed_lags: bool,
) -> None:
    async with start_engine() as engine:
        (root / "budget.xlsx").write_bytes(b"v1")
        await settled(engine)
        entry = await remote_entry(sdk, "/budget.xlsx")
        assert entry is not None
        if feed_lags:
            # The feed has not told us yet: the delete goes out with the old rev, the
            # server refuses it (412), and the engine looks again.
            async def lagging(*_args: object) -> None:
                return None

            monkeypatch.setattr(RemoteFeed, "_apply", lagging)
        engine.pause()
        (root / "budget.xlsx").unlink()
        src = tmp_path / "v2"
        src.write_bytes(b"v2 from a colleague")
        await upload_file(sdk, src, "/budget.xlsx", if_rev=entry.rev)
        engine.resume()
        await eventually(lambda: (root / "budget.xlsx").exists())
        await settled(engine)
        assert (root / "budget.xlsx").read_bytes() == b"v2 from a colleague"
        assert await remote_tree(sdk) == {"/budget.xlsx": sha(b"v2 from a colleague")}


async def test_folder_missing_at_start_waits_quietly_and_syncs_once_it_appears(
    start_engine: StartEngine, root: Path, sdk: DroplineClient
) -> None:
    root.rmdir()
    async with start_engine() as engine:
        await eventually(lambda: any(i.kind == "folder-missing" for i in engine.issues()))
        cpu = time.process_time()
        await asyncio.sleep(2.0)
        # A loop that does not wait burns the whole interval; a waiting one almost nothing.
        assert time.process_time() - cpu < 0.5
        root.mkdir()
        (root / "late.txt").write_bytes(b"the folder came back")
        await eventually(lambda: remote_entry(sdk, "/late.txt"), timeout=20)
        await eventually(lambda: not any(i.kind == "folder-missing" for i in engine.issues()))
