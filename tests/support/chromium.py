"""Headless Chromium for the web client's tests and screenshots: Debian's chromium and
chromedriver driven by Selenium, a fresh profile each time, downloads into a given
folder, and nothing fetched beyond the server under test (no sync, no updates, no
background networking)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--lang=en-GB",
)
DESKTOP = (1280, 900)
PHONE = (390, 844)

T = TypeVar("T")


@contextmanager
def chromium(workdir: Path, size: tuple[int, int] = DESKTOP) -> Iterator[webdriver.Chrome]:
    """A browser with its profile in ``workdir/profile`` and downloads in
    ``workdir/downloads``; quit when the block ends."""
    profile = workdir / "profile"
    downloads = workdir / "downloads"
    profile.mkdir(parents=True, exist_ok=True)
    downloads.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={size[0]},{size[1]}")
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False,
            "download.directory_upgrade": True,
            "safebrowsing.enabled": False,
        },
    )
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(downloads), "eventsEnabled": True},
        )
        set_viewport(driver, *size)
        yield driver
    finally:
        driver.quit()


def set_viewport(driver: webdriver.Chrome, width: int, height: int) -> None:
    """The page's layout width, exactly (a window's outer size includes its frame)."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600},
    )


def wait_for(check: Callable[[], T | None], timeout: float = 20, what: str = "") -> T:
    """Poll ``check`` until it returns something truthy (a vanished element counts as not yet)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            found = check()
        except WebDriverException as exc:
            found, last_error = None, exc
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(
        f"timed out waiting for {what or check}" + (f": {last_error}" if last_error else "")
    )


def visible(driver: webdriver.Chrome, css: str) -> WebElement | None:
    for element in driver.find_elements(By.CSS_SELECTOR, css):
        if element.is_displayed():
            return element
    return None


def downloaded(folder: Path, name: str, timeout: float = 60) -> Path:
    """The finished download called ``name`` (Chromium writes ``.crdownload`` first)."""

    def done() -> Path | None:
        path = folder / name
        partial = folder / (name + ".crdownload")
        return path if path.exists() and not partial.exists() else None

    return wait_for(done, timeout, f"the download of {name}")


def no_horizontal_scroll(driver: webdriver.Chrome) -> bool:
    result = driver.execute_script(
        "const e = document.documentElement; return e.scrollWidth <= e.clientWidth;"
    )
    return bool(result)


__all__ = [
    "DESKTOP",
    "PHONE",
    "chromium",
    "downloaded",
    "no_horizontal_scroll",
    "set_viewport",
    "visible",
    "wait_for",
]
