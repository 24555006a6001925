"""The share link as a page, for a person who opens ``/s/{token}`` in a browser: the files
with their download buttons, or the password form when the link has a password.

API clients keep the JSON answer (dropline.server.http.routes.shares); only a request
that asks for HTML gets these pages. The password is posted in a form body, never put
in a URL; once it is right, the browser keeps it in a cookie for this link only
(``Path=/s/{token}``, HttpOnly), sealed with AES-GCM under a key derived from the
server's CSRF secret, so the download buttons work without asking again and the
password is checked again on every download.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable
from typing import Any

import anyio.to_thread
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.requests import Request

from dropline.server.http.web import pages
from dropline.server.identity.oauth.csrf import COOKIE as CSRF_COOKIE
from dropline.server.identity.oauth.csrf import Csrf
from dropline.server.problems import Problem
from dropline.server.transfers.shares import SHARE_PREFIX, Share, token_hash

PASSWORD_COOKIE = "dl_share"
PASSWORD_COOKIE_SECONDS = 3600
NONCE_BYTES = 12

# What a person sees for each refusal of the link (title, message).
REFUSALS = {
    "not-found": (
        "This link does not work",
        "There is no file behind this link. Check that it was copied whole.",
    ),
    "share-expired": (
        "This link has expired",
        "The link was revoked, or reached its time or download limit. "
        "Ask the sender for a new one.",
    ),
    "forbidden": (
        "This link cannot be opened here",
        "The sender allowed this link only from certain networks.",
    ),
}

OpenShare = Callable[[Request, str, str | None], Any]


def wants_html(request: Request) -> bool:
    """A browser navigating here (it asks for HTML first); API clients send */* or JSON."""
    accept = request.headers.get("accept", "").lower()
    return "text/html" in accept


def _csrf(request: Request) -> Csrf:
    csrf: Csrf = request.app.state.csrf
    return csrf


def _key(csrf: Csrf) -> bytes:
    return bytes.fromhex(csrf.token_for("share-password-cookie"))


def seal_password(csrf: Csrf, token: str, password: str) -> str:
    nonce = os.urandom(NONCE_BYTES)
    sealed = AESGCM(_key(csrf)).encrypt(nonce, password.encode("utf-8"), token_hash(token).encode())
    return base64.urlsafe_b64encode(nonce + sealed).decode("ascii")


def password_from_cookie(request: Request, token: str) -> str | None:
    """The password this browser gave for this link, if it holds one that opens."""
    value = request.cookies.get(PASSWORD_COOKIE)
    if not value:
        return None
    try:
        raw = base64.urlsafe_b64decode(value.encode("ascii"))
        plain = AESGCM(_key(_csrf(request))).decrypt(
            raw[:NONCE_BYTES], raw[NONCE_BYTES:], token_hash(token).encode()
        )
        return plain.decode("utf-8")
    except (ValueError, binascii.Error, InvalidTag, UnicodeError):
        return None


def _cookie_path(token: str) -> str:
    return f"{SHARE_PREFIX}{token}"


def _with_csrf(request: Request, response: HTMLResponse, cookie: str) -> HTMLResponse:
    response.set_cookie(
        CSRF_COOKIE,
        cookie,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


def refusal(problem: Problem) -> HTMLResponse:
    title, text = REFUSALS.get(problem.slug, ("This link cannot be opened", problem.detail or ""))
    return pages.message(title, text, ok=False, status=problem.status)


def password_form(
    request: Request, token: str, error: str | None = None, status: int = 401
) -> HTMLResponse:
    # 401 without a WWW-Authenticate challenge: the page asks, not the browser's own prompt.
    csrf = _csrf(request)
    cookie = request.cookies.get(CSRF_COOKIE) or csrf.new_cookie()
    response = pages.render(
        "share_password.html",
        status,
        title="Password needed",
        action=_cookie_path(token),
        csrf_token=csrf.token_for(cookie),
        error=error,
    )
    return _with_csrf(request, response, cookie)


def listing(share: Share, token: str) -> HTMLResponse:
    files = [{**f.public(), "url": f"{SHARE_PREFIX}{token}/files/{f.id}"} for f in share.files]
    left = None if share.max_downloads is None else max(0, share.max_downloads - share.downloads)
    return pages.render(
        "share.html",
        title="Files shared with you",
        files=files,
        expires_at=share.expires_at,
        downloads_left=left,
    )


async def show(request: Request, token: str, open_share: OpenShare) -> Response:
    try:
        share = await open_share(request, token, password_from_cookie(request, token))
    except Problem as problem:
        if problem.slug == "share-password":
            return password_form(request, token)
        return refusal(problem)
    return listing(share, token)


async def submit_password(request: Request, token: str, open_share: OpenShare) -> Response:
    form = await request.form()
    password = form.get("password")
    given = form.get("csrf_token")
    if not _csrf(request).check(
        request.cookies.get(CSRF_COOKIE), given if isinstance(given, str) else None
    ):
        return password_form(request, token, "The form expired. Enter the password again.", 400)
    if not isinstance(password, str) or not password:
        return password_form(request, token, "Enter the password the sender gave you.")
    try:
        await open_share(request, token, password)
    except Problem as problem:
        if problem.slug == "share-password":
            return password_form(request, token, "That password is not right. Try again.")
        return refusal(problem)
    sealed = await anyio.to_thread.run_sync(seal_password, _csrf(request), token, password)
    response = RedirectResponse(_cookie_path(token), status_code=303)
    response.set_cookie(
        PASSWORD_COOKIE,
        sealed,
        max_age=PASSWORD_COOKIE_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=_cookie_path(token),
    )
    return response


__all__ = ["password_from_cookie", "show", "submit_password", "wants_html"]
