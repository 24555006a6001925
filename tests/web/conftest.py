"""Fixtures for the web client's browser tests: one server and one Chromium per test
module (starting a browser costs seconds), and a page helper that starts each test
from the Files view with no dialog open."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
from selenium import webdriver

from dropline.server.settings import Settings
from tests.support.chromium import DESKTOP, chromium, set_viewport
from tests.support.live import LiveServer, running_server
from tests.web.pages import WebPage

ALICE = "alice@example.com"
MALLORY = "mallory@example.com"
WEB_SCOPES = ("files:read", "files:write", "transfers")


@pytest.fixture(scope="module")
def web_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("web-server") / "data", port=0)
    # Link transfers are made by the worker: let it look often.
    settings = replace(settings, worker_poll_seconds=0.05)
    with running_server(settings) as live:
        live.new_key(tenant="acme", email=ALICE)
        live.new_key(tenant="globex", email=MALLORY)
        yield live


@pytest.fixture(scope="module")
def browser_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The browser's profile and downloads folder."""
    return tmp_path_factory.mktemp("chromium")


@pytest.fixture(scope="module")
def browser(browser_dir: Path) -> Iterator[webdriver.Chrome]:
    with chromium(browser_dir) as driver:
        yield driver


@pytest.fixture
def page(browser: webdriver.Chrome, browser_dir: Path, web_server: LiveServer) -> WebPage:
    downloads = browser_dir / "downloads"
    for old in downloads.glob("*"):
        if old.is_file():
            old.unlink()
        else:
            shutil.rmtree(old)
    set_viewport(browser, *DESKTOP)
    return WebPage(browser, web_server.url, downloads)


@pytest.fixture
def alice_api(web_server: LiveServer) -> Iterator[httpx.Client]:
    """alice's own API client (an API key of the same user the browser signs in as)."""
    key = web_server.new_key(tenant="acme", email=ALICE, scopes=WEB_SCOPES)
    with httpx.Client(
        base_url=web_server.url,
        headers={"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"},
        timeout=60,
    ) as client:
        yield client
