from __future__ import annotations

import unicodedata

import pytest

from dropline.server.files.names import (
    ancestors,
    join_path,
    normalize_name,
    normalize_path,
    split_path,
)
from dropline.server.problems import Problem

# Names the server must refuse; the API tests send the same list over HTTP.
HOSTILE_NAMES = [
    "",
    ".",
    "..",
    "a/b",
    "a\\b",
    "nul\x00byte",
    "tab\there",
    "new\nline",
    "bell\x07",
    "del\x7f",
    "c1\x85control",
    "x" * 256,
    "é" * 128,  # 256 bytes in UTF-8
    "lone\ud800surrogate",
]

HOSTILE_PATHS = [
    "relative/path.txt",
    "/a/../b.txt",
    "/../etc/passwd",
    "/a/./b.txt",
    "//double.txt",
    "/a//b.txt",
    "/a\\..\\b.txt",
    "/nul\x00.txt",
    "/" + "x" * 256,
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_name_is_invalid_name(name: str) -> None:
    with pytest.raises(Problem) as info:
        normalize_name(name)
    assert info.value.slug == "invalid-name"
    assert info.value.status == 400


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_hostile_path_is_invalid_name(path: str) -> None:
    with pytest.raises(Problem) as info:
        normalize_path(path)
    assert info.value.slug == "invalid-name"


def test_names_are_nfc_normalised() -> None:
    decomposed = unicodedata.normalize("NFD", "café.txt")
    assert decomposed != "café.txt"
    assert normalize_name(decomposed) == "café.txt"
    assert normalize_path("/Résumé/" + decomposed) == "/Résumé/café.txt"


def test_longest_allowed_name_passes() -> None:
    assert normalize_name("x" * 255) == "x" * 255


def test_trailing_slash_is_an_empty_name_and_root_needs_permission() -> None:
    with pytest.raises(Problem):
        normalize_path("/a/b/")
    assert normalize_path("/", allow_root=True) == "/"
    with pytest.raises(Problem):
        normalize_path("/")


def test_path_helpers() -> None:
    assert split_path("/a/b.txt") == ("/a", "b.txt")
    assert split_path("/b.txt") == ("/", "b.txt")
    assert join_path("/", "b.txt") == "/b.txt"
    assert join_path("/a", "b.txt") == "/a/b.txt"
    assert ancestors("/a/b/c.txt") == ["/a", "/a/b"]
    assert ancestors("/c.txt") == []
