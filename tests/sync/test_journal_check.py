"""The journal's integrity check at open: a damaged journal (not a database at all, or
with broken pages) is set aside under a dated name, with its companion files, and a new
one starts; a sound or merely busy journal is left exactly where it is."""

from __future__ import annotations

import os
import re
import sqlite3
from pathlib import Path

import pytest

from dropline.sync.journal import FILE_NAME, Journal
from dropline.sync.journal_check import is_damage, open_sound, set_aside
from dropline.sync.records import Base

DAMAGED_NAME = re.compile(r"^journal-damaged-\d{4}-\d{2}-\d{2}-\d{6}(-\d+)?\.sqlite3$")


def filled_journal(home: Path, files: int = 3000) -> None:
    journal = Journal(home)
    fid = journal.folder_id("/home/a/Dropline", "/")
    with journal.transaction():
        for i in range(files):
            base = Base(False, i, i, i, "ab" * 32, f"id-{i}", "rev-1")
            journal.put_base(fid, f"dir{i % 30}/file{i}.txt", base)
    journal.close()


def damaged_copies(home: Path) -> list[str]:
    return sorted(p.name for p in home.iterdir() if p.name.startswith("journal-damaged-"))


def test_a_sound_journal_is_opened_as_it_is(tmp_path: Path) -> None:
    filled_journal(tmp_path)
    journal = Journal(tmp_path)
    try:
        assert journal.damaged is None
        assert journal.count_files(journal.folder_id("/home/a/Dropline", "/")) == 3000
    finally:
        journal.close()
    assert damaged_copies(tmp_path) == []


def test_a_journal_sqlite_cannot_open_is_set_aside_and_a_new_one_started(tmp_path: Path) -> None:
    garbage = b"this was overwritten by some other program\n" * 200
    (tmp_path / FILE_NAME).write_bytes(garbage)
    journal = Journal(tmp_path)
    try:
        assert journal.damaged is not None
        assert DAMAGED_NAME.match(journal.damaged.name), journal.damaged.name
        assert journal.damaged.read_bytes() == garbage  # kept as it was, for support
        fid = journal.folder_id("/home/a/Dropline", "/")
        assert journal.count_files(fid) == 0  # a new, empty journal that works
        journal.enqueue_local(fid, ["a.txt"])
        assert [i.path for i in journal.pending(fid)] == ["a.txt"]
    finally:
        journal.close()
    assert damaged_copies(tmp_path) == [journal.damaged.name]


def test_a_journal_with_broken_pages_fails_its_check_and_is_set_aside(tmp_path: Path) -> None:
    filled_journal(tmp_path)
    path = tmp_path / FILE_NAME
    data = bytearray(path.read_bytes())
    data[5 * 4096 : 7 * 4096] = os.urandom(2 * 4096)  # two pages of the base table
    path.write_bytes(bytes(data))
    journal = Journal(tmp_path)
    try:
        assert journal.damaged is not None
        assert journal.damaged.read_bytes() == bytes(data)
        assert journal.count_files(journal.folder_id("/home/a/Dropline", "/")) == 0
    finally:
        journal.close()
    # The new journal is sound: opening it again keeps it.
    again = Journal(tmp_path)
    try:
        assert again.damaged is None
    finally:
        again.close()
    assert len(damaged_copies(tmp_path)) == 1


def test_the_write_ahead_log_goes_aside_with_its_journal(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    path.write_bytes(b"not a database")
    wal = tmp_path / f"{FILE_NAME}-wal"
    wal.write_bytes(b"frames of the damaged journal")
    aside = set_aside(path, now=0.0)
    assert not path.exists() and not wal.exists()
    assert Path(f"{aside}-wal").read_bytes() == b"frames of the damaged journal"
    # A second damaged journal in the same second never replaces the first.
    path.write_bytes(b"damaged again")
    second = set_aside(path, now=0.0)
    assert second != aside and second.read_bytes() == b"damaged again"
    assert aside.read_bytes() == b"not a database"


def test_a_busy_journal_is_not_mistaken_for_damage(tmp_path: Path) -> None:
    Journal(tmp_path).close()
    path = tmp_path / FILE_NAME
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")  # another process holding it

    def impatient(p: Path) -> sqlite3.Connection:
        return sqlite3.connect(p, isolation_level=None, timeout=0)

    try:
        with pytest.raises(sqlite3.OperationalError) as err:
            open_sound(path, impatient)
        assert not is_damage(err.value)
    finally:
        holder.close()
    assert damaged_copies(tmp_path) == []
    assert path.exists()
