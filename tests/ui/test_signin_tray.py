"""Signing in through the tray with a scripted browser, against the real server and agent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest
from PySide6.QtGui import QAction
from pytestqt.qtbot import QtBot

from tests.agent.scripted_browser import FormParser
from tests.agent.support import AgentEnv
from tests.support.live import LiveServer
from tests.ui.support import WAIT_MS, tray_for, write_agent_config

EMAIL = "alice@example.com"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def env(tmp_path: Path, live_server: LiveServer) -> Iterator[AgentEnv]:
    live_server.new_key(email=EMAIL, password=PASSWORD)  # creates the tenant and the user
    e = AgentEnv(tmp_path)
    write_agent_config(e, live_server.url, {"/Reports": tmp_path / "Reports"})
    # The agent opens "the browser" itself; this one signs in as alice and follows the redirect.
    e.use_scripted_browser(EMAIL, PASSWORD, tmp_path / "browser.log")
    yield e
    e.stop()


def test_sign_in_through_the_tray_then_sign_out(
    env: AgentEnv, qtbot: QtBot, live_server: LiveServer, tmp_path: Path
) -> None:
    env.start(wait=60)
    with tray_for(env, qtbot) as app:
        qtbot.waitUntil(lambda: _enabled(app.tray.action("sign-in")), timeout=WAIT_MS)
        app.tray.action("sign-in").trigger()  # type: ignore[union-attr]
        window = app.signin_window()
        assert window.isVisible()
        assert window.primary.text() == "Sign in again"  # folders are waiting: nothing lost
        window.primary.click()
        qtbot.waitUntil(lambda: window.state.get("state") == "signed_in", timeout=WAIT_MS)
        assert window.title.text() == "You are signed in"
        assert "Signed in" in window.banner.text()
        assert (tmp_path / "browser.log").read_text().startswith("200 ")
        with env.client() as client:
            assert client.signin_state()["state"] == "signed_in"

        qtbot.waitUntil(lambda: _enabled(app.tray.action("sign-out")), timeout=WAIT_MS)
        # The menu names the account as soon as the agent has learnt it from the server.
        qtbot.waitUntil(
            lambda: app.tray.action("sign-out").text() == f"Sign &out ({EMAIL})",  # type: ignore[union-attr]
            timeout=WAIT_MS,
        )
        app.tray.action("sign-out").trigger()  # type: ignore[union-attr]
        qtbot.waitUntil(lambda: _enabled(app.tray.action("sign-in")), timeout=WAIT_MS)
        with env.client() as client:
            assert client.signin_state()["state"] == "signed_out"
        assert window.title.text() == "You are signed out"
        assert window.primary.text() == "Sign in again"


def _enabled(action: QAction | None) -> bool:
    return action is not None and action.isEnabled()


def test_device_code_sign_in_shows_the_code_and_finishes(env: AgentEnv, qtbot: QtBot) -> None:
    env.start(wait=60)
    with tray_for(env, qtbot) as app:
        qtbot.waitUntil(lambda: _enabled(app.tray.action("sign-in")), timeout=WAIT_MS)
        app.open_signin()
        window = app.signin_window()
        window.device.click()
        qtbot.waitUntil(lambda: window.state.get("state") == "pending", timeout=WAIT_MS)
        code = window.code.text()
        assert code and code == window.state["user_code"]
        assert not window.code.isHidden() and not window.progress.isHidden()
        assert not window.primary.isEnabled()
        # The user approves on another device: the page the window links to.
        with httpx.Client(timeout=30) as http:
            page = http.get(window.state["url"])
            form = FormParser()
            form.feed(page.text)
            answer = http.post(
                urljoin(str(page.url), form.action or "/device"),
                data={
                    **form.fields,
                    "user_code": code,
                    "email": EMAIL,
                    "password": PASSWORD,
                    "decision": "allow",
                },
            )
            assert answer.status_code == 200
        qtbot.waitUntil(lambda: window.state.get("state") == "signed_in", timeout=WAIT_MS)
        assert window.code.isHidden()
        assert window.title.text() == "You are signed in"
