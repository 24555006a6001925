"""Wire models parsed strictly from JSON; tus metadata encoding."""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any

import pytest

from dropline.sdk.errors import ProtocolError
from dropline.sdk.models import ChangeAction, ChangePage, Entry, EntryPage, EntryType
from dropline.sdk.wire import decode_upload_metadata, encode_upload_metadata

ENTRY: dict[str, Any] = {
    "id": "2b0c6a5e-0000-4000-8000-000000000001",
    "name": "q3.pdf",
    "path": "/reports/q3.pdf",
    "type": "file",
    "size": 48213,
    "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "rev": "a41f09c2e8b1d3f0",
    "mtime": 1764143520.25,
    "parent_id": "77d1aaaa-0000-4000-8000-000000000002",
}


def test_entry_parses_the_documented_example() -> None:
    entry = Entry.from_json(ENTRY)
    assert entry.type is EntryType.FILE and not entry.is_folder
    assert entry.size == 48213 and entry.mtime == 1764143520.25
    with pytest.raises(FrozenInstanceError):
        entry.name = "other"  # type: ignore[misc]


def test_folder_entry_with_nulls() -> None:
    folder = Entry.from_json(
        {**ENTRY, "type": "folder", "size": 0, "sha256": None, "parent_id": None, "mtime": 5}
    )
    assert folder.is_folder and folder.sha256 is None and folder.parent_id is None
    assert folder.mtime == 5.0 and isinstance(folder.mtime, float)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"size": "12"}, "Entry.size has the wrong type (str)"),
        ({"size": True}, "Entry.size has the wrong type (bool)"),
        ({"type": "symlink"}, "Entry.type is 'symlink'"),
        ({"rev": None}, "Entry.rev has the wrong type"),
    ],
)
def test_malformed_entry_names_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ProtocolError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Entry.from_json({**ENTRY, **change})


def test_missing_field_is_named() -> None:
    doc = dict(ENTRY)
    del doc["rev"]
    with pytest.raises(ProtocolError, match="missing the field 'rev'"):
        Entry.from_json(doc)
    with pytest.raises(ProtocolError, match="not a JSON object"):
        Entry.from_json(["not", "an", "object"])


def test_change_page_parses_changes_in_order() -> None:
    page = ChangePage.from_json(
        {
            "changes": [
                {"seq": 1, "action": "created", "old_path": None, "entry": ENTRY},
                {"seq": 2, "action": "moved", "old_path": "/was.pdf", "entry": ENTRY},
            ],
            "cursor": "c2",
            "has_more": False,
        }
    )
    assert [c.seq for c in page.changes] == [1, 2]
    assert page.changes[1].action is ChangeAction.MOVED
    assert page.changes[1].old_path == "/was.pdf"
    assert page.cursor == "c2" and page.has_more is False


def test_unknown_change_action_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolError, match=r"Change\.action"):
        ChangePage.from_json(
            {
                "changes": [{"seq": 1, "action": "exploded", "old_path": None, "entry": ENTRY}],
                "cursor": "c",
                "has_more": False,
            }
        )


def test_entry_page() -> None:
    page = EntryPage.from_json({"entries": [ENTRY], "next_cursor": None})
    assert page.entries[0].name == "q3.pdf" and page.next_cursor is None


def test_upload_metadata_is_base64_pairs() -> None:
    encoded = encode_upload_metadata({"path": "/ä b,c.txt", "if_rev": "none"})
    assert encoded == "path L8OkIGIsYy50eHQ=,if_rev bm9uZQ=="
    assert decode_upload_metadata(encoded) == {"path": "/ä b,c.txt", "if_rev": "none"}
    assert decode_upload_metadata("path !!!,sha256 YWJj, ,flag") == {"sha256": "abc", "flag": ""}
