"""The event aggregator, driven by a fake clock."""

from __future__ import annotations

import pytest

from dropline.sync import aggregator
from dropline.sync.aggregator import Aggregator, Kind


def test_burst_of_creates_becomes_one_batch() -> None:
    agg = Aggregator()
    t = 100.0
    for i in range(10_000):
        agg.add(f"drop/f{i}.txt", Kind.DONE, t + i * 0.00001)
        assert agg.pop(t + i * 0.00001) is None  # still arriving
    end = t + 10_000 * 0.00001
    assert agg.pop(end + aggregator.DEBOUNCE / 2) is None
    batch = agg.pop(end + aggregator.DEBOUNCE)
    assert batch is not None
    assert len(batch.paths) + len(batch.dirs) >= 1
    # Folded into one rescan of the directory, or every file exactly once.
    assert batch.dirs == frozenset({"drop"}) or len(batch.paths) == 10_000
    assert agg.pop(end + 10) is None


def test_many_paths_in_one_directory_fold_into_a_directory_rescan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(aggregator, "MAX_PER_DIR", 5)
    agg = Aggregator()
    for i in range(6):
        agg.add(f"d/f{i}", Kind.DONE, 1.0)
    agg.add("other.txt", Kind.DONE, 1.0)
    batch = agg.pop(2.0)
    assert batch is not None
    assert batch.dirs == frozenset({"d"})
    assert batch.paths == frozenset({"other.txt"})


def test_too_many_paths_fold_into_a_full_rescan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aggregator, "MAX_PATHS", 3)
    agg = Aggregator()
    for i in range(4):
        agg.add(f"d{i}/f", Kind.DONE, 1.0)
    batch = agg.pop(2.0)
    assert batch is not None and batch.full
    assert agg.pending() == 0


def test_editor_save_dance_is_one_path() -> None:
    agg = Aggregator()
    agg.add("notes.txt~", Kind.WRITING, 1.0)
    agg.add("notes.txt~", Kind.DONE, 1.01)
    agg.add("notes.txt", Kind.DONE, 1.02)  # rename over the original
    agg.add("notes.txt", Kind.DONE, 1.03)
    batch = agg.pop(1.03 + aggregator.DEBOUNCE)
    assert batch is not None
    assert batch.paths == frozenset({"notes.txt~", "notes.txt"})


def test_file_still_open_for_writing_is_held_until_closed() -> None:
    agg = Aggregator()
    agg.add("big.iso", Kind.WRITING, 1.0)
    agg.add("small.txt", Kind.DONE, 1.0)
    batch = agg.pop(2.0)
    assert batch is not None and batch.paths == frozenset({"small.txt"})
    assert agg.pop(10.0) is None
    deadline = agg.next_deadline()
    assert deadline is not None and deadline >= 1.0 + aggregator.OPEN_WAIT
    agg.add("big.iso", Kind.DONE, 12.0)
    later = agg.pop(12.0 + aggregator.DEBOUNCE)
    assert later is not None and later.paths == frozenset({"big.iso"})


def test_open_file_without_close_is_released_after_open_wait() -> None:
    agg = Aggregator()
    agg.add("held", Kind.WRITING, 1.0)
    assert agg.pop(1.0 + aggregator.OPEN_WAIT - 1) is None
    batch = agg.pop(1.0 + aggregator.OPEN_WAIT)
    assert batch is not None and batch.paths == frozenset({"held"})


def test_endless_stream_is_handed_on_after_max_delay() -> None:
    agg = Aggregator()
    t = 0.0
    got = None
    while t < aggregator.MAX_DELAY + 1:
        agg.add("log.txt", Kind.DONE, t)
        got = agg.pop(t)
        if got is not None:
            break
        t += aggregator.DEBOUNCE / 2
    assert got is not None and got.paths == frozenset({"log.txt"})
    assert t >= aggregator.MAX_DELAY - 0.01


def test_rescan_all_swallows_pending_paths() -> None:
    agg = Aggregator()
    agg.add("a", Kind.DONE, 0.0)
    agg.rescan_all(0.1)
    agg.add("b", Kind.DONE, 0.2)
    batch = agg.pop(5.0)
    assert batch == aggregator.Batch(frozenset(), frozenset(), True)
    assert agg.next_deadline() is None


def test_batch_says_which_files_were_closed_by_their_writer() -> None:
    agg = Aggregator()
    agg.add("done.txt", Kind.WRITING, 1.0)
    agg.add("done.txt", Kind.CLOSED, 1.1)
    agg.add("moved.txt", Kind.DONE, 1.1)
    batch = agg.pop(2.0)
    assert batch is not None
    assert batch.paths == frozenset({"done.txt", "moved.txt"})
    assert batch.closed == frozenset({"done.txt"})
