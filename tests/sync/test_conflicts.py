"""Conflict-copy names."""

from __future__ import annotations

from datetime import datetime

from dropline.sync.conflicts import conflict_name, conflict_path, host_name, is_conflict_copy

WHEN = datetime(2026, 3, 9, 14, 5, 7)


def test_name_keeps_the_extension_last() -> None:
    assert (
        conflict_name("report.final.pdf", "ws-12", WHEN)
        == "report.final (conflicted copy ws-12 2026-03-09 140507).pdf"
    )


def test_names_without_extension_and_dotfiles() -> None:
    assert conflict_name("Makefile", "h", WHEN) == "Makefile (conflicted copy h 2026-03-09 140507)"
    assert conflict_name(".bashrc", "h", WHEN) == ".bashrc (conflicted copy h 2026-03-09 140507)"


def test_taken_name_gets_a_number_and_stays_in_its_folder() -> None:
    first = "a/b (conflicted copy h 2026-03-09 140507).txt"
    got = conflict_path("a/b.txt", "h", WHEN, lambda p: p == first)
    assert got == "a/b (conflicted copy h 2026-03-09 140507) 2.txt"


def test_conflict_copies_are_recognised() -> None:
    assert is_conflict_copy(conflict_name("x.txt", "h", WHEN))
    assert is_conflict_copy(conflict_name("x", "h", WHEN, 3))
    assert not is_conflict_copy("x (copy).txt")


def test_host_name_is_safe_in_a_file_name() -> None:
    assert host_name("a/b:c(d)") == "a-b-c-d-"
    assert "/" not in host_name()
