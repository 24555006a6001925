"""Share links from the web client in Chromium: made with an expiry and an optional
password, copied, opened anonymously (a download page in a browser, today's JSON for
API clients), and revoked."""

from __future__ import annotations

import hashlib
from urllib.parse import urlsplit

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from tests.support.chromium import downloaded, visible, wait_for
from tests.web.conftest import ALICE
from tests.web.pages import WebPage
from tests.web.test_web_files import put


def make_link(page: WebPage, folder: str, name: str, password: str = "") -> str:
    """Through the page: the file's actions, Share link, Create link; returns the link."""
    page.open_folder(folder)
    page.row_action(name, "share")
    Select(page.driver.find_element(By.CSS_SELECTOR, "#dialog select")).select_by_visible_text(
        "1 day"
    )
    if password:
        page.driver.find_element(By.CSS_SELECTOR, "#dialog input[type=password]").send_keys(
            password
        )
    page.dialog_button("create-link").click()
    box = wait_for(lambda: visible(page.driver, "#dialog .link-url"), what="the new link")
    url = box.get_attribute("value")
    assert url is not None
    return url


def test_a_link_is_made_copied_opened_anonymously_and_revoked(
    page: WebPage, alice_api: httpx.Client
) -> None:
    data = b"%PDF-1.7 Northwind contract " * 5000
    put(alice_api, "/Contracts/Northwind.pdf", data)
    page.sign_in(ALICE)
    url = make_link(page, "/Contracts", "Northwind.pdf")
    assert url.startswith(page.base + "/s/")
    assert "expires" in page.driver.find_element(By.CSS_SELECTOR, "#dialog .ok").text
    copy = page.dialog_button("copy")
    copy.click()
    wait_for(lambda: copy.text == "Copied", what="the copy button to confirm")

    # Whoever got the link, with no account: API clients keep the JSON answer...
    listing = httpx.get(url)
    assert listing.status_code == 200
    assert listing.headers["content-type"].startswith("application/json")
    (shared,) = listing.json()["files"]
    assert shared["name"] == "Northwind.pdf"
    fetched = httpx.get(page.base + shared["url"])
    assert fetched.content == data
    # ...and a browser gets a download page.
    page.driver.delete_all_cookies()
    page.driver.get(url)
    assert "Files shared with you" in page.driver.find_element(By.TAG_NAME, "h1").text
    row = page.driver.find_element(By.CSS_SELECTOR, ".shared-files li")
    assert "Northwind.pdf" in row.text
    assert hashlib.sha256(data).hexdigest() in page.driver.page_source
    row.find_element(By.LINK_TEXT, "Download").click()
    assert downloaded(page.downloads, "Northwind.pdf").read_bytes() == data

    # Revoked from the Links view: refused to both.
    page.sign_in(ALICE)
    page.driver.find_element(By.ID, "tab-shares").click()
    item = page.wait_row("Northwind.pdf", within="#shares")
    assert "Live" in item.text
    assert item.find_element(By.CSS_SELECTOR, ".link-url").get_attribute("value") == url
    item.find_element(By.CSS_SELECTOR, "[data-action=revoke]").click()
    page.dialog_button("revoke").click()
    assert "revoked" in page.notice()
    wait_for(lambda: "Revoked" in page.wait_row("Northwind.pdf", within="#shares").text)
    assert httpx.get(url).status_code == 410
    assert httpx.get(page.base + shared["url"]).status_code == 410
    page.driver.get(url)
    assert "expired" in page.driver.find_element(By.TAG_NAME, "h1").text


def test_a_password_link_asks_on_its_page_and_never_in_the_address(
    page: WebPage, alice_api: httpx.Client
) -> None:
    data = b"payroll october"
    put(alice_api, "/HR/Payroll.pdf", data)
    page.sign_in(ALICE)
    url = make_link(page, "/HR", "Payroll.pdf", password="open sesame 42")
    token_path = urlsplit(url).path

    # API clients: today's 401 with a Basic challenge; a browser: a form, no native prompt.
    api = httpx.get(url)
    assert api.status_code == 401
    assert api.headers["www-authenticate"].startswith("Basic")
    html = httpx.get(url, headers={"Accept": "text/html"})
    assert html.status_code == 401
    assert "www-authenticate" not in html.headers
    assert 'type="password"' in html.text

    page.driver.delete_all_cookies()
    page.driver.get(url)
    page.driver.find_element(By.NAME, "password").send_keys("a wrong guess")
    page.driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    error = wait_for(lambda: visible(page.driver, ".error"), what="the wrong-password message")
    assert "not right" in error.text
    assert page.driver.current_url == url  # the password went in the body, not the address
    page.driver.find_element(By.NAME, "password").send_keys("open sesame 42")
    page.driver.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
    wait_for(lambda: visible(page.driver, ".shared-files"), what="the files")
    assert page.driver.current_url == url
    remembered = page.driver.get_cookie("dl_share")
    assert remembered is not None
    assert remembered["httpOnly"] is True
    assert remembered["path"] == token_path
    assert "open sesame" not in remembered["value"]
    page.driver.find_element(By.LINK_TEXT, "Download").click()
    assert downloaded(page.downloads, "Payroll.pdf").read_bytes() == data
    # The remembered password opens this link only, and a forged cookie opens nothing.
    forged = httpx.get(url, cookies={"dl_share": remembered["value"][:-4] + "AAAA"})
    assert forged.status_code == 401
