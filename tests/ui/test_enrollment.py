"""The first sign-in of an agent IT set up: the policy names the server and the folders, there
is no credential, and the tray says "Sign in to Dropline" once (with the device code and
link when the policy asks for the device flow). Real server, real agent, real tray."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from pytestqt.qtbot import QtBot

from dropline.ui import enrollment
from dropline.ui.controller import TrayApp
from dropline.ui.notifications import Notice
from tests.agent.scripted_browser import FormParser
from tests.agent.support import AgentEnv
from tests.support.live import LiveServer
from tests.ui.support import WAIT_MS, tray_for

EMAIL = "alice@example.com"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def env(tmp_path: Path, live_server: LiveServer) -> Iterator[AgentEnv]:
    live_server.new_key(email=EMAIL, password=PASSWORD)  # the tenant and the user
    e = AgentEnv(tmp_path)
    yield e
    e.stop()


def write_policy(env: AgentEnv, server_url: str, inbox: Path, extra: str = "") -> None:
    # Made here: at start the agent does not yet create a policy folder that is missing.
    inbox.mkdir(parents=True, exist_ok=True)
    env.policy.write_text(
        f'server_url = "{server_url}"\n{extra}\n\n'
        f'[[folders]]\nlocal = "{inbox}"\nremote = "/inbox"\nmode = "download-only"\n'
    )


def prompts(notices: list[Notice]) -> list[Notice]:
    return [n for n in notices if n.title == enrollment.TITLE]


def collect(app: TrayApp) -> list[Notice]:
    notices: list[Notice] = []
    app.notifier.notice.connect(notices.append)
    return notices


def approve_on_another_device(url: str, code: str) -> None:
    """What the user does on their phone: the page the notice names, the code, allow."""
    with httpx.Client(timeout=30) as http:
        page = http.get(url)
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


def test_device_enrollment_shows_the_code_and_link_once_then_signs_in(
    env: AgentEnv, qtbot: QtBot, live_server: LiveServer, tmp_path: Path
) -> None:
    write_policy(env, live_server.url, tmp_path / "Inbox", 'enrollment = "device"')
    env.start(wait=60)
    with tray_for(env, qtbot) as app:
        notices = collect(app)
        qtbot.waitUntil(lambda: bool(prompts(notices)), timeout=WAIT_MS)
        (notice,) = prompts(notices)
        window = app.signin_window()
        assert window.state["state"] == "pending"  # the tray started the device flow itself
        code, url = window.state["user_code"], window.state["url"]
        with env.client() as client:
            agent_state = client.signin_state()
        assert (agent_state["user_code"], agent_state["url"]) == (code, url)
        assert code in notice.body and url in notice.body
        assert window.code.text() == code and not window.code.isHidden()
        assert url in window.link.text() and not window.link.isHidden()
        assert not window.isVisible()  # the notice leads; a click opens the window
        app.tray.icon.messageClicked.emit()
        assert window.isVisible() and window.code.text() == code

        approve_on_another_device(url, code)
        qtbot.waitUntil(lambda: window.state.get("state") == "signed_in", timeout=WAIT_MS)
        qtbot.waitUntil(lambda: bool(app.status and app.status.get("signed_in")), timeout=WAIT_MS)
        assert len(prompts(notices)) == 1


def test_browser_enrollment_invites_once_and_starts_nothing_by_itself(
    env: AgentEnv, qtbot: QtBot, live_server: LiveServer, tmp_path: Path
) -> None:
    write_policy(env, live_server.url, tmp_path / "Inbox")  # enrollment: the default, browser
    env.start(wait=60)
    with tray_for(env, qtbot) as app:
        notices = collect(app)
        qtbot.waitUntil(lambda: bool(prompts(notices)), timeout=WAIT_MS)
        (notice,) = prompts(notices)
        assert "Click here to sign in" in notice.body
        with env.client() as client:
            assert client.signin_state()["state"] == "signed_out"  # no flow was started
        app.tray.icon.messageClicked.emit()
        window = app.signin_window()
        assert window.isVisible() and window.primary.isEnabled()
        assert window.primary.text() in ("Sign in with browser", "Sign in again")

        # The agent restarts (an upgrade, a crash): the tray reconnects but does not ask again.
        env.stop()
        qtbot.waitUntil(lambda: app.status is None, timeout=WAIT_MS)
        env.start(wait=60)
        qtbot.waitUntil(lambda: app.status is not None, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: app.signin.get("state") == "signed_out", timeout=WAIT_MS)
        qtbot.wait(1000)  # the settings and status answers after reconnecting
        assert len(prompts(notices)) == 1


def test_an_agent_with_a_key_is_not_prompted(
    env: AgentEnv, qtbot: QtBot, live_server: LiveServer, tmp_path: Path
) -> None:
    env.extra_env["DROPLINE_API_KEY"] = live_server.new_key(email=EMAIL)
    write_policy(env, live_server.url, tmp_path / "Inbox", 'enrollment = "device"')
    env.start(wait=60)
    with tray_for(env, qtbot) as app:
        notices = collect(app)
        qtbot.waitUntil(lambda: bool(app.status and app.status.get("signed_in")), timeout=WAIT_MS)
        qtbot.wait(1000)
        assert prompts(notices) == []
        with env.client() as client:
            assert client.signin_state()["state"] == "signed_in"


def status(**overrides: Any) -> dict[str, Any]:
    base = {
        "state": "signed_out",
        "signed_in": False,
        "server_url": "https://mft.example.com",
        "folders": [{"local": "/home/ann/Inbox"}],
    }
    return {**base, **overrides}


@pytest.mark.parametrize(
    ("agent", "signin", "expected"),
    [
        (status(), {"state": "signed_out"}, True),
        (status(folders=[]), {"state": "signed_out"}, False),  # nothing to sync yet
        (status(server_url=None, state="error"), {"state": "signed_out"}, False),
        (status(), {"state": "pending"}, False),  # a sign-in is already under way
        (status(state="idle", signed_in=True), {"state": "signed_in"}, False),
        (None, {"state": "signed_out"}, False),  # not connected
    ],
)
def test_who_waits_for_a_first_credential(
    agent: dict[str, Any] | None, signin: dict[str, Any], expected: bool
) -> None:
    assert enrollment.waiting_for_credential(agent, signin) is expected


def test_prompt_carries_the_code_only_while_the_flow_is_pending() -> None:
    pending = {"state": "pending", "user_code": "WXYZ-1234", "url": "https://x.example/device"}
    assert "WXYZ-1234" in enrollment.prompt(pending).body
    assert "https://x.example/device" in enrollment.prompt(pending).body
    assert "WXYZ" not in enrollment.prompt({**pending, "state": "failed"}).body
    assert enrollment.prompt(pending).opens == "signin"
