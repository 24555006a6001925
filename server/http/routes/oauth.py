"""OAuth 2.0 endpoints and the two HTML pages (sign-in, device code).

Thin: forms are read here, then Authlib (through :mod:`dropline.server.identity.oauth.server`)
does the protocol in a worker thread, since storage is synchronous.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from dropline.server.audit import trail
from dropline.server.guard.security import Security
from dropline.server.identity.oauth.csrf import COOKIE, Csrf
from dropline.server.identity.oauth.server import GrantUser, OAuthRequest, current_issuer
from dropline.server.identity.oauth.signin import SignInError, check_password
from dropline.server.identity.oauth.store import ALL_SCOPES, normalise_user_code

log = logging.getLogger(__name__)
router = APIRouter(tags=["oauth"])
T = TypeVar("T")

_templates = Environment(
    loader=PackageLoader("dropline.server", "templates"), autoescape=select_autoescape(["html"])
)
AUTHORIZE_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
)
SCOPE_TEXT = {
    "files:read": "see and download your files",
    "files:write": "upload, change and delete your files",
    "transfers": "start and manage transfers",
    "webhooks": "manage webhooks",
    "audit:read": "read your organisation's audit trail",
    "admin": "administer your organisation",
}
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "Referrer-Policy": "no-referrer",
}
# Token endpoint errors that mean a wrong secret or a stolen/guessed code.
CREDENTIAL_ERRORS = {"invalid_client", "invalid_grant"}


def _security(request: Request) -> Security:
    security: Security = request.app.state.security
    return security


def _csrf(request: Request) -> Csrf:
    csrf: Csrf = request.app.state.csrf
    return csrf


async def _in_thread(issuer: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    def run() -> T:
        current_issuer.set(issuer)
        return fn(*args, **kwargs)

    return await run_in_threadpool(run)


def _oauth_request(
    request: Request,
    issuer: str,
    query: list[tuple[str, str]],
    form: list[tuple[str, str]],
    method: str | None = None,
) -> OAuthRequest:
    uri = issuer + request.url.path
    return OAuthRequest(
        method or request.method,
        uri,
        request.headers,
        query,
        form,
        _security(request).audit_context(request),
    )


def _to_response(result: tuple[int, Any, list[tuple[str, str]]]) -> Response:
    status, body, headers = result
    if isinstance(body, dict):
        return JSONResponse(body, status_code=status, headers=dict(headers))
    return Response(body or b"", status_code=status, headers=dict(headers))


async def _form(request: Request) -> list[tuple[str, str]]:
    form = await request.form()
    return [(k, v) for k, v in form.multi_items() if isinstance(v, str)]


# -- the forms these endpoints read by hand, for the OpenAPI document ----------------------

_FORM = "application/x-www-form-urlencoded"


def _form_doc(required: list[str], fields: dict[str, dict[str, Any]]) -> dict[str, Any]:
    schema = {"type": "object", "required": required, "properties": fields}
    return {"requestBody": {"required": True, "content": {_FORM: {"schema": schema}}}}


_TEXT: dict[str, Any] = {"type": "string"}
_GRANT_TYPES = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:device_code",
]
_AUTHORIZE_QUERY: dict[str, dict[str, Any]] = {
    "response_type": {"type": "string", "enum": ["code"]},
    "client_id": _TEXT,
    "redirect_uri": _TEXT,
    "scope": _TEXT,
    "state": _TEXT,
    "code_challenge": {"type": "string", "pattern": "^[A-Za-z0-9._~-]{43,128}$"},
    "code_challenge_method": {"type": "string", "enum": ["S256"]},
}
_SIGNIN_FIELDS: dict[str, dict[str, Any]] = {
    "csrf_token": _TEXT,
    "email": _TEXT,
    "organisation": _TEXT,
    "password": {"type": "string", "format": "password"},
    "decision": {"type": "string", "enum": ["allow", "deny"]},
}
OAUTH_DOC: dict[str, dict[str, Any]] = {
    "authorize_get": {
        "parameters": [
            {"name": name, "in": "query", "required": name != "state", "schema": schema}
            for name, schema in _AUTHORIZE_QUERY.items()
        ]
    },
    "authorize_post": _form_doc(
        ["csrf_token", "response_type", "client_id"], {**_SIGNIN_FIELDS, **_AUTHORIZE_QUERY}
    ),
    "token": _form_doc(
        ["grant_type"],
        {
            "grant_type": {"type": "string", "enum": _GRANT_TYPES},
            "code": _TEXT,
            "redirect_uri": _TEXT,
            "code_verifier": _TEXT,
            "refresh_token": _TEXT,
            "device_code": _TEXT,
            "client_id": _TEXT,
            "client_secret": _TEXT,
            "scope": _TEXT,
        },
    ),
    "device_authorization": _form_doc(["client_id"], {"client_id": _TEXT, "scope": _TEXT}),
    "revoke": _form_doc(
        ["token"],
        {
            "token": _TEXT,
            "token_type_hint": {"type": "string", "enum": ["access_token", "refresh_token"]},
            "client_id": _TEXT,
            "client_secret": _TEXT,
        },
    ),
    "device_post": _form_doc(["csrf_token", "user_code"], {"user_code": _TEXT, **_SIGNIN_FIELDS}),
}


def _page(
    request: Request, template: str, status: int = 200, cookie: str | None = None, **ctx: Any
) -> HTMLResponse:
    csrf = _csrf(request)
    cookie = cookie or request.cookies.get(COOKIE) or csrf.new_cookie()
    html = _templates.get_template(template).render(csrf_token=csrf.token_for(cookie), **ctx)
    response = HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)
    response.set_cookie(
        COOKIE,
        cookie,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


def _message(request: Request, title: str, message: str, ok: bool, status: int) -> HTMLResponse:
    return _page(request, "message.html", status, title=title, message=message, ok=ok, hint=None)


def _record_signin_failure(request: Request, reason: str, email: str) -> None:
    security = _security(request)
    ctx = security.audit_context(request).with_actor(None, email or None, None, "password")
    with security.db.write() as conn:
        trail.record_with_event(
            conn, ctx, "auth.signin", "failure", "auth.failed", request.url.path, {"reason": reason}
        )
    security.defender.failure(security.client_ip(request))


def _record_signin(request: Request, user: GrantUser, action: str, detail: dict[str, Any]) -> None:
    security = _security(request)
    ctx = security.audit_context(request).with_actor(user.tenant_id, user.user_id, None, "password")
    with security.db.write() as conn:
        trail.record(conn, ctx, action, "success", request.url.path, detail)


# -- discovery -------------------------------------------------------------------------


@router.get("/.well-known/oauth-authorization-server")
def metadata(request: Request) -> JSONResponse:
    issuer = _security(request).issuer(request)
    doc = AuthorizationServerMetadata(
        {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/oauth/authorize",
            "token_endpoint": f"{issuer}/oauth/token",
            "device_authorization_endpoint": f"{issuer}/oauth/device_authorization",
            "revocation_endpoint": f"{issuer}/oauth/revoke",
            "jwks_uri": f"{issuer}/.well-known/jwks.json",
            "scopes_supported": list(ALL_SCOPES),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": [
                "authorization_code",
                "refresh_token",
                "client_credentials",
                "urn:ietf:params:oauth:grant-type:device_code",
            ],
            "token_endpoint_auth_methods_supported": [
                "none",
                "client_secret_basic",
                "client_secret_post",
            ],
            "revocation_endpoint_auth_methods_supported": [
                "none",
                "client_secret_basic",
                "client_secret_post",
            ],
            "code_challenge_methods_supported": ["S256"],
        }
    )
    doc.validate()
    return JSONResponse(dict(doc))


@router.get("/.well-known/jwks.json")
def jwks(request: Request) -> JSONResponse:
    return JSONResponse(_security(request).keys.jwks(), headers={"Cache-Control": "max-age=300"})


# -- authorization code + PKCE ------------------------------------------------------------


async def _consent(request: Request, oreq: OAuthRequest, issuer: str) -> Any:
    """The validated grant, or the response to send (error redirect or error page)."""
    server = _security(request).oauth
    try:
        return await _in_thread(issuer, server.get_consent_grant, oreq)
    except ValueError:
        # Authlib refuses to build an error whose description would quote characters
        # outside printable ASCII (from a hostile redirect_uri, say): the link is bad.
        return _message(
            request,
            "This sign-in link is not valid",
            "The link has characters a sign-in link cannot have.",
            ok=False,
            status=400,
        )
    except OAuth2Error as error:
        if error.redirect_uri:
            # Only a redirect URI Authlib validated against the client gets the error.
            return _to_response(server.handle_error_response(oreq, error))
        return _message(
            request,
            "This sign-in link is not valid",
            error.description or error.error,
            ok=False,
            status=400,
        )


@router.get(
    "/oauth/authorize", response_class=HTMLResponse, openapi_extra=OAUTH_DOC["authorize_get"]
)
async def authorize_page(request: Request) -> Response:
    issuer = _security(request).issuer(request)
    query = list(request.query_params.multi_items())
    oreq = _oauth_request(request, issuer, query, [])
    grant = await _consent(request, oreq, issuer)
    if isinstance(grant, Response):
        return grant
    return _signin_page(request, grant, issuer, query)


def _signin_page(
    request: Request,
    grant: Any,
    issuer: str,
    query: list[tuple[str, str]],
    error: str | None = None,
    email: str = "",
    organisation: str = "",
    status: int = 200,
) -> HTMLResponse:
    client = grant.request.client
    scopes = (grant.request.scope or "").split()
    return _page(
        request,
        "signin.html",
        status,
        title="Sign in",
        client_name=client.record.name,
        scopes=[SCOPE_TEXT.get(s, s) for s in scopes],
        hidden=[(k, v) for k, v in query if k in AUTHORIZE_PARAMS],
        action="/oauth/authorize",
        error=error,
        email=email,
        organisation=organisation,
        issuer=issuer,
    )


@router.post(
    "/oauth/authorize", response_class=HTMLResponse, openapi_extra=OAUTH_DOC["authorize_post"]
)
async def authorize_submit(request: Request) -> Response:
    security = _security(request)
    issuer = security.issuer(request)
    fields = await _form(request)
    form = dict(fields)
    if not _csrf(request).check(request.cookies.get(COOKIE), form.get("csrf_token")):
        return _message(
            request,
            "This page expired",
            "The sign-in form could not be verified. Start signing in again from the app.",
            ok=False,
            status=400,
        )
    query = [(k, v) for k, v in fields if k in AUTHORIZE_PARAMS]
    oreq = _oauth_request(request, issuer, query, [], method="GET")
    grant = await _consent(request, oreq, issuer)
    if isinstance(grant, Response):
        return grant
    server = security.oauth
    if form.get("decision") == "deny":
        result = await _in_thread(
            issuer,
            server.create_authorization_response,
            oreq,
            grant_user=None,
            grant=grant,
        )
        return _to_response(result)
    email, organisation = form.get("email", ""), form.get("organisation", "")
    try:
        who = await run_in_threadpool(
            check_password, security.db, organisation, email, form.get("password", "")
        )
    except SignInError as exc:
        await run_in_threadpool(_record_signin_failure, request, "wrong email or password", email)
        return _signin_page(
            request, grant, issuer, query, str(exc), email, organisation, status=401
        )
    user = GrantUser(who.user_id, who.tenant_id)
    await run_in_threadpool(
        _record_signin, request, user, "auth.signin", {"client_id": oreq.payload.client_id}
    )
    result = await _in_thread(
        issuer, server.create_authorization_response, oreq, grant_user=user, grant=grant
    )
    return _to_response(result)


# -- token, device authorization, revocation ------------------------------------------------


async def _protocol_call(request: Request, call: Callable[[OAuthRequest], Any]) -> Response:
    security = _security(request)
    issuer = security.issuer(request)
    oreq = _oauth_request(request, issuer, [], await _form(request))
    result = await _in_thread(issuer, call, oreq)
    response = _to_response(result)
    status, body, _headers = result
    if status >= 400 and isinstance(body, dict) and body.get("error") in CREDENTIAL_ERRORS:
        await run_in_threadpool(
            security.on_auth_failure, request, f"token endpoint: {body['error']}", "oauth"
        )
    return response


@router.post("/oauth/token", openapi_extra=OAUTH_DOC["token"])
async def token(request: Request) -> Response:
    return await _protocol_call(request, _security(request).oauth.create_token_response)


@router.post("/oauth/device_authorization", openapi_extra=OAUTH_DOC["device_authorization"])
async def device_authorization(request: Request) -> Response:
    server = _security(request).oauth
    return await _protocol_call(
        request, lambda oreq: server.create_endpoint_response("device_authorization", oreq)
    )


@router.post("/oauth/revoke", openapi_extra=OAUTH_DOC["revoke"])
async def revoke(request: Request) -> Response:
    server = _security(request).oauth
    return await _protocol_call(
        request, lambda oreq: server.create_endpoint_response("revocation", oreq)
    )


# -- the device page --------------------------------------------------------------------


def _device_page(
    request: Request,
    error: str | None = None,
    user_code: str = "",
    email: str = "",
    organisation: str = "",
    status: int = 200,
) -> HTMLResponse:
    return _page(
        request,
        "device.html",
        status,
        title="Connect a device",
        action="/device",
        error=error,
        user_code=user_code,
        email=email,
        organisation=organisation,
        issuer=_security(request).issuer(request),
    )


@router.get("/device", response_class=HTMLResponse)
def device_page(request: Request, user_code: str = "") -> HTMLResponse:
    return _device_page(request, user_code=normalise_user_code(user_code) if user_code else "")


@router.post("/device", response_class=HTMLResponse, openapi_extra=OAUTH_DOC["device_post"])
async def device_submit(request: Request) -> HTMLResponse:
    security = _security(request)
    form = dict(await _form(request))
    if not _csrf(request).check(request.cookies.get(COOKIE), form.get("csrf_token")):
        return _message(
            request,
            "This page expired",
            "The form could not be verified. Open the device page again.",
            ok=False,
            status=400,
        )
    code = normalise_user_code(form.get("user_code", ""))
    email, organisation = form.get("email", ""), form.get("organisation", "")
    record = await run_in_threadpool(security.store.device_by_user_code, code)
    if record is None or record.approved is not None or record.expires_at < time.time():
        await run_in_threadpool(_record_signin_failure, request, "unknown device code", email)
        return _device_page(
            request,
            "That code is not valid or has expired. Start again on the device to get a new one.",
            code,
            email,
            organisation,
            status=400,
        )
    if form.get("decision") == "deny":
        await run_in_threadpool(security.store.decide_device, code, "", "", False)
        return _message(
            request, "Device not connected", "The device was refused.", ok=True, status=200
        )
    try:
        who = await run_in_threadpool(
            check_password, security.db, organisation, email, form.get("password", "")
        )
    except SignInError as exc:
        await run_in_threadpool(_record_signin_failure, request, "wrong email or password", email)
        return _device_page(request, str(exc), code, email, organisation, status=401)
    approved = await run_in_threadpool(
        security.store.decide_device, code, who.tenant_id, who.user_id, True
    )
    if not approved:
        return _device_page(
            request, "That code has just expired. Start again on the device.", code, status=400
        )
    await run_in_threadpool(
        _record_signin,
        request,
        GrantUser(who.user_id, who.tenant_id),
        "oauth.device_approved",
        {"client_id": record.client_id},
    )
    return _message(
        request,
        "Device connected",
        "Your device is connected. You can close this window.",
        ok=True,
        status=200,
    )
