"""Sign-in against the real server: PKCE with a scripted browser, device flow, logout revoking."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from dropline.agent.signin import BrowserSignIn, SignInError
from tests.agent.scripted_browser import FormParser
from tests.agent.support import AgentEnv, wait_for
from tests.support.browser import refresh_grant
from tests.support.live import LiveServer

EMAIL = "alice@example.com"
PASSWORD = "correct horse battery staple"
REFRESH_USER = "oauth-refresh-token"


@pytest.fixture
def env(tmp_path: Path, live_server: LiveServer) -> Iterator[AgentEnv]:
    live_server.new_key(email=EMAIL, password=PASSWORD)  # creates the tenant and the user
    e = AgentEnv(tmp_path)
    e.write_config(f'server_url = "{live_server.url}"\n')
    e.use_scripted_browser(EMAIL, PASSWORD, tmp_path / "browser.log")
    yield e
    e.stop()


def stored_refresh(env: AgentEnv, url: str) -> str | None:
    if not env.keyring_file.exists():
        return None
    entries: dict[str, str] = json.loads(env.keyring_file.read_text())
    return entries.get(f"dropline {url}\n{REFRESH_USER}")


def test_browser_login_through_the_running_agent(
    env: AgentEnv, live_server: LiveServer, tmp_path: Path
) -> None:
    env.start()
    result = env.cli("login")
    assert result.code == 0, result.err
    assert "signed in" in result.out and "/oauth/authorize?" in result.out
    page = (tmp_path / "browser.log").read_text()
    assert page.startswith("200 ") and "You can close this tab" in page
    token = stored_refresh(env, live_server.url)
    assert token
    with env.client() as c:
        assert c.signin_state()["state"] == "signed_in"
    assert token not in env.log_text()
    assert refresh_grant(live_server.url, token).status_code == 200


def test_browser_login_with_the_agent_stopped_fills_the_keyring(
    env: AgentEnv, live_server: LiveServer
) -> None:
    result = env.cli("login")
    assert result.code == 0, result.err
    token = stored_refresh(env, live_server.url)
    assert token and refresh_grant(live_server.url, token).status_code == 200


def test_device_login_through_the_control_socket(env: AgentEnv, live_server: LiveServer) -> None:
    env.start()
    with env.client() as c:
        state = c.signin_start(device=True)
        assert state["state"] == "pending" and state["user_code"]
        # The user, on another device, opens the URL and approves.
        with httpx.Client(timeout=30) as http:
            page = http.get(state["url"])
            form = FormParser()
            form.feed(page.text)
            answer = http.post(
                urljoin(str(page.url), form.action or "/device"),
                data={
                    **form.fields,
                    "user_code": state["user_code"],
                    "email": EMAIL,
                    "password": PASSWORD,
                    "decision": "allow",
                },
            )
            assert answer.status_code == 200
        final = wait_for(lambda: (s := c.signin_state())["state"] != "pending" and s, timeout=60)
    assert final["state"] == "signed_in", final
    token = stored_refresh(env, live_server.url)
    assert token and refresh_grant(live_server.url, token).status_code == 200


def test_logout_revokes_the_sign_in_at_the_server(env: AgentEnv, live_server: LiveServer) -> None:
    assert env.cli("login").code == 0
    token = stored_refresh(env, live_server.url)
    assert token
    env.start()
    result = env.cli("logout")
    assert result.code == 0, result.err
    assert stored_refresh(env, live_server.url) is None
    answer = refresh_grant(live_server.url, token)
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant"
    with env.client() as c:
        assert c.status()["state"] == "signed_out"


def test_callback_with_a_wrong_state_is_refused_and_the_real_one_accepted(
    live_server: LiveServer,
) -> None:
    async def scenario() -> tuple[int, str]:
        async with httpx.AsyncClient(timeout=30) as http:
            flow = BrowserSignIn(http, live_server.url)
            await flow.start()
            forged = await http.get(f"{flow.redirect_uri}?code=stolen&state=guess")
            finish = asyncio.create_task(flow.finish(timeout=1))
            await asyncio.sleep(0)
            with pytest.raises(SignInError):
                await finish
            return forged.status_code, forged.text

    status, text = asyncio.run(scenario())
    assert status == 400 and "not valid" in text
