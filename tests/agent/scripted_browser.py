"""A scripted stand-in for the user's browser, run by ``webbrowser`` through $BROWSER.

It opens the authorize URL, fills the sign-in form with DROPLINE_TEST_EMAIL and
DROPLINE_TEST_PASSWORD, follows the redirect to the agent's loopback listener, and
writes what the last page said to DROPLINE_TEST_BROWSER_LOG.
"""

from __future__ import annotations

import os
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import httpx


class FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and a.get("type") == "hidden":
            self.fields[a["name"]] = a.get("value", "")


def sign_in(url: str) -> str:
    with httpx.Client(follow_redirects=False, timeout=30) as http:
        page = http.get(url)
        page.raise_for_status()
        form = FormParser()
        form.feed(page.text)
        data = {
            **form.fields,
            "email": os.environ["DROPLINE_TEST_EMAIL"],
            "password": os.environ["DROPLINE_TEST_PASSWORD"],
            "decision": "allow",
        }
        answer = http.post(urljoin(str(page.url), form.action or str(page.url)), data=data)
        if answer.status_code not in (302, 303):
            return f"no redirect: HTTP {answer.status_code}"
        landing = http.get(answer.headers["location"])
        return f"{landing.status_code} {landing.text}"


if __name__ == "__main__":
    outcome = sign_in(sys.argv[1])
    Path(os.environ["DROPLINE_TEST_BROWSER_LOG"]).write_text(outcome)
