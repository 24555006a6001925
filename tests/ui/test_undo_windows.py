"""The ways back on their own: versions, deleted files, conflict buttons; a fake agent answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QMessageBox
from pytestqt.qtbot import QtBot

from dropline.agent.control import ControlError
from dropline.ui.history import HistoryWindow
from dropline.ui.issues import IssuesWindow
from dropline.ui.models import HistoryModel, IssuesModel, TrashModel, VersionsModel
from dropline.ui.models.trash import original_location
from dropline.ui.models.versions import client_words
from dropline.ui.trash import TrashWindow, free_name
from dropline.ui.versions import VersionsWindow
from tests.ui.fake_agent import FakeAgent, revision, trash_item
from tests.ui.fakes import FakeHistory, history_row, issue
from tests.ui.support import Opened

WAIT = 3000
FILE = "/home/ann/Reports/plan.docx"


def versions_agent(revisions: list[Any] | None = None) -> FakeAgent:
    listed = (
        revisions if revisions is not None else [revision(3, current=True), *map(revision, (2, 1))]
    )
    return FakeAgent(
        {
            "versions.list": lambda a: {
                "file": {"path": a["path"], "remote": "/Reports/plan.docx", "id": "f1"},
                "revisions": listed,
            },
            "versions.restore": lambda a: {"entry": {"id": "f1", "rev": "r4"}},
            "versions.open_copy": lambda a: {"copy": f"/tmp/cache/plan (version {a['rev']}).docx"},
        }
    )


def open_versions(qtbot: QtBot, agent: FakeAgent, opener: Opened | None = None) -> VersionsWindow:
    window = VersionsWindow(agent, opener or Opened())
    qtbot.addWidget(window)
    window.show_file(FILE)
    qtbot.waitUntil(lambda: window.stack.currentWidget() is window.table, timeout=WAIT)
    return window


def test_versions_model_passes_qt_model_checks(qtmodeltester: Any) -> None:
    model = VersionsModel()
    model.set_revisions([revision(1), revision(2, current=True)])
    qtmodeltester.check(model)
    assert model.data(model.index(0, VersionsModel.WHEN)).endswith("(current)")
    assert model.data(model.index(0, VersionsModel.WHEN), Qt.ItemDataRole.FontRole).bold()
    assert not model.data(model.index(1, VersionsModel.WHEN)).endswith("(current)")


def test_version_words() -> None:
    assert client_words("dropline-agent/0.1.0") == "Desktop app 0.1.0"
    assert client_words("web") == "Web browser"
    assert client_words("api_key") == "API key"
    assert client_words(None) == "Unknown"
    model = VersionsModel()
    model.set_revisions([revision(1, email=None)])
    assert model.data(model.index(0, VersionsModel.WHO)) == "Unknown"
    assert model.data(model.index(0, VersionsModel.SIZE)) == "1000 bytes"


def test_versions_window_lists_newest_first_and_starts_on_the_previous_one(qtbot: QtBot) -> None:
    agent = versions_agent()
    window = open_versions(qtbot, agent)
    assert agent.ops("versions.list") == [{"path": FILE}]
    assert window.title.text() == "plan.docx"
    assert [r["rev"] for r in window.model.revisions()] == ["r3", "r2", "r1"]
    assert window.selected_revision()["rev"] == "r2"  # type: ignore[index]
    assert window.count_label.text() == "3 versions kept"
    assert window.restore_button.isEnabled()
    window.select_rev("r3")
    assert not window.restore_button.isEnabled()  # the current one cannot be restored
    assert window.open_copy_button.isEnabled()


def test_restore_asks_first_then_restores_and_says_so(qtbot: QtBot) -> None:
    agent = versions_agent()
    window = open_versions(qtbot, agent)
    window.select_rev("r1")
    window.restore_button.click()
    box = window.confirm_box
    assert box is not None and "Restore the version from" in box.text()
    box.button(QMessageBox.StandardButton.Cancel).click()
    QTest.qWait(20)
    assert agent.ops("versions.restore") == []  # cancelled: nothing asked

    window.restore_button.click()
    assert window.confirm_box is not None
    with qtbot.waitSignal(window.restored, timeout=WAIT) as restored:
        window.confirm_box.defaultButton().click()
    assert restored.args == ["r1"]
    assert agent.ops("versions.restore") == [{"path": FILE, "rev": "r1"}]
    assert window.banner.text().startswith("Restored the version from")
    qtbot.waitUntil(lambda: len(agent.ops("versions.list")) == 2, timeout=WAIT)  # relisted


def test_restore_that_fails_says_why_and_keeps_the_list(qtbot: QtBot) -> None:
    agent = versions_agent()

    def refuse(_args: dict[str, Any]) -> dict[str, Any]:
        raise ControlError("unavailable", "not signed in: sign in to restore a version")

    agent.handlers["versions.restore"] = refuse
    window = open_versions(qtbot, agent)
    window.restore(window.selected_revision())  # type: ignore[arg-type]
    qtbot.waitUntil(lambda: "Could not restore" in window.banner.text(), timeout=WAIT)
    assert "Not signed in: sign in to restore a version." in window.banner.text()
    assert window.model.rowCount() == 3
    assert window.restore_button.isEnabled()


def test_open_a_copy_opens_what_the_agent_downloaded(qtbot: QtBot) -> None:
    opened = Opened()
    window = open_versions(qtbot, versions_agent(), opened)
    with qtbot.waitSignal(window.copyOpened, timeout=WAIT):
        window.open_copy_button.click()
    assert opened.paths == [Path("/tmp/cache/plan (version r2).docx")]
    assert "Opened a copy" in window.banner.text()


def test_versions_of_a_file_outside_the_folders_explain_it(qtbot: QtBot) -> None:
    agent = versions_agent()

    def outside(_args: dict[str, Any]) -> dict[str, Any]:
        raise ControlError("invalid", "/tmp/x.txt is not inside a synced folder")

    agent.handlers["versions.list"] = outside
    window = VersionsWindow(agent, Opened())
    qtbot.addWidget(window)
    window.show_file("/tmp/x.txt")
    qtbot.waitUntil(lambda: window.empty.title.text() == "No version history", timeout=WAIT)
    assert window.empty.text.text() == "/tmp/x.txt is not inside a synced folder."
    assert not window.restore_button.isEnabled() and not window.open_copy_button.isEnabled()


# -- deleted files


def trash_agent(items: list[Any]) -> FakeAgent:
    def listing(args: dict[str, Any]) -> dict[str, Any]:
        search = args.get("search", "").casefold()
        folder = args.get("folder")
        return {
            "items": [
                i for i in items if search in i["name"].casefold() and folder in (None, i["folder"])
            ]
        }

    return FakeAgent({"trash.list": listing, "trash.restore": lambda a: {"entry": {"id": a["id"]}}})


def open_trash(qtbot: QtBot, agent: FakeAgent) -> TrashWindow:
    window = TrashWindow(agent)
    qtbot.addWidget(window)
    window.set_folders(["/home/ann/Reports", "/home/ann/Inbox"])
    window.show_for()
    qtbot.waitUntil(lambda: bool(agent.ops("trash.list")) and not window._loading, timeout=WAIT)
    return window


def test_trash_model_passes_qt_model_checks(qtmodeltester: Any) -> None:
    model = TrashModel()
    model.set_items([trash_item(1, "a.pdf"), trash_item(2, "b.pdf", sub="Logo refresh")])
    qtmodeltester.check(model)
    assert model.data(model.index(0, TrashModel.NAME)) == "b.pdf"  # newest deletion first
    assert model.data(model.index(0, TrashModel.LOCATION)) == "Reports/Logo refresh"
    assert original_location(trash_item(3, "c.pdf")) == "Reports"


def test_free_name_skips_names_in_use(tmp_path: Path) -> None:
    (tmp_path / "q3.pdf").write_text("now")
    assert free_name(str(tmp_path / "q3.pdf")) == "q3 (restored).pdf"
    (tmp_path / "q3 (restored).pdf").write_text("also")
    assert free_name(str(tmp_path / "q3.pdf")) == "q3 (restored 2).pdf"
    assert free_name(str(tmp_path / ".profile")) == ".profile (restored)"


def test_trash_search_and_folder_go_to_the_agent(qtbot: QtBot) -> None:
    items = [trash_item(1, "Invoice 0142.pdf"), trash_item(2, "rota.docx")]
    items.append(trash_item(3, "Invoice old.pdf", folder="/home/ann/Inbox"))
    agent = trash_agent(items)
    window = open_trash(qtbot, agent)
    assert window.model.rowCount() == 3
    QTest.keyClicks(window.search, "invoice")
    qtbot.waitUntil(lambda: window.model.rowCount() == 2, timeout=WAIT)
    assert agent.ops("trash.list")[-1] == {"search": "invoice"}
    window.folder.setCurrentIndex(window.folder.findData("/home/ann/Inbox"))
    qtbot.waitUntil(lambda: window.model.rowCount() == 1, timeout=WAIT)
    assert agent.ops("trash.list")[-1] == {"folder": "/home/ann/Inbox", "search": "invoice"}
    window.search.setText("nothing like it")
    qtbot.waitUntil(lambda: window.empty.title.text() == "No matching deleted files", timeout=WAIT)


def test_restore_selected_restores_each_with_progress_and_names_failures(qtbot: QtBot) -> None:
    items = [trash_item(n, f"file {n}.txt") for n in range(1, 4)]
    agent = trash_agent(items)

    def restore(args: dict[str, Any]) -> dict[str, Any]:
        if args["id"] == "t2":
            raise ControlError("not-found", "file 2.txt is no longer in the trash")
        return {"entry": {"id": args["id"]}}

    agent.handlers["trash.restore"] = restore
    window = open_trash(qtbot, agent)
    window.table.selectAll()
    assert window.restore_button.text() == "&Restore 3 items"
    progress: list[int] = []
    window.progress.valueChanged.connect(progress.append)
    with qtbot.waitSignal(window.restoreFinished, timeout=WAIT) as finished:
        window.restore_button.click()
        assert window.progress.isVisibleTo(window) and window.progress.maximum() == 3
        assert not window.restore_button.isEnabled()
    assert finished.args == [2, 1]
    assert progress == [0, 1, 2, 3]
    assert [a["id"] for a in agent.ops("trash.restore")] == ["t3", "t2", "t1"]
    assert window.banner.text() == (
        "Restored 2 of 3 items. file 2.txt: File 2.txt is no longer in the trash."
    )
    assert window.progress.isHidden()


def test_a_taken_place_offers_a_new_name_and_restores_there(qtbot: QtBot, tmp_path: Path) -> None:
    (tmp_path / "plan.docx").write_text("the new plan")
    item = trash_item(1, "plan.docx", folder=str(tmp_path), taken=True)
    agent = trash_agent([item])

    def restore(args: dict[str, Any]) -> dict[str, Any]:
        if "path" not in args:
            raise ControlError("conflict", "something is already at /plan.docx; give a new path")
        return {"entry": {"id": args["id"]}}

    agent.handlers["trash.restore"] = restore
    window = open_trash(qtbot, agent)
    window.select_local(str(tmp_path / "plan.docx"))
    window.restore_selected()
    qtbot.waitUntil(lambda: window.rename.isVisibleTo(window), timeout=WAIT)
    assert "Something is already at" in window.rename.label.text()
    assert window.rename.name.text() == "plan (restored).docx"
    assert window.banner.text() == ""  # the panel says it; no second message

    window.rename.name.setText("a/b")
    window.rename.restore_as.click()
    assert window.rename.error.text() == "A name cannot contain / or \\."
    window.rename.name.setText("plan (old).docx")
    with qtbot.waitSignal(window.restoredItem, timeout=WAIT) as restored:
        window.rename.restore_as.click()
    assert restored.args == [str(tmp_path / "plan (old).docx")]
    assert agent.ops("trash.restore")[-1] == {"id": "t1", "path": str(tmp_path / "plan (old).docx")}
    assert window.rename.isHidden()
    assert "Restored plan.docx as plan (old).docx" in window.banner.text()


# -- conflicts and the history window


def conflict() -> Any:
    found = issue(7, kind="conflict")
    found["path"] = "/plan.docx"
    found["related_paths"] = ["/plan.docx", "/plan (conflicted copy pc 2025-11-26 101500).docx"]
    return found


def test_conflict_offers_keep_both_mine_theirs_each_with_an_explanation(qtbot: QtBot) -> None:
    model = IssuesModel()
    model.set_issues([issue(1), conflict()])
    window = IssuesWindow(model, Opened())
    qtbot.addWidget(window)
    window.table.selectRow(0)
    assert window.selected_issue()["kind"] == "conflict"  # type: ignore[index]
    for keep in ("both", "mine", "theirs"):
        button = window.keep[keep]
        assert not button.isHidden() and button.toolTip()
        with qtbot.waitSignal(window.resolveRequested) as asked:
            button.click()
        assert asked.args == [7, keep]
    assert "Deleted files" in window.keep["theirs"].toolTip()
    window.table.selectRow(1)  # not a conflict: no keep buttons
    assert all(b.isHidden() for b in window.keep.values())
    assert not window.retry.isHidden()


def test_history_row_menu_offers_versions_and_deleted_files(qtbot: QtBot, tmp_path: Path) -> None:
    (tmp_path / "here.txt").write_text("still here")
    rows = [history_row(1, "/here.txt", folder=str(tmp_path))]
    rows.append(history_row(2, "/gone.txt", folder=str(tmp_path)))
    window = HistoryWindow(HistoryModel(FakeHistory(rows)), Opened())
    qtbot.addWidget(window)
    window.set_folders([str(tmp_path)])
    window.model.refresh()
    paths = [window.model.row_at(n)["path"] for n in range(2)]  # type: ignore[index]
    gone = paths.index("/gone.txt")

    menu = window.row_menu(1 - gone)
    actions = {a.objectName(): a for a in menu.actions() if a.objectName()}
    assert actions["versions"].isEnabled()
    with qtbot.waitSignal(window.versionsRequested) as versions:
        actions["versions"].trigger()
    assert versions.args == [str(tmp_path / "here.txt")]
    assert window.versions.isEnabled()

    menu = window.row_menu(gone)
    actions = {a.objectName(): a for a in menu.actions() if a.objectName()}
    assert not actions["versions"].isEnabled()  # nothing on disk to show versions of
    with qtbot.waitSignal(window.trashRequested) as trash:
        actions["trash"].trigger()
    assert trash.args == [str(tmp_path), "gone.txt"]  # its folder, searched for its name
