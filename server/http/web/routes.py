"""The web client's routes: the page at ``/``, its sign-in and sign-out, and its static files.

Everything the page does to files goes through ``/api/v1`` with the session cookie
(dropline.server.http.auth), so tenant isolation and policy apply exactly as there.
"""

from __future__ import annotations

import logging
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter, Header, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import select

from dropline.server.audit import trail
from dropline.server.guard.security import Security
from dropline.server.http.auth import authenticate
from dropline.server.http.web import pages, signin, static
from dropline.server.identity import web_sessions
from dropline.server.identity.oauth.csrf import Csrf
from dropline.server.problems import Problem
from dropline.server.storage import schema

log = logging.getLogger(__name__)
router = APIRouter(include_in_schema=False)

LOGIN_PATH = "/web/login"
LOGOUT_PATH = "/web/logout"
SIGNED_OUT_PATH = "/web/signed-out"


def _security(request: Request) -> Security:
    security: Security = request.app.state.security
    return security


def _csrf(request: Request) -> Csrf:
    csrf: Csrf = request.app.state.csrf
    return csrf


def _sessions(request: Request) -> web_sessions.WebSessions:
    return web_sessions.WebSessions(request.app.state.db)


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _see_other(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303, headers={"Cache-Control": "no-store"})


def _account(request: Request, user_id: str) -> tuple[str, str]:
    with request.app.state.db.read() as conn:
        row = conn.execute(
            select(schema.users.c.email, schema.tenants.c.name)
            .join(schema.tenants, schema.tenants.c.id == schema.users.c.tenant_id)
            .where(schema.users.c.id == user_id)
        ).one()
    return row.email, row.name


# -- the page -----------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
def home(request: Request) -> Response:
    session_id = request.cookies.get(web_sessions.COOKIE)
    if not session_id or "authorization" in request.headers:
        return _see_other(LOGIN_PATH)
    try:
        # The same gate as every API call: the session, then policy and rate limits.
        principal = authenticate(request)
    except Problem as problem:
        if problem.status == 401:
            return _see_other(LOGIN_PATH)
        return pages.message(
            "Not available", problem.detail or problem.title, ok=False, status=problem.status
        )
    if principal.kind != "web":
        return _see_other(LOGIN_PATH)
    email, tenant = _account(request, principal.user_id)
    token = _csrf(request).token_for(web_sessions.csrf_subject(session_id))
    return pages.render("app.html", title="Files", email=email, tenant=tenant, csrf_token=token)


# -- signing in and out ---------------------------------------------------------------


@router.get(LOGIN_PATH)
def login(request: Request) -> Response:
    issuer = _security(request).issuer(request)
    begun = signin.start(_csrf(request), issuer)
    response = _see_other(begun.authorize_url)
    response.set_cookie(
        signin.LOGIN_COOKIE,
        begun.cookie,
        max_age=signin.LOGIN_SECONDS,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/web/",
    )
    return response


def _sign_in_again(title: str, text: str, status: int) -> HTMLResponse:
    return pages.message(title, text, ok=False, status=status, link=(LOGIN_PATH, "Sign in"))


@router.get("/web/callback")
async def callback(request: Request, code: str = "", state: str = "", error: str = "") -> Response:
    if error:
        if error == "access_denied":
            return _sign_in_again("Not signed in", "Signing in was cancelled.", 200)
        return _sign_in_again("Not signed in", f"The sign-in did not finish ({error}).", 400)
    csrf = _csrf(request)
    verifier = signin.verifier_for(csrf, request.cookies.get(signin.LOGIN_COOKIE), state)
    if verifier is None or not code:
        return _sign_in_again(
            "This sign-in expired",
            "This sign-in was not started in this browser, or took too long. Sign in again.",
            400,
        )
    security = _security(request)
    issuer = security.issuer(request)
    try:
        claims = await signin.exchange(request, security, issuer, code, verifier)
    except signin.SignInFailed as exc:
        return _sign_in_again("Not signed in", f"The sign-in failed: {exc}.", 400)
    session_id = await anyio.to_thread.run_sync(
        _sessions(request).create,
        claims.tenant_id,
        claims.subject,
        claims.grant_id,
        " ".join(sorted(claims.scopes)),
    )
    response = _see_other("/")
    response.set_cookie(
        web_sessions.COOKIE,
        session_id,
        httponly=True,
        samesite="lax",
        secure=_secure(request),
        path="/",
    )
    response.delete_cookie(signin.LOGIN_COOKIE, path="/web/")
    log.info("web session started for user %s", claims.subject)
    return response


@router.post(LOGOUT_PATH)
async def logout(request: Request) -> Response:
    form = await request.form()
    token = form.get("csrf_token")
    session_id = request.cookies.get(web_sessions.COOKIE)
    if session_id:
        subject = web_sessions.csrf_subject(session_id)
        if not _csrf(request).check(subject, token if isinstance(token, str) else None):
            # A cross-site form cannot sign anyone out; the page's own form can.
            return pages.message(
                "Not signed out",
                "The sign-out form could not be verified. Use the Sign out button on the page.",
                ok=False,
                status=403,
            )
        ended = await anyio.to_thread.run_sync(_sessions(request).end, session_id)
        if ended is not None:
            await anyio.to_thread.run_sync(_record_signout, request, ended)
    response = _see_other(SIGNED_OUT_PATH)
    response.delete_cookie(
        web_sessions.COOKIE, path="/", secure=_secure(request), httponly=True, samesite="lax"
    )
    return response


def _record_signout(request: Request, ended: web_sessions.WebSession) -> None:
    security = _security(request)
    ctx = security.audit_context(request).with_actor(
        ended.tenant_id, ended.user_id, ended.grant_id, "web"
    )
    with security.db.write() as conn:
        trail.record(conn, ctx, "auth.signout", "success", f"grant:{ended.grant_id}", {})


@router.get(SIGNED_OUT_PATH, response_class=HTMLResponse)
def signed_out() -> HTMLResponse:
    return pages.message(
        "Signed out",
        "You have signed out of Dropline in this browser.",
        ok=True,
        status=200,
        link=("/", "Sign in again"),
    )


# -- static files -------------------------------------------------------------------------


@router.get(static.PREFIX + "{name:path}")
def static_file(name: str, if_none_match: Annotated[str | None, Header()] = None) -> Response:
    return static.serve(name, if_none_match)
