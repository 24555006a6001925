"""A journal damaged while the engine was stopped: at the next start it is set aside, and
each folder is rebuilt from the server's listing and the disk. Every path is in an
unknown state, so nothing is deleted on either side, what only one side has is copied
to the other, what differs becomes a conflict copy, and what agrees is not sent again."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dropline.sdk.client import DroplineClient
from dropline.sdk.resumable import upload_file
from dropline.sync.conflicts import is_conflict_copy
from dropline.sync.journal import FILE_NAME
from dropline.sync.types import AfterUpload, FolderMode, FolderSpec, HistoryQuery, Result
from tests.sync.engine_helpers import (
    StartEngine,
    local_tree,
    remote_entry,
    remote_tree,
    settled,
    sha,
)

pytestmark = pytest.mark.anyio


def damage_journal(home: Path) -> None:
    """Everything after the journal's first page overwritten, as a failing disk might."""
    path = home / FILE_NAME
    assert not Path(f"{path}-wal").exists()  # the engine stopped cleanly: all in the file
    data = path.read_bytes()
    path.write_bytes(data[:4096] + os.urandom(len(data) - 4096))


def damaged_copies(home: Path) -> list[Path]:
    return sorted(home.glob("journal-damaged-*.sqlite3"))


async def test_a_damaged_journal_is_rebuilt_from_both_sides_without_deleting_anything(
    tmp_path: Path, root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    (root / "keep").mkdir()
    for name, data in {
        "keep/a.txt": b"alpha",
        "keep/b.txt": b"bravo",
        "report.docx": b"report as both sides had it",
        "deleted here.txt": b"deleted here while the journal was broken",
        "deleted there.txt": b"deleted on the server meanwhile",
    }.items():
        (root / name).write_bytes(data)
    async with start_engine() as engine:
        await settled(engine)
    before = await remote_tree(sdk)
    unchanged = {p: await remote_entry(sdk, p) for p in ("/keep/a.txt", "/keep/b.txt")}

    # While the engine was stopped, both sides moved on, and the journal was damaged.
    (root / "deleted here.txt").unlink()
    gone = await remote_entry(sdk, "/deleted there.txt")
    assert gone is not None
    await sdk.delete(gone.id)
    (root / "report.docx").write_bytes(b"report edited here")
    (root / "new here.txt").write_bytes(b"made here")
    theirs = tmp_path / "theirs.txt"
    theirs.write_bytes(b"made on the server")
    await upload_file(sdk, theirs, "/new there.txt")
    home = tmp_path / "home"
    damage_journal(home)

    async with start_engine() as engine:
        await settled(engine, timeout=60)
        counters = engine.counters()
        issues = engine.issues()
        refused = engine.history(HistoryQuery(result=Result.FAILED))

    [aside] = damaged_copies(home)
    kinds = sorted(i.kind for i in issues)
    assert kinds == ["conflict", "journal-rebuilt"], kinds
    [notice] = [i for i in issues if i.kind == "journal-rebuilt"]
    assert str(aside) in notice.hint and "Nothing was deleted" in notice.message

    server = await remote_tree(sdk)
    copies = [p for p in server if is_conflict_copy(p)]
    assert len(copies) == 1 and copies[0].startswith("/report (conflicted copy testhost ")
    assert server == {
        "/keep": None,
        "/keep/a.txt": sha(b"alpha"),
        "/keep/b.txt": sha(b"bravo"),
        "/report.docx": before["/report.docx"],  # the server's version stays the file...
        copies[0]: sha(b"report edited here"),  # ...and the local edit is kept beside it
        "/deleted here.txt": before["/deleted here.txt"],  # not deleted on the server
        "/deleted there.txt": before["/deleted there.txt"],  # nor here: it went up again
        "/new here.txt": sha(b"made here"),
        "/new there.txt": sha(b"made on the server"),
    }
    assert local_tree(root) == server
    # What both sides agreed on was compared, not sent again.
    for path, entry in unchanged.items():
        now = await remote_entry(sdk, path)
        assert entry is not None and now is not None and now.rev == entry.rev
    assert counters.files_uploaded == 3  # deleted there, the conflict copy, new here
    assert counters.files_downloaded == 3  # deleted here, the server's report, new there
    assert refused == []  # no upload tried blindly and refused by the server


async def test_a_drop_folder_with_a_damaged_journal_sends_only_what_the_server_lacks(
    tmp_path: Path, root: Path, sdk: DroplineClient, start_engine: StartEngine
) -> None:
    spec = FolderSpec(root, "/drop", FolderMode.UPLOAD_ONLY, after_upload=AfterUpload.KEEP)
    for i in range(5):
        (root / f"invoice-{i}.pdf").write_bytes(f"%PDF invoice {i}".encode())
    async with start_engine(spec) as engine:
        await settled(engine)
    revs = {p: e.rev for p in await remote_tree(sdk, "/drop") if (e := await remote_entry(sdk, p))}
    (root / "invoice-5.pdf").write_bytes(b"%PDF invoice 5")
    damage_journal(tmp_path / "home")

    async with start_engine(spec) as engine:
        await settled(engine, timeout=60)
        counters = engine.counters()
        kinds = [i.kind for i in engine.issues()]
        refused = engine.history(HistoryQuery(result=Result.FAILED))

    assert kinds == ["journal-rebuilt"]
    assert counters.files_uploaded == 1 and counters.bytes_uploaded == len(b"%PDF invoice 5")
    assert refused == []  # the five it had were recognised, not offered again
    server = await remote_tree(sdk, "/drop")
    assert sorted(server) == [f"/drop/invoice-{i}.pdf" for i in range(6)]
    for path, rev in revs.items():
        entry = await remote_entry(sdk, path)
        assert entry is not None and entry.rev == rev  # not a new revision of any of them
