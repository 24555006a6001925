"""The planner: a pure function of (base, local, remote) to actions."""

from __future__ import annotations

from datetime import datetime

import pytest

from dropline.sync import planner
from dropline.sync.planner import plan
from dropline.sync.records import (
    NONE_REV,
    Base,
    ConflictCopy,
    DeleteLocal,
    DeleteRemote,
    Download,
    Local,
    MkdirLocal,
    MkdirRemote,
    MoveLocal,
    MoveRemote,
    PathState,
    RecordBase,
    Remote,
    Upload,
)
from dropline.sync.types import FolderMode, LocalEdits

NOW = datetime(2026, 1, 2, 3, 4, 5)


def base(
    sha: str = "aa", rev: str = "r1", inode: int = 7, rid: str = "id1", d: bool = False
) -> Base:
    return Base(d, 0 if d else 10, 100, inode, None if d else sha, rid, rev)


def local(sha: str = "aa", inode: int = 7, mtime: int = 100, d: bool = False) -> Local:
    return Local(d, 0 if d else 10, mtime, inode, None if d else sha)


def remote(sha: str = "aa", rev: str = "r1", rid: str = "id1", d: bool = False) -> Remote:
    return Remote(rid, d, 0 if d else 10, None if d else sha, rev, 1.0)


def one(state: PathState, **kw: object) -> list[object]:
    return list(plan([state], now=NOW, host="h", **kw).actions)  # type: ignore[arg-type]


def test_nothing_changed_is_nothing() -> None:
    assert one(PathState("a", base(), local(), remote())) == []


def test_touched_file_with_same_content_only_updates_the_base() -> None:
    actions = one(PathState("a", base(), local(mtime=200), remote()))
    assert actions == [RecordBase("a", Base(False, 10, 200, 7, "aa", "id1", "r1"))]


def test_new_local_file_is_uploaded_only_if_nothing_is_there() -> None:
    assert one(PathState("a", None, local(), None)) == [Upload("a", local(), NONE_REV)]


def test_local_edit_is_uploaded_against_the_base_rev() -> None:
    new = local(sha="bb", mtime=200)
    assert one(PathState("a", base(), new, remote())) == [Upload("a", new, "r1")]


def test_local_delete_carries_the_base_rev() -> None:
    assert one(PathState("a", base(), None, remote())) == [DeleteRemote("a", base())]


def test_remote_edit_is_downloaded_over_the_unchanged_local_file() -> None:
    r = remote(sha="bb", rev="r2")
    assert one(PathState("a", base(), local(), r)) == [Download("a", r, local())]


def test_remote_delete_removes_the_unchanged_local_file() -> None:
    assert one(PathState("a", base(), local(), None)) == [DeleteLocal("a", local())]


def test_remote_folder_is_made_locally() -> None:
    r = remote(d=True)
    assert one(PathState("d", None, None, r)) == [MkdirLocal("d", r)]


def test_local_folder_is_made_remotely() -> None:
    loc = local(d=True)
    assert one(PathState("d", None, loc, None)) == [MkdirRemote("d", loc)]


def test_two_sided_edit_makes_a_conflict_copy_and_reports_it() -> None:
    loc = local(sha="cc", mtime=300)
    p = plan([PathState("doc.txt", base(), loc, remote(sha="bb", rev="r2"))], now=NOW, host="h")
    copy = "doc (conflicted copy h 2026-01-02 030405).txt"
    assert p.actions == [ConflictCopy("doc.txt", copy, loc)]
    assert [(x.kind, x.related) for x in p.problems] == [("conflict", ("doc.txt", copy))]


def test_two_sided_edit_to_the_same_content_is_adopted() -> None:
    loc = local(sha="bb", mtime=300)
    r = remote(sha="bb", rev="r2")
    assert one(PathState("a", base(), loc, r)) == [RecordBase("a", planner.base_of(loc, r))]


def test_local_delete_against_remote_edit_brings_the_edit_back() -> None:
    r = remote(sha="bb", rev="r2")
    assert one(PathState("a", base(), None, r)) == [Download("a", r, None)]


def test_local_edit_against_remote_delete_uploads_as_new() -> None:
    loc = local(sha="bb", mtime=300)
    assert one(PathState("a", base(), loc, None)) == [Upload("a", loc, NONE_REV)]


def test_rename_is_detected_by_inode_and_sent_as_a_move() -> None:
    states = [
        PathState("old.txt", base(), None, remote()),
        PathState("new.txt", None, local(mtime=100), None),
    ]
    p = plan(states, now=NOW)
    assert p.actions == [MoveRemote("old.txt", "new.txt", base(), local())]


def test_copy_then_delete_is_detected_by_hash() -> None:
    states = [
        PathState("old.txt", base(), None, remote()),
        PathState("new.txt", None, local(inode=99), None),
    ]
    assert plan(states, now=NOW).actions == [
        MoveRemote("old.txt", "new.txt", base(), local(inode=99))
    ]


def test_folder_rename_is_one_move_and_its_children_wait() -> None:
    states = [
        PathState("A", base(d=True, inode=5, rid="dA"), None, remote(d=True, rid="dA")),
        PathState("A/x", base(inode=6, rid="x"), None, remote(rid="x")),
        PathState("B", None, local(d=True, inode=5), None),
        PathState("B/x", None, local(inode=6), None),
    ]
    p = plan(states, now=NOW)
    assert p.actions == [
        MoveRemote("A", "B", base(d=True, inode=5, rid="dA"), local(d=True, inode=5))
    ]
    assert sorted(p.deferred) == ["A/x", "B/x"]


def test_remote_move_is_a_local_rename() -> None:
    moved = remote(rev="r2")
    states = [
        PathState("old.txt", base(), local(), None),
        PathState("new.txt", None, None, moved),
    ]
    assert plan(states, now=NOW).actions == [MoveLocal("old.txt", "new.txt", local(), moved)]


def test_mass_delete_pauses_instead_of_deleting() -> None:
    states = [
        PathState(f"f{i}", base(inode=i, rid=str(i)), None, remote(rid=str(i))) for i in range(12)
    ]
    p = plan(states, now=NOW, total_files=20)
    assert p.mass_delete is not None and p.mass_delete.kind == "mass-delete"
    assert not any(isinstance(a, DeleteRemote) for a in p.actions)
    confirmed = plan(states, now=NOW, total_files=20, allow_mass_delete=True)
    assert confirmed.mass_delete is None
    assert len(confirmed.actions) == 12


def test_deleting_a_few_files_is_not_a_mass_delete() -> None:
    states = [
        PathState(f"f{i}", base(inode=i, rid=str(i)), None, remote(rid=str(i))) for i in range(12)
    ]
    assert plan(states, now=NOW, total_files=100).mass_delete is None


def test_remote_mass_delete_is_guarded_too() -> None:
    states = [
        PathState(f"f{i}", base(inode=i, rid=str(i)), local(inode=i), None) for i in range(12)
    ]
    p = plan(states, now=NOW, total_files=12)
    assert p.mass_delete is not None and p.actions == []


def test_vanished_root_pauses_the_folder() -> None:
    p = plan([PathState("a", base(), None, remote())], now=NOW, root_missing=True)
    assert p.mass_delete is not None and p.mass_delete.kind == "folder-missing"
    assert p.actions == []


@pytest.mark.parametrize("name", ["bad\\name.txt", "tab\there", "x" * 256, "bad\udcff.txt"])
def test_names_the_server_cannot_take_become_problems(name: str) -> None:
    p = plan([PathState(name, None, local(), None)], now=NOW)
    assert p.actions == []
    assert [x.kind for x in p.problems] == ["invalid-name"]


def test_problem_messages_show_names_as_typed() -> None:
    p = plan(
        [
            PathState("Q4 plan\\draft.docx", None, local(), None),
            PathState("a\x01b", None, local(), None),
        ],
        now=NOW,
    )
    messages = {x.path: x.message for x in p.problems}
    # One backslash, as typed; a control character spelled out rather than printed.
    assert messages["Q4 plan\\draft.docx"].startswith("The name \u201cQ4 plan\\draft.docx\u201d ")
    assert messages["a\x01b"].startswith("The name \u201ca\\x01b\u201d ")


def test_children_of_an_invalid_folder_are_skipped_with_it() -> None:
    states = [
        PathState("a\\b", None, local(d=True), None),
        PathState("a\\b/c", None, local(), None),
    ]
    p = plan(states, now=NOW)
    assert p.actions == [] and len(p.problems) == 1


def test_unicode_normalisation_clash_is_reported_not_uploaded() -> None:
    nfd = "cafe\u0301.txt"
    states = [
        PathState(nfd, None, local(), None),
        PathState("caf\u00e9.txt", None, local(inode=8), None),
    ]
    p = plan(states, now=NOW)
    assert [x.kind for x in p.problems] == ["name-clash"]
    assert [a.path for a in p.actions if isinstance(a, Upload)] == ["caf\u00e9.txt"]


def test_case_only_clash_on_a_case_insensitive_disk() -> None:
    states = [
        PathState("Readme.md", base(), local(), remote()),
        PathState("README.md", None, None, remote(rid="id2")),
    ]
    p = plan(states, now=NOW, case_sensitive=False)
    assert [x.kind for x in p.problems] == ["case-clash"]
    assert p.actions == []
    assert len(plan(states, now=NOW, case_sensitive=True).actions) == 1


def test_upload_only_never_deletes_or_downloads() -> None:
    mode = FolderMode.UPLOAD_ONLY
    assert one(PathState("a", base(), None, remote()), mode=mode) == [RecordBase("a", None)]
    assert one(PathState("a", base(), local(), remote(sha="bb", rev="r9")), mode=mode) == []
    assert one(PathState("n", None, local(), None), mode=mode) == [Upload("n", local(), NONE_REV)]


def test_upload_only_uploads_beside_a_different_server_file() -> None:
    p = plan(
        [PathState("a.txt", None, local(), remote(sha="zz"))],
        mode=FolderMode.UPLOAD_ONLY,
        now=NOW,
        host="h",
    )
    assert isinstance(p.actions[0], ConflictCopy)


def test_download_only_restores_a_local_edit_and_keeps_it_aside() -> None:
    loc = local(sha="cc", mtime=300)
    p = plan([PathState("a.txt", base(), loc, remote())], mode=FolderMode.DOWNLOAD_ONLY, now=NOW)
    assert isinstance(p.actions[0], ConflictCopy)


def test_download_only_reports_a_local_edit_when_configured() -> None:
    loc = local(sha="cc", mtime=300)
    p = plan(
        [PathState("a.txt", base(), loc, remote())],
        mode=FolderMode.DOWNLOAD_ONLY,
        local_edits=LocalEdits.REPORT,
        now=NOW,
    )
    assert p.actions == [] and [x.kind for x in p.problems] == ["local-edit"]


def test_download_only_restores_a_local_delete() -> None:
    p = plan([PathState("a", base(), None, remote())], mode=FolderMode.DOWNLOAD_ONLY, now=NOW)
    assert p.actions == [Download("a", remote(), None)]


def test_download_only_never_uploads_new_local_files() -> None:
    assert one(PathState("n", None, local(), None), mode=FolderMode.DOWNLOAD_ONLY) == []


def test_actions_come_in_a_safe_order() -> None:
    states = [
        PathState("gone", base(d=True, rid="g"), None, remote(d=True, rid="g")),
        PathState("kept/f", base(inode=3, rid="kf", sha="x1"), None, remote(rid="kf", sha="x1")),
        PathState("new", None, local(d=True, inode=40), None),
        PathState("new/f", None, local(inode=41, sha="x2"), None),
    ]
    kinds = [type(a).__name__ for a in plan(states, now=NOW, total_files=100).actions]
    assert kinds == ["MkdirRemote", "Upload", "DeleteRemote", "DeleteRemote"]
    deletes = [
        a for a in plan(states, now=NOW, total_files=100).actions if isinstance(a, DeleteRemote)
    ]
    assert [d.path for d in deletes] == ["kept/f", "gone"]


def test_a_folder_deleted_here_goes_to_the_server_as_one_delete() -> None:
    """So the server's trash holds it as one item, which comes back whole."""
    states = [
        PathState("gone", base(d=True, rid="g"), None, remote(d=True, rid="g")),
        PathState("gone/f", base(inode=3, rid="gf", sha="x1"), None, remote(rid="gf", sha="x1")),
        PathState("gone/sub", base(d=True, inode=4, rid="gs"), None, remote(d=True, rid="gs")),
        PathState("gone/sub/g", base(inode=5, rid="gg"), None, remote(rid="gg")),
        PathState("gone-too.txt", base(inode=6, rid="gt"), None, remote(rid="gt")),
    ]
    deletes = plan(states, now=NOW, total_files=100).actions
    assert all(isinstance(a, DeleteRemote) for a in deletes)
    assert [a.path for a in deletes if isinstance(a, DeleteRemote)] == ["gone-too.txt", "gone"]
    # A file in it that changed on the server comes down instead: nothing is collapsed.
    edited = [
        *states[:3],
        PathState("gone/sub/g", base(inode=5, rid="gg"), None, remote("bb", "r2", "gg")),
    ]
    actions = plan(edited, now=NOW, total_files=100).actions
    assert [a.path for a in actions if isinstance(a, Download)] == ["gone/sub/g"]
    assert "gone/f" in [a.path for a in actions if isinstance(a, DeleteRemote)]
