"""Signing in to the web client in Chromium: the session cookie, CSRF on state-changing
calls, signing out, and another tenant's user seeing nothing of the first."""

from __future__ import annotations

import uuid

import httpx
from selenium.webdriver.common.by import By
from sqlalchemy import select

from dropline.server.identity.oauth.store import WEB_CLIENT
from dropline.server.storage import schema
from tests.server import tus
from tests.support.chromium import visible, wait_for
from tests.support.live import LiveServer
from tests.web.conftest import ALICE, MALLORY
from tests.web.pages import WebPage


def test_signing_in_lands_on_the_files_page_with_a_safe_cookie(page: WebPage) -> None:
    page.sign_in(ALICE)
    assert page.driver.current_url == page.base + "/"  # no code or token left in the address
    assert page.driver.find_element(By.ID, "who").text == ALICE
    cookie = page.driver.get_cookie("dl_session")
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Lax"
    assert cookie["path"] == "/"
    assert cookie["secure"] is False  # plain http on loopback; TLS: tests/server/identity
    assert "dl_session" not in page.driver.execute_script("return document.cookie")
    status, me = page.fetch("GET", "/api/v1/me")
    assert status == 200
    assert me["user"]["email"] == ALICE
    assert me["credential"]["kind"] == "web"
    assert set(me["scopes"]) == {"files:read", "files:write", "transfers"}


def test_a_state_changing_call_without_the_csrf_header_is_refused(page: WebPage) -> None:
    page.sign_in(ALICE)
    status, problem = page.fetch("POST", "/api/v1/folders", {"path": "/csrf-probe"}, csrf=False)
    assert status == 403
    assert problem["type"].endswith("/forbidden")
    assert "X-CSRF-Token" in problem["detail"]
    assert page.fetch("GET", "/api/v1/metadata?path=/csrf-probe")[0] == 404  # nothing made
    status, made = page.fetch("POST", "/api/v1/folders", {"path": "/csrf-probe"})
    assert status == 201
    assert made["path"] == "/csrf-probe"
    # The token is the page's own: another value does not pass either.
    forged = page.driver.execute_async_script(
        """
        const done = arguments[arguments.length - 1];
        fetch('/api/v1/folders', {method: 'POST', headers: {'X-CSRF-Token': 'f'.repeat(64),
              'Content-Type': 'application/json'}, body: JSON.stringify({path: '/forged'})})
          .then((r) => done(r.status));
        """
    )
    assert forged == 403


def test_another_tenants_user_sees_nothing_of_the_first(
    page: WebPage, alice_api: httpx.Client
) -> None:
    done = tus.upload(alice_api, "/private/salaries.xlsx", b"alice's numbers")
    assert done.status_code in (200, 201, 204), done.text
    entry = alice_api.get("/api/v1/metadata", params={"path": "/private/salaries.xlsx"}).json()
    folder = alice_api.get("/api/v1/metadata", params={"path": "/private"}).json()

    page.sign_in(MALLORY)
    missing = str(uuid.uuid4())
    for path in (
        f"/api/v1/files/{entry['id']}",
        f"/api/v1/files/{entry['id']}/content",
        f"/api/v1/files/{entry['id']}/revisions",
        f"/api/v1/files?parent_id={folder['id']}",
        "/api/v1/metadata?path=/private/salaries.xlsx",
    ):
        status, body = page.fetch("GET", path)
        assert status == 404, (path, body)
        # Exactly like an id that does not exist at all.
        twin = path.replace(entry["id"], missing).replace(folder["id"], missing)
        assert page.fetch("GET", twin)[0] == 404
    assert page.fetch("PATCH", f"/api/v1/files/{entry['id']}", {"name": "mine.xlsx"})[0] == 404
    assert page.fetch("DELETE", f"/api/v1/files/{entry['id']}")[0] == 404
    status, link = page.fetch(
        "POST", "/api/v1/transfers", {"file_ids": [entry["id"]], "destination": {"type": "link"}}
    )
    assert status == 404, link
    # The page itself: mallory's files are empty, and searching finds nothing of alice's.
    page.open()
    wait_for(lambda: visible(page.driver, "#files-empty"), what="an empty folder")
    assert page.row("private") is None
    page.driver.find_element(By.ID, "search").send_keys("salaries")
    wait_for(lambda: "0 matches" in page.driver.find_element(By.ID, "search-status").text)
    # alice still has everything.
    assert alice_api.get(f"/api/v1/files/{entry['id']}").json()["name"] == "salaries.xlsx"


def test_signing_out_ends_the_session_and_its_sign_in(
    page: WebPage, web_server: LiveServer
) -> None:
    page.sign_in(ALICE)
    session = page.driver.get_cookie("dl_session")
    assert session is not None
    grant_id = page.fetch("GET", "/api/v1/me")[1]["credential"]["id"]
    page.sign_out()
    assert "signed out" in page.driver.find_element(By.TAG_NAME, "main").text.lower()
    assert page.driver.get_cookie("dl_session") is None
    # The old cookie value is dead on the server, not only forgotten by the browser.
    me = httpx.get(web_server.url + "/api/v1/me", cookies={"dl_session": session["value"]})
    assert me.status_code == 401
    g = schema.oauth_grants
    with web_server.app.state.db.read() as conn:  # type: ignore[attr-defined]
        grant = conn.execute(select(g).where(g.c.id == grant_id)).one()
    assert grant.client_id == WEB_CLIENT
    assert grant.revoked_at is not None
    # Opening the client again asks for a sign-in.
    page.driver.get(page.base + "/")
    wait_for(lambda: visible(page.driver, "input[name=email]"), what="the sign-in form")


def test_cancelling_the_sign_in_says_so(page: WebPage) -> None:
    page.driver.delete_all_cookies()
    page.driver.get(page.base + "/")
    wait_for(lambda: visible(page.driver, "button[value=deny]")).click()
    text = wait_for(lambda: visible(page.driver, "main")).text
    assert "cancelled" in text
    again = page.driver.find_element(By.LINK_TEXT, "Sign in").get_attribute("href")
    assert again is not None and again.endswith("/web/login")
    assert page.driver.get_cookie("dl_session") is None
