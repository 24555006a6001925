"""The tray's table models on their own: paging, filters, sort, live rows, fading, issues."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import QModelIndex, Qt

from dropline.ui.models import (
    HistoryFilter,
    HistoryModel,
    IssuesModel,
    OpacityRole,
    ProgressRole,
    RowRole,
    TransfersModel,
)
from tests.ui.fakes import FakeHistory, history_row, issue, progress


def loaded_ids(model: HistoryModel) -> list[int]:
    return [r["id"] for r in model.rows()]


def test_history_model_passes_qt_model_checks(qtmodeltester: Any) -> None:
    model = HistoryModel(FakeHistory([history_row(n) for n in range(1, 51)]), page_size=20)
    model.fetchMore(QModelIndex())
    qtmodeltester.check(model)
    assert model.rowCount() >= 20


def test_history_fetches_page_by_page_until_exhausted() -> None:
    fake = FakeHistory([history_row(n) for n in range(1, 46)])
    model = HistoryModel(fake, page_size=20)
    assert model.canFetchMore(QModelIndex())
    model.fetchMore(QModelIndex())
    assert loaded_ids(model) == list(range(45, 25, -1))
    model.fetchMore(QModelIndex())
    assert fake.calls[1]["before_id"] == 26
    model.fetchMore(QModelIndex())
    assert loaded_ids(model) == list(range(45, 0, -1))
    assert not model.canFetchMore(QModelIndex())
    assert model.is_complete()


def test_history_asks_for_one_page_at_a_time_while_loading() -> None:
    fake = FakeHistory([history_row(n) for n in range(1, 100)], answer_now=False)
    model = HistoryModel(fake, page_size=10)
    model.fetchMore(QModelIndex())
    model.fetchMore(QModelIndex())
    assert len(fake.calls) == 1
    assert model.is_loading()
    fake.answer()
    assert model.rowCount() == 10
    assert not model.is_loading()


def test_history_filter_goes_to_the_agent_and_drops_stale_pages() -> None:
    rows = [history_row(n, direction="down" if n % 3 == 0 else "up") for n in range(1, 31)]
    fake = FakeHistory(rows, answer_now=False)
    model = HistoryModel(fake, page_size=50)
    model.fetchMore(QModelIndex())
    model.set_filter(HistoryFilter(direction="down"))
    assert fake.calls[-1]["direction"] == "down"
    fake.answer()  # the page asked for before the filter changed: dropped
    assert model.rowCount() == 0
    fake.answer()
    assert {r["direction"] for r in model.rows()} == {"down"}
    assert model.rowCount() == 10


def test_history_search_and_result_filter_together() -> None:
    rows = [
        history_row(1, "Invoice-March.pdf"),
        history_row(2, "invoice-april.pdf", result="failed"),
        history_row(3, "notes.txt", result="failed"),
        history_row(4, "INVOICE-may.pdf"),
    ]
    model = HistoryModel(FakeHistory(rows))
    model.set_filter(HistoryFilter(search="invoice", result="ok"))
    assert [r["path"] for r in model.rows()] == ["INVOICE-may.pdf", "Invoice-March.pdf"]


def test_history_date_range_is_half_open() -> None:
    rows = [history_row(n) for n in range(1, 11)]
    model = HistoryModel(FakeHistory(rows))
    start = rows[2]["time"]
    model.set_filter(HistoryFilter(since=start, until=start + 3))
    assert loaded_ids(model) == [5, 4, 3]


def test_live_row_appears_at_the_top_when_it_matches() -> None:
    model = HistoryModel(FakeHistory([history_row(n) for n in range(1, 6)]))
    model.fetchMore(QModelIndex())
    model.set_filter(HistoryFilter(result="ok"))
    assert model.add_live(history_row(9))
    assert loaded_ids(model)[0] == 9
    assert not model.add_live(history_row(10, result="failed"))
    assert not model.add_live(history_row(9))  # already shown
    assert model.rowCount() == 6


def test_live_row_arriving_before_its_page_is_not_shown_twice() -> None:
    fake = FakeHistory([history_row(n) for n in range(1, 6)], answer_now=False)
    model = HistoryModel(fake)
    model.fetchMore(QModelIndex())
    model.add_live(history_row(5))
    fake.answer()
    assert loaded_ids(model) == [5, 4, 3, 2, 1]


def test_sort_by_size_keeps_live_rows_in_order(qtmodeltester: Any) -> None:
    rows = [history_row(n, size=s) for n, s in [(1, 500), (2, 50), (3, 5000)]]
    model = HistoryModel(FakeHistory(rows))
    model.fetchMore(QModelIndex())
    model.sort(HistoryModel.SIZE, Qt.SortOrder.AscendingOrder)
    assert [r["size"] for r in model.rows()] == [50, 500, 5000]
    model.add_live(history_row(4, size=700))
    assert [r["size"] for r in model.rows()] == [50, 500, 700, 5000]
    qtmodeltester.check(model)


def test_sort_keeps_persistent_selection_on_the_same_row() -> None:
    rows = [history_row(n, path=p) for n, p in [(1, "b.txt"), (2, "c.txt"), (3, "a.txt")]]
    model = HistoryModel(FakeHistory(rows))
    model.fetchMore(QModelIndex())
    from PySide6.QtCore import QPersistentModelIndex

    held = QPersistentModelIndex(model.index(0, HistoryModel.FILE))
    assert held.data() == "a.txt"
    model.sort(HistoryModel.FILE, Qt.SortOrder.DescendingOrder)
    assert held.row() == 2
    assert held.data() == "a.txt"


def test_failed_page_stops_fetching_and_reports() -> None:
    fake = FakeHistory([history_row(1)])
    fake.fail = True
    model = HistoryModel(fake)
    failures: list[str] = []
    model.loadFailed.connect(failures.append)
    model.fetchMore(QModelIndex())
    assert failures and "could not be loaded" in failures[0]
    assert not model.canFetchMore(QModelIndex())
    fake.fail = False
    model.refresh()
    assert model.rowCount() == 1


def test_load_all_fetches_every_remaining_page() -> None:
    model = HistoryModel(FakeHistory([history_row(n) for n in range(1, 96)]), page_size=10)
    model.fetchMore(QModelIndex())
    finished: list[int] = []
    model.load_all(lambda: finished.append(model.rowCount()))
    assert finished == [95]


def test_history_display_words() -> None:
    model = HistoryModel(FakeHistory([history_row(1, direction="down", result="failed")]))
    model.fetchMore(QModelIndex())

    def cell(col: int, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        return model.data(model.index(0, col), role)

    assert cell(HistoryModel.FOLDER) == "Reports"
    assert cell(HistoryModel.DIRECTION) == "Download"
    assert cell(HistoryModel.SIZE) == "1000 bytes"
    assert cell(HistoryModel.SPEED) == "2.0 KB/s"
    assert cell(HistoryModel.RESULT) == "Failed"
    assert cell(HistoryModel.RESULT, Qt.ItemDataRole.ToolTipRole) == "disk full"
    assert cell(HistoryModel.FILE, RowRole)["id"] == 1


# -- transfers


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_transfers_model_passes_qt_model_checks(qtmodeltester: Any) -> None:
    model = TransfersModel(clock=Clock())
    model.update(progress("a", 10))
    model.update(progress("b", 500))
    qtmodeltester.check(model)


def test_transfer_progress_updates_one_row_per_transfer() -> None:
    model = TransfersModel(clock=Clock())
    model.update(progress("a", 100))
    model.update(progress("a", 400, bps=200.0))
    assert model.rowCount() == 1
    index = model.index(0, TransfersModel.PROGRESS)
    assert model.data(index, ProgressRole) == pytest.approx(0.4)
    assert model.data(index) == "400 bytes of 1000 bytes"
    assert model.data(model.index(0, TransfersModel.TIME_LEFT)) == "a few seconds left"
    assert model.data(model.index(0, TransfersModel.SPEED)) == "200 bytes/s"


def test_finished_transfer_fades_then_leaves() -> None:
    clock = Clock()
    model = TransfersModel(clock=clock, fade_seconds=2.0)
    model.update(progress("a", 100))
    model.update(progress("b", 100))
    model.update(progress("a", 1000))
    assert model.data(model.index(0, 0), OpacityRole) == 1.0
    clock.now += 1.0
    model.tick()
    assert model.data(model.index(0, 0), OpacityRole) == pytest.approx(0.5)
    assert model.data(model.index(0, TransfersModel.PROGRESS)) == "Done"
    clock.now += 1.0
    model.tick()
    assert [t.transfer_id for t in model.transfers()] == ["b"]


def test_history_row_finishes_the_matching_transfer() -> None:
    model = TransfersModel(clock=Clock())
    model.update(progress("a", 100))
    model.finish("/home/ann/Reports", "a.bin", "failed")
    assert model.active() == []
    assert model.data(model.index(0, TransfersModel.PROGRESS)) == "Failed"


def test_totals_count_running_transfers_only() -> None:
    model = TransfersModel(clock=Clock())
    model.update(progress("a", 100, total=1000, bps=10))
    model.update(progress("b", 300, total=500, bps=20))
    model.update(progress("c", 2000, total=2000, bps=5))
    assert model.totals() == (400, 1500, 30)


# -- issues


def test_issues_model_passes_qt_model_checks(qtmodeltester: Any) -> None:
    model = IssuesModel()
    model.set_issues([issue(1), issue(2, kind="conflict")])
    qtmodeltester.check(model)


def test_issues_newest_first_replace_and_remove() -> None:
    model = IssuesModel()
    model.set_issues([issue(1), issue(2)])
    assert [i["id"] for i in model.issues()] == [2, 1]
    changed = issue(1)
    changed["message"] = "Still bad."
    model.add(changed)
    assert model.rowCount() == 2
    assert model.data(model.index(1, IssuesModel.PROBLEM)) == "Still bad."
    model.add(issue(3))
    assert model.issue_at(0) is not None and model.issue_at(0)["id"] == 3  # type: ignore[index]
    assert model.remove(2)
    assert not model.remove(2)
    assert [i["id"] for i in model.issues()] == [3, 1]
    assert model.data(model.index(0, IssuesModel.HINT)) == "Rename the file."
    assert model.data(model.index(0, IssuesModel.FILE)) == "bad3:name.txt"


def test_settle_stops_rows_the_agent_no_longer_moves() -> None:
    clock = Clock()
    model = TransfersModel(clock=clock, fade_seconds=1.0)
    model.update(progress("a", 100))
    model.settle()
    assert model.active() == []
    assert model.data(model.index(0, TransfersModel.PROGRESS)) == "Stopped"
    clock.now += 1
    model.tick()
    assert model.rowCount() == 0
