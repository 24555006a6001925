"""Screenshots of the web client for the docs: every page at 1280 px and 390 px wide.

Starts a server on loopback with a few files, versions, a deleted folder and share
links, signs in through the server's own sign-in page in headless Chromium, and saves
docs/screenshots/web-<page>-<width>.png.

    python -m tools.web_screenshots [--out DIR]
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import httpx
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from dropline.server.settings import Settings
from tests.server import tus
from tests.support.chromium import DESKTOP, PHONE, chromium, set_viewport, visible, wait_for
from tests.support.live import LiveServer, running_server
from tests.web.pages import WebPage

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "screenshots"
EMAIL = "ann@example.com"
FILES = {
    "/Reports/Q3 board pack.pdf": 2300,
    "/Reports/Budget 2026 draft.xlsx": 640,
    "/Reports/Minutes 2025-11-20.docx": 48,
    "/Reports/Supplier contract - Northwind.pdf": 1200,
    "/Reports/Logo refresh/brand guide.pdf": 3100,
    "/Inbox/Signed contract - Northwind.pdf": 1250,
    "/Staff rota November.docx": 95,
}


def log(message: str) -> None:
    print(f"web screenshots: {message}", file=sys.stderr, flush=True)


def seed(live: LiveServer) -> httpx.Client:
    key = live.new_key(
        tenant="acme", email=EMAIL, scopes=("files:read", "files:write", "transfers")
    )
    api = httpx.Client(
        base_url=live.url,
        # Published as an integration would: the versions dialog names the client.
        headers={
            "Authorization": f"Bearer {key}",
            "Tus-Resumable": "1.0.0",
            "User-Agent": "accounts-export/2.3",
        },
        timeout=60,
    )
    for path, kib in FILES.items():
        body = (path.encode() * (kib * 1024 // len(path) + 1))[: kib * 1024]
        assert tus.upload(api, path, body).status_code in (200, 201, 204)
    for draft in (b"first draft", b"second draft", b"third draft, final"):
        tus.upload(api, "/Reports/Budget 2026 draft.xlsx", draft * 20000)
    for path in ("/Old projects/Apollo/plan.txt", "/Old projects/Apollo/notes.txt"):
        tus.upload(api, path, b"apollo " * 3000)
    tus.upload(api, "/Invoice 2025-0142.pdf", b"%PDF invoice " * 900)
    for path in ("/Old projects", "/Invoice 2025-0142.pdf"):
        entry = api.get("/api/v1/metadata", params={"path": path}).json()
        api.delete(f"/api/v1/files/{entry['id']}")
    return api


def share_link(api: httpx.Client, path: str, password: str | None = None) -> str:
    entry = api.get("/api/v1/metadata", params={"path": path}).json()
    destination: dict[str, object] = {"type": "link", "expires_in": 7 * 86400}
    if password:
        destination["password"] = password
    started = api.post(
        "/api/v1/transfers", json={"file_ids": [entry["id"]], "destination": destination}
    ).json()
    done = wait_for(
        lambda: (
            (t := api.get(f"/api/v1/transfers/{started['id']}").json())["state"] == "completed"
            and t
        ),
        what="the share link",
    )
    url: str = done["result"]["url"]
    return url


def shoot(page: WebPage, out: Path, name: str, width: int) -> None:
    shot = page.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    target = out / f"web-{name}-{width}.png"
    target.write_bytes(base64.b64decode(shot["data"]))
    scrolls = page.driver.execute_script(
        "const e = document.documentElement; return e.scrollWidth > e.clientWidth;"
    )
    log(f"{target.name}{' (SCROLLS SIDEWAYS)' if scrolls else ''}")


def pages(page: WebPage, out: Path, width: int, links: tuple[str, str]) -> None:
    """Every page and dialog at the viewport's width."""
    driver = page.driver
    driver.delete_all_cookies()
    driver.get(page.base + "/")
    wait_for(lambda: visible(driver, "input[name=email]"))
    shoot(page, out, "signin", width)
    page.sign_in(EMAIL)
    wait_for(lambda: page.row("Reports"))
    shoot(page, out, "files", width)

    page.open_folder("/Reports")
    page.wait_row("Q3 board pack.pdf")
    shoot(page, out, "folder", width)
    page.wait_row("Budget 2026 draft.xlsx").find_element(By.CSS_SELECTOR, "button.more").click()
    wait_for(lambda: visible(driver, "#dialog[open]"))
    shoot(page, out, "actions", width)
    page.dialog_button("versions").click()
    wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "li.version")) >= 4)
    shoot(page, out, "versions", width)

    page.open_folder("/Reports")
    page.row_action("Supplier contract - Northwind.pdf", "share")
    Select(driver.find_element(By.CSS_SELECTOR, "#dialog select")).select_by_visible_text("30 days")
    shoot(page, out, "share-new", width)
    page.dialog_button("create-link").click()
    wait_for(lambda: visible(driver, "#dialog .link-url"))
    shoot(page, out, "share-made", width)

    page.open("#files")
    driver.find_element(By.ID, "search").send_keys("northwind")
    wait_for(lambda: "match" in driver.find_element(By.ID, "search-status").text)
    shoot(page, out, "search", width)

    page.open("#trash")
    page.wait_row("Old projects", within="#trash")
    shoot(page, out, "deleted", width)
    page.open("#shares")
    wait_for(lambda: driver.find_elements(By.CSS_SELECTOR, "#shares li.item"))
    shoot(page, out, "links", width)

    plain, protected = links
    driver.get(plain)
    wait_for(lambda: visible(driver, ".shared-files"))
    shoot(page, out, "share-page", width)
    driver.delete_all_cookies()
    driver.get(protected)
    wait_for(lambda: visible(driver, "input[name=password]"))
    shoot(page, out, "share-password", width)

    page.sign_in(EMAIL)
    page.sign_out()
    shoot(page, out, "signed-out", width)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dropline-web-shots-") as tmp:
        work = Path(tmp)
        settings = replace(Settings(data_dir=work / "server", port=0), worker_poll_seconds=0.05)
        with running_server(settings) as live, chromium(work / "chromium") as driver:
            api = seed(live)
            links = (
                share_link(api, "/Reports/Q3 board pack.pdf"),
                share_link(api, "/Inbox/Signed contract - Northwind.pdf", "open sesame 42"),
            )
            page = WebPage(driver, live.url, work / "chromium" / "downloads")
            for width, height in (DESKTOP, PHONE):
                set_viewport(driver, width, height)
                pages(page, args.out, width, links)
            api.close()
    log(f"saved into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
