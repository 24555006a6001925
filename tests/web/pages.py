"""Driving the web client in Chromium the way a person does: sign in on the server's
sign-in page, open folders, use a row's actions and the dialog, read the notice line.
Also ``fetch``: an API call from inside the page, with its session cookie."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from tests.support.browser import PASSWORD
from tests.support.chromium import visible, wait_for


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class WebPage:
    driver: webdriver.Chrome
    base: str
    downloads: Path

    # -- signing in and out --------------------------------------------------------------

    def sign_in(self, email: str, password: str = PASSWORD) -> None:
        """From wherever the browser is: signed out first if someone else is signed in."""
        self.driver.delete_all_cookies()
        self.driver.get(self.base + "/")
        wait_for(lambda: visible(self.driver, "input[name=email]"), what="the sign-in form")
        self.driver.find_element(By.NAME, "email").send_keys(email)
        self.driver.find_element(By.NAME, "password").send_keys(password)
        self.driver.find_element(By.CSS_SELECTOR, "button[value=allow]").click()
        wait_for(lambda: visible(self.driver, "#who"), what="the files page")
        self.wait_ready()

    def wait_ready(self) -> None:
        wait_for(
            lambda: self.driver.execute_script("return document.body.dataset.ready === 'true'"),
            what="the page's script",
        )

    def sign_out(self) -> None:
        self.driver.find_element(By.ID, "sign-out").click()
        wait_for(lambda: "/web/signed-out" in self.driver.current_url, what="the signed-out page")

    # -- the files view ------------------------------------------------------------------

    def open(self, hash_: str = "#files") -> None:
        """A fresh load of the page at ``hash_`` (not only a hash change: no dialog left)."""
        self.driver.get("about:blank")
        self.driver.get(f"{self.base}/{hash_}")
        self.wait_ready()

    def open_folder(self, path: str) -> None:
        from urllib.parse import quote

        self.open("#files" if path == "/" else f"#files={quote(path, safe='')}")

    def row(self, name: str, within: str = "#entries") -> WebElement | None:
        for element in self.driver.find_elements(By.CSS_SELECTOR, f"{within} li.item"):
            if element.get_attribute("data-name") == name and element.is_displayed():
                return element
        return None

    def wait_row(self, name: str, within: str = "#entries", timeout: float = 30) -> WebElement:
        return wait_for(lambda: self.row(name, within), timeout, f"the row {name!r} in {within}")

    def wait_no_row(self, name: str, within: str = "#entries") -> None:
        wait_for(lambda: self.row(name, within) is None, what=f"{name!r} to leave {within}")

    def row_action(self, name: str, action: str, within: str = "#entries") -> None:
        """A row's ⋯ button, then one action of the menu it opens."""
        self.wait_row(name, within).find_element(By.CSS_SELECTOR, "button.more").click()
        self.dialog_button(action).click()

    # -- the dialog and the notice -----------------------------------------------------

    def dialog_button(self, action: str) -> WebElement:
        return wait_for(
            lambda: visible(self.driver, f"#dialog[open] [data-action='{action}']"),
            what=f"the dialog's {action!r} button",
        )

    def dialog_input(self, index: int = 0) -> WebElement:
        def found() -> WebElement | None:
            inputs = [
                e
                for e in self.driver.find_elements(By.CSS_SELECTOR, "#dialog[open] input")
                if e.is_displayed()
            ]
            return inputs[index] if len(inputs) > index else None

        return wait_for(found, what="the dialog's input")

    def dialog_error(self) -> str:
        found = wait_for(lambda: visible(self.driver, "#dialog-error"), what="the dialog's error")
        return found.text

    def notice(self) -> str:
        found = wait_for(lambda: visible(self.driver, "#notice"), what="the notice line")
        return found.text

    def dialog_open(self) -> bool:
        return bool(self.driver.execute_script("return document.getElementById('dialog').open"))

    # -- the API from inside the page --------------------------------------------------

    def fetch(self, method: str, path: str, body: Any = None, csrf: bool = True) -> tuple[int, Any]:
        """``fetch`` in the page (its cookie goes along); the CSRF header only if ``csrf``."""
        result = self.driver.execute_async_script(
            """
            const [method, path, body, csrf, done] = arguments;
            const headers = {Accept: "application/json"};
            if (csrf) headers["X-CSRF-Token"] =
                document.querySelector('meta[name="csrf-token"]').content;
            if (body !== null) headers["Content-Type"] = "application/json";
            fetch(path, {method, headers, body: body === null ? undefined : JSON.stringify(body)})
              .then(async (r) => {
                const text = await r.text();
                let json = null;
                try { json = JSON.parse(text); } catch (e) { json = text; }
                done([r.status, json]);
              })
              .catch((e) => done([0, String(e)]));
            """,
            method,
            path,
            body,
            csrf,
        )
        return int(result[0]), result[1]
