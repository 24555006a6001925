"""The web client's Files and Deleted views in Chromium: a 20 MB upload through the file
input (tus) listed with its size and downloaded intact, folders made, renamed, moved,
deleted and restored, an older version restored, search, the server's reasons shown,
and no sideways scrolling at 1280 or 390 px."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import httpx
from selenium.webdriver.common.by import By

from tests.server import tus
from tests.support.chromium import (
    DESKTOP,
    PHONE,
    downloaded,
    no_horizontal_scroll,
    set_viewport,
    visible,
    wait_for,
)
from tests.web.conftest import ALICE
from tests.web.pages import WebPage, sha256_file

MIB = 1024 * 1024


def put(api: httpx.Client, path: str, data: bytes) -> dict[str, Any]:
    done = tus.upload(api, path, data)
    assert done.status_code in (200, 201, 204), done.text
    entry: dict[str, Any] = api.get("/api/v1/metadata", params={"path": path}).json()
    return entry


def content(api: httpx.Client, path: str) -> bytes:
    entry_id = api.get("/api/v1/metadata", params={"path": path}).json()["id"]
    r = api.get(f"/api/v1/files/{entry_id}/content")
    assert r.status_code == 200, r.text
    return r.content


def test_a_20_mb_upload_is_listed_with_its_size_and_downloads_intact(
    page: WebPage, alice_api: httpx.Client, tmp_path: Path
) -> None:
    source = tmp_path / "Site survey.bin"
    source.write_bytes(os.urandom(20 * MIB))
    expected = sha256_file(source)
    page.sign_in(ALICE)
    page.driver.find_element(By.ID, "file-input").send_keys(str(source))
    row = page.wait_row("Site survey.bin", timeout=120)
    assert row.get_attribute("data-size") == str(20 * MIB)
    assert row.find_element(By.CSS_SELECTOR, ".size").text == "20 MB"
    upload = page.driver.find_element(By.CSS_SELECTOR, "#uploads li.upload")
    assert upload.find_element(By.CSS_SELECTOR, "progress").get_attribute("value") == "100"
    assert "Uploaded" in upload.text
    stored = alice_api.get("/api/v1/metadata", params={"path": "/Site survey.bin"}).json()
    assert stored["size"] == 20 * MIB
    assert stored["sha256"] == expected
    # Clicking the name downloads it through the browser, with the session cookie.
    row.find_element(By.CSS_SELECTOR, "a.name").click()
    assert sha256_file(downloaded(page.downloads, "Site survey.bin")) == expected


def test_a_folder_is_made_renamed_and_a_file_moved_into_it(
    page: WebPage, alice_api: httpx.Client
) -> None:
    put(alice_api, "/Inbox/minutes.txt", b"minutes of the meeting")
    page.sign_in(ALICE)
    page.driver.find_element(By.ID, "new-folder").click()
    page.dialog_input().send_keys("Board")
    page.dialog_button("create").click()
    page.wait_row("Board")
    page.row_action("Board", "rename")
    name = page.dialog_input()
    name.clear()
    name.send_keys("Board 2025")
    page.dialog_button("rename").click()
    page.wait_row("Board 2025")
    assert page.row("Board") is None
    page.driver.find_element(By.CSS_SELECTOR, "li.item[data-name='Inbox'] a.name").click()
    page.row_action("minutes.txt", "move")
    where = page.dialog_input()
    where.clear()
    where.send_keys("/Board 2025")
    page.dialog_button("move").click()
    assert "Moved to /Board 2025/minutes.txt" in page.notice()
    page.wait_no_row("minutes.txt")
    assert content(alice_api, "/Board 2025/minutes.txt") == b"minutes of the meeting"
    # The breadcrumbs lead back to the top.
    page.driver.find_element(By.LINK_TEXT, "My files").click()
    page.wait_row("Board 2025").find_element(By.CSS_SELECTOR, "a.name").click()
    page.wait_row("minutes.txt")


def test_a_refused_name_shows_the_servers_reason_and_changes_nothing(
    page: WebPage, alice_api: httpx.Client
) -> None:
    put(alice_api, "/notes.txt", b"notes")
    page.sign_in(ALICE)
    page.row_action("notes.txt", "rename")
    name = page.dialog_input()
    name.clear()
    name.send_keys("a\\b.txt")
    page.dialog_button("rename").click()
    assert "must not contain" in page.dialog_error()
    assert page.dialog_open()
    assert content(alice_api, "/notes.txt") == b"notes"


def test_a_deleted_folder_comes_back_with_its_files(page: WebPage, alice_api: httpx.Client) -> None:
    put(alice_api, "/Projects/Apollo/plan.txt", b"the plan")
    put(alice_api, "/Projects/Apollo/notes/day one.txt", b"day one")
    page.sign_in(ALICE)
    page.open_folder("/Projects")
    page.row_action("Apollo", "delete")
    page.dialog_button("delete").click()
    assert "moved to Deleted files" in page.notice()
    page.wait_no_row("Apollo")
    assert alice_api.get("/api/v1/metadata", params={"path": "/Projects/Apollo"}).status_code == 404

    page.driver.find_element(By.ID, "tab-trash").click()
    item = page.wait_row("Apollo", within="#trash")
    assert "2 files" in item.text
    assert page.row("plan.txt", within="#trash") is None  # only what the person deleted
    item.find_element(By.CSS_SELECTOR, "[data-action=restore]").click()
    assert "back at /Projects/Apollo" in page.notice()
    page.wait_no_row("Apollo", within="#trash")
    assert content(alice_api, "/Projects/Apollo/plan.txt") == b"the plan"
    assert content(alice_api, "/Projects/Apollo/notes/day one.txt") == b"day one"
    page.open_folder("/Projects/Apollo")
    page.wait_row("plan.txt")
    page.wait_row("notes")


def test_an_older_version_is_restored(page: WebPage, alice_api: httpx.Client) -> None:
    put(alice_api, "/Budget.xlsx", b"budget, first draft")
    put(alice_api, "/Budget.xlsx", b"budget, second draft with mistakes")
    page.sign_in(ALICE)
    page.row_action("Budget.xlsx", "versions")
    wait_for(lambda: len(page.driver.find_elements(By.CSS_SELECTOR, "li.version")) == 2)
    versions = page.driver.find_elements(By.CSS_SELECTOR, "li.version")
    assert "Current" in versions[0].text
    assert "Web" not in versions[0].text  # published through the API, not the web client
    assert ALICE in versions[1].text
    versions[1].find_element(By.CSS_SELECTOR, "[data-action=restore-version]").click()
    wait_for(lambda: len(page.driver.find_elements(By.CSS_SELECTOR, "li.version")) == 3)
    newest = page.driver.find_elements(By.CSS_SELECTOR, "li.version")[0]
    assert "Current" in newest.text
    assert "Web" in newest.text  # the restore was made by the web client
    assert content(alice_api, "/Budget.xlsx") == b"budget, first draft"
    # A past version downloads through the browser too.
    page.driver.find_elements(By.CSS_SELECTOR, "li.version [data-action=download-version]")[
        1
    ].click()
    got = downloaded(page.downloads, "Budget.xlsx")
    assert got.read_bytes() == b"budget, second draft with mistakes"


def test_search_finds_a_file_deep_in_the_folders(page: WebPage, alice_api: httpx.Client) -> None:
    put(alice_api, "/Accounts/2025/November/Invoice 7781.pdf", b"%PDF invoice")
    page.sign_in(ALICE)
    page.driver.find_element(By.ID, "search").send_keys("invoice 77")
    row = page.wait_row("Invoice 7781.pdf")
    assert row.find_element(By.CSS_SELECTOR, ".where").text == "/Accounts/2025/November"
    assert "1 match" in page.driver.find_element(By.ID, "search-status").text


def test_no_page_scrolls_sideways_at_1280_or_390_px(page: WebPage, alice_api: httpx.Client) -> None:
    long_name = "Quarterly report for the board of directors " * 3 + ".pdf"
    entry = put(alice_api, "/" + long_name.strip(), b"long")
    page.sign_in(ALICE)
    try:
        for width, height in (DESKTOP, PHONE):
            set_viewport(page.driver, width, height)
            for view in ("#files", "#trash", "#shares"):
                page.open(view)
                wait_for(lambda: visible(page.driver, "section.view:not([hidden])"))
                assert no_horizontal_scroll(page.driver), (width, view)
            page.open()
            page.row_action(entry["name"], "versions")
            wait_for(lambda: page.driver.find_elements(By.CSS_SELECTOR, "li.version"))
            assert no_horizontal_scroll(page.driver), (width, "versions dialog")
    finally:
        set_viewport(page.driver, *DESKTOP)


def test_static_files_come_from_the_server_itself(page: WebPage) -> None:
    page.sign_in(ALICE)
    sources = page.driver.execute_script(
        "return [...document.querySelectorAll('script[src], link[rel=stylesheet]')]"
        ".map((e) => e.src || e.href)"
    )
    assert sources and all(s.startswith(page.base + "/web/static/") for s in sources)
    tus_js = httpx.get(next(s for s in sources if "tus.min.js" in s))
    assert tus_js.status_code == 200
    assert "tus" in tus_js.text[:400]
    assert tus_js.headers["cache-control"].startswith("public")
    assert hashlib.sha256(tus_js.content).hexdigest()[:16] in next(
        s for s in sources if "tus.min.js" in s
    )


def test_files_dropped_on_the_page_are_uploaded_into_the_open_folder(
    page: WebPage, alice_api: httpx.Client
) -> None:
    put(alice_api, "/Drops/.keep", b"")
    page.sign_in(ALICE)
    page.open_folder("/Drops")
    wait_for(lambda: "/Drops" in page.driver.find_element(By.ID, "drop-where").text)
    # What the browser hands the page when a file from the desktop is let go over it.
    page.driver.execute_script(
        """
        const view = document.getElementById('view-files');
        const data = new DataTransfer();
        data.items.add(new File(['dropped on the page'], 'dropped note.txt'));
        for (const type of ['dragenter', 'dragover', 'drop']) {
          view.dispatchEvent(new DragEvent(type, {dataTransfer: data, bubbles: true,
                                                  cancelable: true}));
        }
        """
    )
    row = page.wait_row("dropped note.txt")
    assert row.get_attribute("data-size") == str(len(b"dropped on the page"))
    assert content(alice_api, "/Drops/dropped note.txt") == b"dropped on the page"
