"""A scripted browser for the OAuth pages, and a real loopback listener for redirects.

The browser is httpx with a cookie jar: it reads the sign-in form's fields the
way a browser would (stdlib HTML parser), fills them in and posts them.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

PASSWORD = "correct horse battery staple"


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = a.get("action", "")
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value", "")

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(data.strip())


def parse_form(html: str) -> tuple[str, dict[str, str], str]:
    """(form action, input fields with their values, visible text)."""
    parser = _FormParser()
    parser.feed(html)
    assert parser.action is not None, "the page has no form"
    return parser.action, parser.fields, " ".join(parser.text)


def page_text(html: str) -> str:
    parser = _FormParser()
    parser.feed(html)
    return " ".join(parser.text)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class LoopbackListener:
    """The desktop agent's side of RFC 8252: an HTTP server on 127.0.0.1, any port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        received: list[dict[str, list[str]]] = []
        self.received = received

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                received.append(parse_qs(urlsplit(self.path).query))
                body = b"Signed in. You can close this window."
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = HTTPServer((host, 0), Handler)
        self.port = self.server.server_address[1]
        self.redirect_uri = f"http://127.0.0.1:{self.port}/callback"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LoopbackListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def params(self) -> dict[str, str]:
        assert self.received, "the browser never reached the loopback listener"
        return {k: v[0] for k, v in self.received[-1].items()}


def authorize_url(
    base: str,
    redirect_uri: str,
    challenge: str,
    state: str = "st-1",
    scope: str | None = "files:read files:write",
    client_id: str = "dropline-desktop",
    method: str | None = "S256",
) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "code_challenge": challenge,
        "state": state,
    }
    if method is not None:
        params["code_challenge_method"] = method
    if scope is not None:
        params["scope"] = scope
    return f"{base}/oauth/authorize?{urlencode(params)}"


def sign_in(
    browser: httpx.Client, url: str, email: str, password: str = PASSWORD, organisation: str = ""
) -> httpx.Response:
    """Open the sign-in page and submit it; returns the form post's response."""
    page = browser.get(url)
    assert page.status_code == 200, page.text
    action, fields, _ = parse_form(page.text)
    fields.update(email=email, password=password, organisation=organisation, decision="allow")
    return browser.post(action, data=fields)


def pkce_tokens(
    base: str, email: str, scope: str | None = "files:read files:write", password: str = PASSWORD
) -> dict[str, Any]:
    """The whole desktop flow: loopback listener, browser sign-in, code exchange."""
    verifier, challenge = pkce_pair()
    with LoopbackListener() as listener, httpx.Client(base_url=base) as browser:
        done = sign_in(
            browser,
            authorize_url(base, listener.redirect_uri, challenge, scope=scope),
            email,
            password,
        )
        assert done.status_code == 302, done.text
        httpx.get(done.headers["location"])
        code = listener.params()["code"]
        response = httpx.post(
            f"{base}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": listener.redirect_uri,
                "client_id": "dropline-desktop",
                "code_verifier": verifier,
            },
        )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def refresh_grant(base: str, refresh_token: str, **form: str) -> httpx.Response:
    """The refresh_token grant at /oauth/token as the desktop client; ``form`` adds fields."""
    return httpx.post(
        f"{base}/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": "dropline-desktop",
            **form,
        },
    )


@contextmanager
def browser(base: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base) as client:
        yield client
