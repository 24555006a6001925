"""The undo operations' pure parts: a local path to its sync folder and server path, a trash
item back to its local path, the name of an opened earlier version, and the server's
problems as control errors."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from dropline.agent.config import FolderConfig
from dropline.agent.control import protocol as p
from dropline.agent.undo import _outermost, control_error, copy_name, locate, owner_of
from dropline.sdk.errors import (
    AuthenticationError,
    CircuitOpenError,
    ConflictError,
    DroplineError,
    InvalidNameError,
    NotFoundError,
    PolicyDenied,
    PreconditionFailedError,
    ServerError,
    UnavailableError,
)


@pytest.fixture
def folders(tmp_path: Path) -> list[FolderConfig]:
    (tmp_path / "Dropline").mkdir()
    (tmp_path / "Team").mkdir()
    return [
        FolderConfig(local=tmp_path / "Dropline", remote="/"),
        FolderConfig(local=tmp_path / "Team", remote="/shared/team"),
    ]


def test_a_local_path_maps_to_its_folder_and_server_path(
    folders: list[FolderConfig], tmp_path: Path
) -> None:
    at = locate(folders, f"{tmp_path}/Team/q3/report.pdf")
    assert at.folder is folders[1]
    assert (at.rel, at.remote) == ("q3/report.pdf", "/shared/team/q3/report.pdf")
    assert at.local == tmp_path / "Team" / "q3" / "report.pdf"
    top = locate(folders, f"{tmp_path}/Dropline/a.txt")
    assert (top.folder, top.remote) == (folders[0], "/a.txt")
    root = locate(folders, f"{tmp_path}/Team/")
    assert (root.rel, root.remote) == ("", "/shared/team")
    # "..", doubled slashes and a path that does not exist (a deleted file) all resolve.
    assert locate(folders, f"{tmp_path}/Team/x/../y//z.txt").remote == "/shared/team/y/z.txt"


def test_a_name_in_decomposed_unicode_reaches_the_server_composed(
    folders: list[FolderConfig], tmp_path: Path
) -> None:
    at = locate(folders, f"{tmp_path}/Dropline/Cafe\u0301.txt")
    assert at.remote == "/Caf\u00e9.txt"


def test_a_path_through_a_symbolic_link_finds_the_folder(
    folders: list[FolderConfig], tmp_path: Path
) -> None:
    (tmp_path / "link").symlink_to(tmp_path / "Team")
    at = locate(folders, f"{tmp_path}/link/notes.txt")
    assert at.folder is folders[1] and at.remote == "/shared/team/notes.txt"


@pytest.mark.parametrize("path", ["relative/a.txt", "/elsewhere/a.txt", "{tmp}/Dropline2/a.txt"])
def test_a_path_outside_every_folder_is_invalid(
    folders: list[FolderConfig], tmp_path: Path, path: str
) -> None:
    with pytest.raises(p.ControlError) as caught:
        locate(folders, path.format(tmp=tmp_path))
    assert caught.value.code == p.INVALID and caught.value.details == {"key": "path"}
    assert (
        "not inside a synced folder" in caught.value.message or "absolute" in caught.value.message
    )


def test_a_server_path_belongs_to_the_deepest_folder_holding_it(
    folders: list[FolderConfig],
) -> None:
    assert owner_of(folders, "/shared/team/q3/a.pdf") == (folders[1], "q3/a.pdf")
    assert owner_of(folders, "/shared/other.txt") == (folders[0], "shared/other.txt")
    assert owner_of(folders[1:], "/shared/other.txt") is None
    assert owner_of(folders[1:], "/shared/teammates/x") is None


def test_one_trash_listing_covers_the_roots_under_it() -> None:
    assert _outermost({"/", "/shared/team"}) == ["/"]
    assert _outermost({"/a", "/a/b", "/c"}) == ["/a", "/c"]
    assert _outermost({"/ab", "/a"}) == ["/a", "/ab"]


def test_an_opened_version_is_named_for_its_time() -> None:
    when = time.mktime((2026, 3, 14, 9, 30, 59, 0, 0, -1))
    assert copy_name("report.pdf", when) == "report (version 2026-03-14 0930).pdf"
    assert copy_name("archive.tar.gz", when) == "archive.tar (version 2026-03-14 0930).gz"
    assert copy_name(".bashrc", when) == ".bashrc (version 2026-03-14 0930)"
    assert copy_name("README", when) == "README (version 2026-03-14 0930)"


@pytest.mark.parametrize(
    ("error", "code", "words"),
    [
        (NotFoundError("no such revision"), p.NOT_FOUND, "no such revision"),
        (ConflictError("something is already at /x"), p.CONFLICT, "already at /x"),
        (PreconditionFailedError("changed"), p.CONFLICT, "changed"),
        (InvalidNameError("bad name"), p.INVALID, "bad name"),
        (PolicyDenied("blocked"), p.NOT_ALLOWED, "blocked"),
        (AuthenticationError("key revoked"), p.UNAVAILABLE, "not signed in"),
        (UnavailableError("connection refused"), p.UNAVAILABLE, "cannot be reached"),
        (CircuitOpenError("down"), p.UNAVAILABLE, "cannot be reached"),
        (ServerError("oops"), p.UNAVAILABLE, "could not do it: oops"),
    ],
)
def test_server_problems_become_control_errors_with_the_servers_words(
    error: DroplineError, code: str, words: str
) -> None:
    converted = control_error(error)
    assert converted.code == code and words in converted.message
