"""Undo through the tray: an older version back, a deleted file back, conflicts settled.

A real server, a real agent (signed in with an API key) syncing a real folder, and
the tray linked to it; each restore is seen arriving in the folder through sync.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pytestqt.qtbot import QtBot

from dropline.agent.control.protocol import IssueJSON
from dropline.ui import status
from dropline.ui.controller import TrayApp
from dropline.ui.models import VersionsModel
from tests.agent.support import AgentEnv
from tests.support.live import LiveServer
from tests.ui.support import WAIT_MS, Opened, tray_for, write_agent_config

EMAIL = "alice@example.com"  # LiveServer.new_key's user


@pytest.fixture
def reports(tmp_path: Path) -> Path:
    return tmp_path / "Reports"


@pytest.fixture
def key(live_server: LiveServer) -> str:
    return live_server.new_key()


@pytest.fixture
def env(tmp_path: Path, live_server: LiveServer, reports: Path, key: str) -> Iterator[AgentEnv]:
    e = AgentEnv(tmp_path)
    write_agent_config(e, live_server.url, {"/Reports": reports})
    e.extra_env["DROPLINE_API_KEY"] = key
    e.start(wait=60)
    yield e
    e.stop()


@pytest.fixture
def app(env: AgentEnv, qtbot: QtBot) -> Iterator[TrayApp]:
    with tray_for(env, qtbot, opener=Opened()) as tray:
        qtbot.waitUntil(lambda: tray.summary.icon == status.IDLE, timeout=WAIT_MS)
        yield tray


class Server:
    """What the server holds, asked over its API with the agent's user's key."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {key}"}

    def entry(self, path: str) -> dict[str, Any] | None:
        answer = httpx.get(
            f"{self.url}/api/v1/metadata", params={"path": path}, headers=self.headers
        )
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        return dict(answer.json())

    def sha(self, path: str) -> str | None:
        entry = self.entry(path)
        return None if entry is None else entry.get("sha256")

    def names(self, folder: str) -> list[str]:
        answer = httpx.get(
            f"{self.url}/api/v1/files", params={"path": folder}, headers=self.headers
        )
        answer.raise_for_status()
        return [e["name"] for e in answer.json()["entries"]]

    def put(self, path: str, data: bytes, if_rev: str) -> None:
        """A new revision of ``path`` made elsewhere (another computer, say)."""
        metadata = ",".join(
            f"{k} {base64.b64encode(v.encode()).decode()}"
            for k, v in (("path", path), ("if_rev", if_rev))
        )
        answer = httpx.post(
            f"{self.url}/api/v1/uploads",
            content=data,
            headers={
                **self.headers,
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(len(data)),
                "Upload-Metadata": metadata,
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert answer.status_code == 201, answer.text


@pytest.fixture
def server(live_server: LiveServer, key: str) -> Server:
    return Server(live_server.url, key)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def synced(qtbot: QtBot, server: Server, path: str, data: bytes) -> None:
    qtbot.waitUntil(lambda: server.sha(path) == sha(data), timeout=WAIT_MS)


def test_versions_dialog_restores_an_older_version_into_the_folder(
    app: TrayApp, qtbot: QtBot, reports: Path, server: Server
) -> None:
    plan = reports / "plan.txt"
    plan.write_bytes(b"first draft")
    synced(qtbot, server, "/Reports/plan.txt", b"first draft")
    plan.write_bytes(b"second draft, written over the first")
    synced(qtbot, server, "/Reports/plan.txt", b"second draft, written over the first")

    # From the tray menu: a file picker in the sync folder, then that file's versions.
    app.tray.action("versions").trigger()  # type: ignore[union-attr]
    picker = app.undo.picker
    assert picker is not None and picker.directory().absolutePath() == str(reports)
    picker.selectFile(str(plan))
    picker.accept()
    window = app.undo.versions_window()
    qtbot.waitUntil(lambda: window.model.rowCount() == 2, timeout=WAIT_MS)
    assert window.isVisible() and window.title.text() == "plan.txt"
    current, older = window.model.revisions()
    assert current["current"] and current["sha256"] == sha(b"second draft, written over the first")
    assert older["sha256"] == sha(b"first draft")
    assert window.selected_revision() == older
    assert window.model.data(window.model.index(1, VersionsModel.WHO)) == EMAIL
    assert window.model.data(window.model.index(1, VersionsModel.CLIENT)).startswith("Desktop app")

    with qtbot.waitSignal(window.copyOpened, timeout=WAIT_MS) as opened:
        window.open_copy_button.click()
    copy = Path(opened.args[0])
    assert app.opener.paths == [copy]  # type: ignore[attr-defined]
    assert copy.read_bytes() == b"first draft"
    assert not copy.is_relative_to(reports)  # never inside a sync folder
    assert "(version " in copy.name and copy.suffix == ".txt"

    window.restore_button.click()
    assert window.confirm_box is not None
    window.confirm_box.defaultButton().click()
    qtbot.waitUntil(lambda: plan.read_bytes() == b"first draft", timeout=WAIT_MS)
    # The file can arrive through sync before the agent's answer reaches the window.
    qtbot.waitUntil(lambda: "Restored the version from" in window.banner.text(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.model.rowCount() == 3, timeout=WAIT_MS)  # history kept
    newest = window.model.revisions()[0]
    assert newest["current"] and newest["sha256"] == sha(b"first draft")


def test_versions_of_a_file_outside_the_sync_folders_say_why(
    app: TrayApp, qtbot: QtBot, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere.txt"
    elsewhere.write_bytes(b"not synced")
    app.undo.open_versions(str(elsewhere))
    window = app.undo.versions_window()
    qtbot.waitUntil(lambda: window.empty.title.text() == "No version history", timeout=WAIT_MS)
    assert "synced folder" in window.empty.text.text() or "sync folder" in window.empty.text.text()
    assert not window.restore_button.isEnabled()


def test_deleted_file_is_found_by_search_and_restored(
    app: TrayApp, qtbot: QtBot, reports: Path, server: Server
) -> None:
    invoice = reports / "Invoice 0142.pdf"
    invoice.write_bytes(b"%PDF invoice 0142")
    (reports / "rota.docx").write_bytes(b"rota")
    synced(qtbot, server, "/Reports/Invoice 0142.pdf", b"%PDF invoice 0142")
    synced(qtbot, server, "/Reports/rota.docx", b"rota")
    invoice.unlink()
    (reports / "rota.docx").unlink()
    qtbot.waitUntil(lambda: server.entry("/Reports/Invoice 0142.pdf") is None, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: server.entry("/Reports/rota.docx") is None, timeout=WAIT_MS)

    # From the history window's "Deleted files…" button.
    app.open_history()
    app.history_window().trash.click()
    window = app.undo.trash_window()
    assert window.isVisible()
    qtbot.waitUntil(lambda: window.model.rowCount() == 2, timeout=WAIT_MS)
    window.search.setText("invoice")
    qtbot.waitUntil(lambda: window.model.rowCount() == 1, timeout=WAIT_MS)
    item = window.model.item_at(0)
    assert item is not None and item["local"] == str(invoice) and not item["path_taken"]
    window.table.selectRow(0)
    with qtbot.waitSignal(window.restoreFinished, timeout=WAIT_MS) as finished:
        window.restore_button.click()
    assert finished.args == [1, 0]
    qtbot.waitUntil(lambda: invoice.exists(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: invoice.read_bytes() == b"%PDF invoice 0142", timeout=WAIT_MS)
    qtbot.waitUntil(lambda: window.model.rowCount() == 0, timeout=WAIT_MS)
    assert not (reports / "rota.docx").exists()  # only what was chosen came back


def test_restore_to_a_taken_place_says_so_and_restores_under_a_new_name(
    app: TrayApp, qtbot: QtBot, reports: Path, server: Server
) -> None:
    rota = reports / "rota.docx"
    rota.write_bytes(b"the old rota")
    synced(qtbot, server, "/Reports/rota.docx", b"the old rota")
    rota.unlink()
    qtbot.waitUntil(lambda: server.entry("/Reports/rota.docx") is None, timeout=WAIT_MS)
    rota.write_bytes(b"a new rota, made since")
    synced(qtbot, server, "/Reports/rota.docx", b"a new rota, made since")

    app.undo.open_trash()
    window = app.undo.trash_window()
    qtbot.waitUntil(lambda: window.select_local(str(rota)), timeout=WAIT_MS)
    window.restore_selected()
    qtbot.waitUntil(lambda: window.rename.isVisibleTo(window), timeout=WAIT_MS)
    assert "Something is already at" in window.rename.label.text()
    assert window.rename.name.text() == "rota (restored).docx"
    window.rename.restore_as.click()
    restored = reports / "rota (restored).docx"
    qtbot.waitUntil(lambda: restored.exists(), timeout=WAIT_MS)
    qtbot.waitUntil(lambda: restored.read_bytes() == b"the old rota", timeout=WAIT_MS)
    assert rota.read_bytes() == b"a new rota, made since"  # the new file is untouched
    assert window.rename.isHidden()


def conflict_on(app: TrayApp, name: str) -> IssueJSON | None:
    for issue in app.issues_model.issues():
        if issue["kind"] == "conflict" and issue["path"].lstrip("/") == name:
            return issue
    return None


def test_conflict_buttons_keep_both_mine_and_theirs(
    app: TrayApp, env: AgentEnv, qtbot: QtBot, reports: Path, server: Server
) -> None:
    names = ("both.txt", "mine.txt", "theirs.txt")
    for name in names:
        (reports / name).write_bytes(b"original")
    for name in names:
        synced(qtbot, server, f"/Reports/{name}", b"original")
    with env.client() as client:
        client.pause()
    qtbot.waitUntil(lambda: app.tray.icon_name == status.PAUSED, timeout=WAIT_MS)
    for name in names:
        (reports / name).write_bytes(b"edited here")
        entry = server.entry(f"/Reports/{name}")
        assert entry is not None
        server.put(f"/Reports/{name}", b"edited on the server", if_rev=entry["rev"])
    with env.client() as client:
        client.resume()
    qtbot.waitUntil(lambda: all(conflict_on(app, n) for n in names), timeout=WAIT_MS)
    # Every conflict copy is on the server, so "theirs" can send it to the trash.
    qtbot.waitUntil(
        lambda: sum("conflicted copy" in n for n in server.names("/Reports")) == 3,
        timeout=WAIT_MS,
    )

    def copy_of(name: str) -> Path:
        stem = Path(name).stem
        found = [p for p in reports.iterdir() if p.name.startswith(f"{stem} (conflicted copy")]
        assert len(found) == 1
        return found[0]

    copies = {name: copy_of(name) for name in names}
    app.open_issues()
    window = app.issues_window()

    def keep(name: str, choice: str) -> None:
        issue = conflict_on(app, name)
        assert issue is not None
        row = app.issues_model.issues().index(issue)
        window.table.selectRow(row)
        button = window.keep[choice]
        assert button.isVisibleTo(window) and button.toolTip()
        button.click()
        qtbot.waitUntil(lambda: not window.banner.text().startswith("Settling"), timeout=WAIT_MS)
        assert "Could not" not in window.banner.text()
        qtbot.waitUntil(lambda: conflict_on(app, name) is None, timeout=WAIT_MS)

    keep("both.txt", "both")
    assert (reports / "both.txt").read_bytes() == b"edited on the server"
    assert copies["both.txt"].read_bytes() == b"edited here"

    keep("mine.txt", "mine")
    qtbot.waitUntil(lambda: not copies["mine.txt"].exists(), timeout=WAIT_MS)
    assert (reports / "mine.txt").read_bytes() == b"edited here"
    synced(qtbot, server, "/Reports/mine.txt", b"edited here")

    keep("theirs.txt", "theirs")
    qtbot.waitUntil(lambda: not copies["theirs.txt"].exists(), timeout=WAIT_MS)
    assert (reports / "theirs.txt").read_bytes() == b"edited on the server"
    copy_name = copies["theirs.txt"].name
    qtbot.waitUntil(lambda: copy_name not in server.names("/Reports"), timeout=WAIT_MS)

    # Nothing was lost: the discarded copy waits in Deleted files.
    app.undo.open_trash(search="theirs (conflicted copy")
    trash = app.undo.trash_window()
    qtbot.waitUntil(lambda: trash.model.rowCount() == 1, timeout=WAIT_MS)
    assert trash.model.item_at(0)["name"] == copy_name  # type: ignore[index]
