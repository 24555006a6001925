"""The tray against a real agent process: connection, sign-out state, settings, policy, restarts."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from dropline.ui import status
from dropline.ui.settings import LOCKED_TEXT
from tests.agent.support import AgentEnv
from tests.support.live import LiveServer
from tests.ui.support import WAIT_MS, tray_for, write_agent_config


@pytest.fixture
def env(tmp_path: Path, live_server: LiveServer) -> Iterator[AgentEnv]:
    """A signed-out agent (no credential) with one sync folder, not started yet."""
    e = AgentEnv(tmp_path)
    write_agent_config(e, live_server.url, {"/Reports": tmp_path / "Reports"})
    yield e
    e.stop()


def test_tray_shows_the_signed_out_agent_and_its_folder(env: AgentEnv, qtbot: QtBot) -> None:
    env.start(wait=60)
    with tray_for(env, qtbot) as app:
        qtbot.waitUntil(lambda: app.summary.icon == status.SIGNED_OUT, timeout=WAIT_MS)
        tray = app.tray
        assert tray.icon_name == "signed-out"
        assert tray.action("status").text() == "Signed out"  # type: ignore[union-attr]
        assert "Sign in again" in tray.icon.toolTip()
        assert tray.action("sign-in") is not None and tray.action("sign-out") is None
        open_folder = tray.action(f"open-folder:{env.home.parent / 'Reports'}")
        assert open_folder is not None and open_folder.text() == "Open Reports"
        open_folder.trigger()
        assert app.opener.paths == [env.home.parent / "Reports"]  # type: ignore[attr-defined]


def test_locked_setting_is_disabled_and_says_who_set_it(env: AgentEnv, qtbot: QtBot) -> None:
    env.policy.write_text('locked = ["bandwidth"]\n\n[bandwidth]\nupload_kbps = 512\n')
    env.start(wait=60)
    with tray_for(env, qtbot) as app:
        qtbot.waitUntil(lambda: app.summary.icon == status.SIGNED_OUT, timeout=WAIT_MS)
        app.open_settings()
        window = app.settings_window()
        qtbot.waitUntil(lambda: window.upload_limit.value() == 512, timeout=WAIT_MS)
        assert not window.upload_limit.isEnabled()
        assert not window.download_limit.isEnabled()
        assert not window.notes["bandwidth.upload_kbps"].isHidden()
        assert window.notes["bandwidth.upload_kbps"].text() == LOCKED_TEXT
        assert window.upload_limit.toolTip() == LOCKED_TEXT
        assert window.notifications.isEnabled()
        assert window.notes["notifications"].isHidden()

        window.notifications.setChecked(False)  # an unlocked key goes to the agent at once
        with env.client() as client:
            qtbot.waitUntil(
                lambda: client.settings()["notifications"]["value"] is False, timeout=WAIT_MS
            )
        assert "notifications = false" in env.paths.config.read_text()
        qtbot.waitUntil(lambda: not app.notifier.enabled, timeout=WAIT_MS)


def test_policy_that_forbids_adding_folders_disables_add(env: AgentEnv, qtbot: QtBot) -> None:
    env.policy.write_text("allow_add_folders = false\n")
    env.start(wait=60)
    with tray_for(env, qtbot) as app:
        app.open_settings()
        window = app.settings_window()
        qtbot.waitUntil(lambda: not window.add_folder.isEnabled(), timeout=WAIT_MS)
        assert window.add_folder.toolTip() == LOCKED_TEXT
        assert "set by your administrator" in window.folders_note.text()


def test_folders_added_and_removed_from_settings_reach_the_agent(
    env: AgentEnv, qtbot: QtBot, tmp_path: Path
) -> None:
    env.start(wait=60)
    with tray_for(env, qtbot) as app:
        app.open_settings()
        window = app.settings_window()
        qtbot.waitUntil(lambda: window.folder_table.rowCount() == 1, timeout=WAIT_MS)
        inbox = tmp_path / "Inbox"
        app.add_folder({"local": str(inbox), "remote": "/inbox", "mode": "download-only"})
        qtbot.waitUntil(lambda: window.folder_table.rowCount() == 2, timeout=WAIT_MS)
        assert window.folder_table.item(1, 2).text() == "Download only (inbox)"  # type: ignore[union-attr]
        with env.client() as client:
            assert [f["remote"] for f in client.folders()] == ["/Reports", "/inbox"]

        window.folder_table.selectRow(1)
        assert window.remove_folder.isEnabled()
        window.remove_folder.click()
        qtbot.waitUntil(lambda: window.folder_table.rowCount() == 1, timeout=WAIT_MS)
        with env.client() as client:
            assert [f["remote"] for f in client.folders()] == ["/Reports"]


def test_bad_folder_is_refused_with_the_agents_reason_and_nothing_changes(
    env: AgentEnv, qtbot: QtBot, tmp_path: Path
) -> None:
    env.start(wait=60)
    with tray_for(env, qtbot) as app:
        app.open_settings()
        window = app.settings_window()
        qtbot.waitUntil(lambda: window.folder_table.rowCount() == 1, timeout=WAIT_MS)
        app.add_folder(
            {"local": str(tmp_path / "Reports" / "sub"), "remote": "/x", "mode": "two-way"}
        )
        qtbot.waitUntil(lambda: window.banner.text() != "", timeout=WAIT_MS)
        assert "overlaps" in window.banner.text() or "inside" in window.banner.text()
        with env.client() as client:
            assert len(client.folders()) == 1


def test_killing_the_agent_shows_connecting_then_recovers(env: AgentEnv, qtbot: QtBot) -> None:
    proc = env.start(wait=60)
    with tray_for(env, qtbot) as app:
        qtbot.waitUntil(lambda: app.summary.icon == status.SIGNED_OUT, timeout=WAIT_MS)
        history = app.history_window()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if proc.stderr is not None:
            proc.stderr.close()
        qtbot.waitUntil(lambda: app.summary.headline.startswith("Connecting"), timeout=WAIT_MS)
        assert app.tray.icon_name == status.OFFLINE
        assert not app.tray.action("pause-all").isEnabled()  # type: ignore[union-attr]
        assert history.connection_banner.isVisibleTo(history)
        assert "Connecting" in history.connection_banner.text()

        env.start(wait=60)
        qtbot.waitUntil(lambda: app.summary.icon == status.SIGNED_OUT, timeout=WAIT_MS)
        assert app.link.is_connected
        assert not history.connection_banner.isVisibleTo(history)


def test_tray_starts_a_missing_agent_and_stops_only_that_one_on_quit(
    env: AgentEnv, qtbot: QtBot
) -> None:
    with tray_for(env, qtbot, start_agent=True) as app:
        qtbot.waitUntil(lambda: app.link.is_connected, timeout=WAIT_MS)
        pid = app.link.started_pid
        assert pid is not None
        with env.client() as client:
            assert client.hello()["pid"] == pid
        app.quit()
        qtbot.waitUntil(lambda: not _alive(pid), timeout=WAIT_MS)
        assert not env.paths.socket.exists()


def test_quitting_leaves_a_service_agent_running(env: AgentEnv, qtbot: QtBot) -> None:
    proc = env.start(wait=60)
    with tray_for(env, qtbot, start_agent=True) as app:
        qtbot.waitUntil(lambda: app.link.is_connected, timeout=WAIT_MS)
        assert app.link.started_pid is None
        app.quit()
    assert proc.poll() is None
    with env.client() as client:
        assert client.hello()["pid"] == proc.pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie child still answers kill(0); it is gone once its status is collectable.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True  # not our child (the launcher detached it): it exists
    return done == 0
