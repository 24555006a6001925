"""A queued path can have two rows (a local change and the server's state); the item a
round takes is made of both, and once done with it neither row may stay behind."""

from __future__ import annotations

import time
from pathlib import Path

from dropline.sync.journal import Journal
from dropline.sync.records import Remote


def test_done_with_a_merged_item_leaves_neither_of_its_rows(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    try:
        folder = journal.folder_id(str(tmp_path / "Dropline"), "/")
        journal.enqueue_local(folder, ["a.txt"])
        time.sleep(0.01)  # the server's state arrives after the local change was queued
        journal.enqueue_remote(folder, [("a.txt", Remote("id-1", False, 3, "ab" * 32, "rev1"))])
        (item,) = journal.pending(folder)
        assert item.local and item.remote_known and item.remote is not None

        journal.dequeue(folder, item)

        assert journal.pending(folder) == []
        assert journal.pending_count(folder) == 0
    finally:
        journal.close()


def test_a_row_queued_after_the_item_was_taken_stays(tmp_path: Path) -> None:
    journal = Journal(tmp_path)
    try:
        folder = journal.folder_id(str(tmp_path / "Dropline"), "/")
        journal.enqueue_local(folder, ["a.txt"])
        (item,) = journal.pending(folder)
        time.sleep(0.01)
        journal.enqueue_remote(folder, [("a.txt", Remote("id-1", False, 3, "ab" * 32, "rev2"))])

        journal.dequeue(folder, item)

        (left,) = journal.pending(folder)
        assert left.remote_known and not left.local and left.remote is not None
        assert left.remote.rev == "rev2"
    finally:
        journal.close()
