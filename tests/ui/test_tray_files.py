"""Files through the tray: progress then history, pause/resume, a refused name, history tools.

A real server, a real agent (signed in with an API key) syncing real folders, and
the tray linked to it.
"""

from __future__ import annotations

import base64
import csv
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PySide6.QtGui import QAction
from pytestqt.qtbot import QtBot

from dropline.ui import status
from dropline.ui.controller import TrayApp
from tests.agent.support import AgentEnv
from tests.support.live import LiveServer
from tests.ui.support import WAIT_MS, tray_for, write_agent_config


@pytest.fixture
def folders(tmp_path: Path) -> dict[str, Path]:
    return {"/Reports": tmp_path / "Reports", "/Inbox": tmp_path / "Inbox"}


@pytest.fixture
def api_key_for_agent(live_server: LiveServer) -> str:
    return live_server.new_key()


@pytest.fixture
def env(
    tmp_path: Path, live_server: LiveServer, folders: dict[str, Path], api_key_for_agent: str
) -> Iterator[AgentEnv]:
    e = AgentEnv(tmp_path)
    write_agent_config(e, live_server.url, folders)
    e.extra_env["DROPLINE_API_KEY"] = api_key_for_agent
    e.start(wait=60)
    yield e
    e.stop()


@pytest.fixture
def app(env: AgentEnv, qtbot: QtBot) -> Iterator[TrayApp]:
    with tray_for(env, qtbot) as tray:
        qtbot.waitUntil(lambda: tray.summary.icon == status.IDLE, timeout=WAIT_MS)
        yield tray


def put_on_server(url: str, key: str, path: str, data: bytes) -> None:
    answer = httpx.post(
        f"{url}/api/v1/uploads",
        content=data,
        headers={
            "Authorization": f"Bearer {key}",
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(data)),
            "Upload-Metadata": "path " + base64.b64encode(path.encode()).decode(),
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert answer.status_code == 201, answer.text


def history_paths(app: TrayApp) -> list[str]:
    return [r["path"].lstrip("/") for r in app.history_model.rows()]


def test_dropped_file_is_a_progress_row_then_a_history_row(
    app: TrayApp, env: AgentEnv, qtbot: QtBot, folders: dict[str, Path]
) -> None:
    with env.client() as client:
        client.set_setting("bandwidth.upload_kbps", 256)  # slow enough to watch it move
    app.open_history()
    app.open_transfers()
    (folders["/Reports"] / "board pack.pdf").write_bytes(os.urandom(1536 * 1024))

    def moving() -> bool:
        return any(t.path.endswith("board pack.pdf") for t in app.transfers_model.active())

    qtbot.waitUntil(moving, timeout=WAIT_MS)
    assert app.summary.icon == status.SYNCING
    assert app.summary.headline.startswith("Uploading 1 file")
    window = app.transfers_window()
    assert window.stack.currentWidget() is window.table
    assert window.title.text() == "Uploading 1 file"

    qtbot.waitUntil(lambda: "board pack.pdf" in history_paths(app), timeout=WAIT_MS)
    row = app.history_model.rows()[0]
    assert (row["direction"], row["result"], row["size"]) == ("up", "ok", 1536 * 1024)
    qtbot.waitUntil(lambda: not app.transfers_model.transfers(), timeout=WAIT_MS)  # faded out
    qtbot.waitUntil(lambda: app.summary.icon == status.IDLE, timeout=WAIT_MS)


def test_pause_and_resume_show_in_the_icon_and_reach_the_agent(
    app: TrayApp, env: AgentEnv, qtbot: QtBot, folders: dict[str, Path]
) -> None:
    _trigger(app.tray.action("pause-all"))
    qtbot.waitUntil(lambda: app.tray.icon_name == status.PAUSED, timeout=WAIT_MS)
    assert app.tray.action("status").text() == "Paused"  # type: ignore[union-attr]
    with env.client() as client:
        assert client.status()["state"] == "paused"
    _trigger(app.tray.action("resume-all"))
    qtbot.waitUntil(lambda: app.tray.icon_name == status.IDLE, timeout=WAIT_MS)
    with env.client() as client:
        assert client.status()["state"] != "paused"

    inbox = str(folders["/Inbox"])
    _trigger(app.tray.action(f"pause-folder:{inbox}"))
    qtbot.waitUntil(lambda: app.tray.action(f"resume-folder:{inbox}") is not None, timeout=WAIT_MS)
    with env.client() as client:
        states = {f["local"]: f["state"] for f in client.status()["folders"]}
    assert states[inbox] == "paused"
    assert states[str(folders["/Reports"])] != "paused"
    assert app.tray.action("pause-all") is not None  # one folder still syncs


def test_refused_name_is_an_issue_and_clears_after_rename_and_retry(
    app: TrayApp, qtbot: QtBot, folders: dict[str, Path]
) -> None:
    bad = folders["/Reports"] / "Q4 plan\\draft.docx"
    bad.write_bytes(b"plan")
    qtbot.waitUntil(lambda: app.issues_model.rowCount() == 1, timeout=WAIT_MS)
    qtbot.waitUntil(lambda: app.summary.icon == status.ATTENTION, timeout=WAIT_MS)
    assert app.tray.action("issues").text() == "&Issues (1)…"  # type: ignore[union-attr]
    app.open_issues()
    window = app.issues_window()
    issue = window.selected_issue()
    assert issue is not None and issue["kind"] == "invalid-name"
    assert "\u201cQ4 plan\\draft.docx\u201d" in window.detail_message.text()
    assert window.detail_hint.text()

    bad.rename(folders["/Reports"] / "Q4 plan - draft.docx")
    if app.issues_model.rowCount():
        window.retry.click()
    qtbot.waitUntil(lambda: app.issues_model.rowCount() == 0, timeout=WAIT_MS)
    app.open_history()
    qtbot.waitUntil(lambda: "Q4 plan - draft.docx" in history_paths(app), timeout=WAIT_MS)
    assert window.stack.currentWidget() is window.empty
    qtbot.waitUntil(lambda: app.summary.icon == status.IDLE, timeout=WAIT_MS)


def test_history_filters_search_and_csv_export(
    app: TrayApp,
    qtbot: QtBot,
    folders: dict[str, Path],
    live_server: LiveServer,
    api_key_for_agent: str,
    tmp_path: Path,
) -> None:
    for name in ("Invoice 0142.pdf", "Invoice 0143.pdf", "rota.docx"):
        (folders["/Reports"] / name).write_bytes(os.urandom(2048))
    put_on_server(
        live_server.url, api_key_for_agent, "/Inbox/Invoice from Northwind.pdf", b"n" * 4096
    )
    app.open_history()
    window = app.history_window()
    qtbot.waitUntil(lambda: len(app.history_model.rows()) >= 4, timeout=WAIT_MS)

    window.direction.setCurrentIndex(window.direction.findData("down"))
    qtbot.waitUntil(lambda: history_paths(app) == ["Invoice from Northwind.pdf"], timeout=WAIT_MS)
    window.direction.setCurrentIndex(0)
    window.search.setText("invoice 014")
    window.apply_filters()
    qtbot.waitUntil(
        lambda: sorted(history_paths(app)) == ["Invoice 0142.pdf", "Invoice 0143.pdf"],
        timeout=WAIT_MS,
    )
    window.folder.setCurrentIndex(window.folder.findData(str(folders["/Inbox"])))
    qtbot.waitUntil(
        lambda: not app.history_model.is_loading() and history_paths(app) == [], timeout=WAIT_MS
    )
    assert window.empty.title.text() == "No matching transfers"
    window.folder.setCurrentIndex(0)

    out = tmp_path / "export.csv"
    with qtbot.waitSignal(window.exported, timeout=WAIT_MS):
        window.export_to(out)
    with out.open(encoding="utf-8-sig", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["path"].lstrip("/") for r in rows) == ["Invoice 0142.pdf", "Invoice 0143.pdf"]
    assert {r["direction"] for r in rows} == {"up"}
    assert all(int(r["size_bytes"]) == 2048 for r in rows)


def _trigger(action: QAction | None) -> None:
    assert action is not None and action.isEnabled()
    action.trigger()
