"""The windows on their own, fed by their models: filters, export, actions, empty states."""

from __future__ import annotations

import csv
from datetime import date, datetime
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QKeySequence, QPalette
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QWidget
from pytestqt.qtbot import QtBot

from dropline.agent.control.protocol import IssueJSON
from dropline.ui.app import apply_theme
from dropline.ui.history import HistoryWindow, date_range
from dropline.ui.issues import IssuesWindow
from dropline.ui.models import HistoryModel, IssuesModel, TransfersModel
from dropline.ui.settings import AddFolderDialog
from dropline.ui.transfers import TransfersWindow
from tests.ui.fakes import FakeHistory, history_row, issue, progress
from tests.ui.support import Opened


def test_history_filters_become_the_agents_query(qtbot: QtBot) -> None:
    fake = FakeHistory([history_row(n) for n in range(1, 5)])
    window = HistoryWindow(HistoryModel(fake))
    qtbot.addWidget(window)
    window.set_folders(["/home/ann/Reports", "/home/ann/Inbox"])
    window.folder.setCurrentIndex(window.folder.findData("/home/ann/Inbox"))
    window.direction.setCurrentIndex(window.direction.findData("down"))
    window.result.setCurrentIndex(window.result.findData("failed"))
    assert fake.calls[-1] == {
        "limit": 200,
        "folder": "/home/ann/Inbox",
        "direction": "down",
        "result": "failed",
    }
    assert window.empty.title.text() == "No matching transfers"
    assert window.stack.currentWidget() is window.empty


def test_history_search_waits_for_typing_to_pause(qtbot: QtBot) -> None:
    fake = FakeHistory([history_row(1, "report.pdf"), history_row(2, "notes.txt")])
    window = HistoryWindow(HistoryModel(fake))
    qtbot.addWidget(window)
    QTest.keyClicks(window.search, "rep")
    qtbot.waitUntil(
        lambda: bool(fake.calls) and fake.calls[-1].get("search") == "rep", timeout=3000
    )
    assert [c["search"] for c in fake.calls if "search" in c] == ["rep"]  # not one per key
    assert [r["path"] for r in window.model.rows()] == ["report.pdf"]


def test_history_date_ranges() -> None:
    today = date(2025, 11, 26)
    start = datetime(2025, 11, 20).timestamp()
    assert date_range("Last 7 days", today, today, today) == (start, None)
    assert date_range("Any time", today, today, today) == (None, None)
    since, until = date_range("Between dates", date(2025, 11, 3), date(2025, 11, 1), today)
    assert since == datetime(2025, 11, 1).timestamp()
    assert until == datetime(2025, 11, 4).timestamp()


def test_history_export_writes_every_matching_row_not_just_the_loaded_page(
    qtbot: QtBot, tmp_path: Path
) -> None:
    rows = [history_row(n, result="failed" if n % 2 else "ok") for n in range(1, 501)]
    rows.append(history_row(999, path='=HYPERLINK("http://x")'))
    model = HistoryModel(FakeHistory(rows), page_size=50)
    window = HistoryWindow(model)
    qtbot.addWidget(window)
    window.result.setCurrentIndex(window.result.findData("ok"))
    assert model.rowCount() == 50
    out = tmp_path / "history.csv"
    with qtbot.waitSignal(window.exported, timeout=5000) as signal:
        window.export_to(out)
    assert signal.args == [str(out), 251]
    with out.open(encoding="utf-8-sig", newline="") as f:
        table = list(csv.reader(f))
    assert table[0][:3] == ["time_utc", "folder", "path"]
    assert len(table) == 252
    assert {line[7] for line in table[1:]} == {"ok"}
    assert table[1][2] == '\'=HYPERLINK("http://x")'  # a file name is never run as a formula
    assert "Exported 251 rows" in window.banner.text()


def test_history_export_failure_is_reported_and_leaves_nothing(
    qtbot: QtBot, tmp_path: Path
) -> None:
    window = HistoryWindow(HistoryModel(FakeHistory([history_row(1)])))
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.exportFailed, timeout=5000):
        window.export_to(tmp_path / "missing-dir" / "h.csv")
    assert "Could not write" in window.banner.text() or window.banner.text()
    assert not (tmp_path / "missing-dir").exists()


def test_history_opens_the_file_and_its_folder(qtbot: QtBot, tmp_path: Path) -> None:
    folder = tmp_path / "Reports"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "q3.pdf").write_bytes(b"x")
    opened = Opened()
    rows = [
        history_row(1, "/sub/q3.pdf", folder=str(folder)),
        history_row(2, "/../../etc/passwd", folder=str(folder)),
    ]
    window = HistoryWindow(HistoryModel(FakeHistory(rows)), opener=opened)
    qtbot.addWidget(window)
    window.model.refresh()
    window.table.selectRow(1)  # ids sort newest first: row 1 is id 1
    window.open_file.click()
    window.open_folder.click()
    assert opened.paths == [folder / "sub" / "q3.pdf", folder / "sub"]
    window.table.selectRow(0)
    window.open_file.click()
    assert len(opened.paths) == 2  # the path leading outside the folder is refused
    assert "outside its sync folder" in window.banner.text()


def test_issues_window_explains_and_offers_both_versions_of_a_conflict(
    qtbot: QtBot, tmp_path: Path
) -> None:
    folder = tmp_path / "Plans"
    folder.mkdir()
    for name in ("plan.docx", "plan (conflicted copy pc 2025-11-26 101500).docx"):
        (folder / name).write_text("v")
    conflict: IssueJSON = {
        **issue(7, kind="conflict"),
        "folder": str(folder),
        "path": "/plan.docx",
        "message": "plan.docx was changed here and on the server.",
        "hint": "Open both versions and keep the one you want.",
        # As the agent sends it: the file itself, then the conflict copy.
        "related_paths": ["/plan.docx", "/plan (conflicted copy pc 2025-11-26 101500).docx"],
    }
    model = IssuesModel()
    model.set_issues([issue(1), conflict])
    opened = Opened()
    window = IssuesWindow(model, opener=opened)
    qtbot.addWidget(window)
    assert window.title.text() == "2 files need attention"
    window.table.selectRow(0)
    assert window.detail_message.text() == "plan.docx was changed here and on the server."
    assert window.detail_hint.text() == (
        "<b>What to do:</b> Open both versions and keep the one you want."
    )
    assert not window.open_both.isHidden()
    assert window.detail_versions.text() == (
        "Both versions were kept:\n• plan.docx\n• plan (conflicted copy pc 2025-11-26 101500).docx"
    )
    window.open_both.click()
    assert [p.name for p in opened.paths] == [
        "plan.docx",
        "plan (conflicted copy pc 2025-11-26 101500).docx",
    ]
    with qtbot.waitSignal(window.dismissRequested) as dismissed:
        window.dismiss.click()
    assert dismissed.args == [7]
    window.table.selectRow(1)
    assert window.open_both.isHidden()
    with qtbot.waitSignal(window.retryRequested) as retried:
        window.retry.click()
    assert retried.args == [1]


def test_issues_window_empty_state(qtbot: QtBot) -> None:
    window = IssuesWindow(IssuesModel())
    qtbot.addWidget(window)
    assert window.stack.currentWidget() is window.empty
    assert not window.retry.isEnabled()


def test_transfers_window_overall_line_and_bars(qtbot: QtBot) -> None:
    model = TransfersModel()
    window = TransfersWindow(model)
    qtbot.addWidget(window)
    assert window.stack.currentWidget() is window.empty
    model.update(progress("a", 250 * 1024, total=1024 * 1024, bps=100 * 1024))
    model.update(progress("b", 0, total=1024 * 1024, bps=0))
    assert window.stack.currentWidget() is window.table
    assert window.title.text() == "Uploading 2 files"
    # Time left is that of the slowest transfer with a known speed (a: 774 KB at 100 KB/s).
    assert window.summary.text() == "250 KB of 2.0 MB · 100 KB/s · 10 s left"
    assert window.overall.value() == 122
    window.resize(760, 300)
    window.show()
    image = window.table.viewport().grab().toImage()  # the delegate paints without error
    assert not image.isNull()


def test_add_folder_dialog_suggests_the_server_folder(qtbot: QtBot) -> None:
    dialog = AddFolderDialog()
    qtbot.addWidget(dialog)
    ok = dialog.buttons.buttons()[0]
    assert not ok.isEnabled()
    dialog.local.setText("/home/ann/Quarterly Reports")
    assert dialog.remote.text() == "/Quarterly Reports"
    dialog.mode.setCurrentIndex(1)
    assert dialog.mode_help.text() == "Files you add go to the server."
    assert dialog.values() == {
        "local": "/home/ann/Quarterly Reports",
        "remote": "/Quarterly Reports",
        "mode": "upload-only",
    }
    QTest.keyClicks(dialog.remote, "x")  # typed by the user: no longer follows the local name
    dialog.local.setText("/home/ann/Other")
    assert dialog.remote.text() == "/Quarterly Reportsx"


def test_history_works_from_the_keyboard(qtbot: QtBot, tmp_path: Path) -> None:
    folder = tmp_path / "Reports"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    opened = Opened()
    window = HistoryWindow(
        HistoryModel(FakeHistory([history_row(1, "/a.txt", folder=str(folder))])), opener=opened
    )
    qtbot.addWidget(window)
    window.model.refresh()
    show_active(qtbot, window)
    window.table.setFocus()
    QTest.keySequence(window, QKeySequence(QKeySequence.StandardKey.Find))
    qtbot.waitUntil(window.search.hasFocus, timeout=3000)
    QTest.keyClick(window.search, Qt.Key.Key_Tab)
    assert window.folder.hasFocus()
    window.table.setFocus()
    window.table.selectRow(0)
    QTest.keyClick(window.table, Qt.Key.Key_Return)
    assert opened.paths == [folder / "a.txt"]
    QTest.keyClick(window.table, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not window.isVisible(), timeout=3000)


def test_issue_is_dismissed_with_the_delete_key(qtbot: QtBot) -> None:
    model = IssuesModel()
    model.set_issues([issue(4)])
    window = IssuesWindow(model)
    qtbot.addWidget(window)
    show_active(qtbot, window)
    window.table.setFocus()
    with qtbot.waitSignal(window.dismissRequested) as dismissed:
        QTest.keyClick(window.table, Qt.Key.Key_Delete)
    assert dismissed.args == [4]


def test_dark_theme_uses_a_dark_palette(qapp: QApplication) -> None:
    before_style, before_palette = qapp.style().name(), qapp.palette()
    try:
        apply_theme(qapp, "dark")
        assert qapp.style().name().lower() == "fusion"
        window = qapp.palette().color(QPalette.ColorRole.Window)
        text = qapp.palette().color(QPalette.ColorRole.WindowText)
        assert window.lightness() < 80 < text.lightness()
    finally:
        qapp.setStyle(before_style)
        qapp.setPalette(before_palette)


def test_secondary_text_follows_a_theme_change(qapp: QApplication, qtbot: QtBot) -> None:
    window = HistoryWindow(HistoryModel(FakeHistory([history_row(1)])))
    qtbot.addWidget(window)
    before_style, before_palette = qapp.style().name(), qapp.palette()
    try:
        apply_theme(qapp, "dark")  # after the window exists, as a desktop switch would
        qapp.processEvents()
        label = window.count_label
        shown = label.palette().color(label.foregroundRole())
        background = qapp.palette().color(QPalette.ColorRole.Window)
        assert shown == qapp.palette().color(QPalette.ColorRole.PlaceholderText)
        assert shown.lightness() - background.lightness() > 60  # legible on the dark window
    finally:
        qapp.setStyle(before_style)
        qapp.setPalette(before_palette)


def show_active(qtbot: QtBot, window: QWidget) -> None:
    """Shortcuts go to the active window only: show this one and wait until it is."""
    window.show()
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=3000)


def test_agent_issue_about_its_config_file_opens_that_file(qtbot: QtBot, tmp_path: Path) -> None:
    config = tmp_path / "agent.toml"
    config.write_text("x")
    bad: IssueJSON = {**issue(9, kind="config-invalid"), "folder": "", "path": str(config)}
    model = IssuesModel()
    model.set_issues([bad])
    opened = Opened()
    window = IssuesWindow(model, opener=opened)
    qtbot.addWidget(window)
    window.open_file.click()
    window.open_folder.click()
    assert opened.paths == [config, tmp_path]


def test_history_load_error_clears_when_loading_starts_again(qtbot: QtBot) -> None:
    fake = FakeHistory([history_row(1)])
    fake.fail = True
    window = HistoryWindow(HistoryModel(fake))
    qtbot.addWidget(window)
    window.model.refresh()
    assert "could not be loaded" in window.banner.text()
    fake.fail = False
    window.model.refresh()
    assert window.banner.text() == ""
    assert window.model.rowCount() == 1


def test_history_load_error_is_not_repeated_while_connecting(qtbot: QtBot) -> None:
    fake = FakeHistory([history_row(1)])
    fake.fail = True
    window = HistoryWindow(HistoryModel(fake))
    qtbot.addWidget(window)
    window.set_connected(False, "The Dropline service is not running.")
    window.model.refresh()
    assert window.banner.text() == ""
    assert "Connecting" in window.connection_banner.text()
