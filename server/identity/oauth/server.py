"""The OAuth 2.0 authorization server: Authlib's framework-neutral classes, our storage.

Authlib ships Flask and Django glue only, so :class:`OAuthRequest` adapts an
already-read Starlette request (query and form dicts) to Authlib's request type,
and :meth:`DroplineAuthorizationServer.handle_response` returns plain
``(status, body, headers)`` tuples that the route turns into a response. The
grants below only say where things are stored; the protocol checks (redirect
URI, PKCE, client authentication, grant types, error responses) are Authlib's.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections import defaultdict
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, OAuth2Payload, OAuth2Request, grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError, InvalidScopeError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint, DeviceCodeGrant
from sqlalchemy import Connection, select

from dropline.server.audit import trail
from dropline.server.identity.oauth.store import (
    ADMIN_SCOPES,
    ALL_SCOPES,
    DEFAULT_SCOPE,
    DEVICE_INTERVAL,
    DEVICE_SECONDS,
    USER_SCOPES,
    WEB_CALLBACK_PATH,
    WEB_CLIENT,
    ClientRecord,
    CodeRecord,
    DeviceRecord,
    OAuthStore,
    RefreshOutcome,
    RefreshRecord,
    new_user_code,
)
from dropline.server.identity.tokens import InvalidToken, TokenService, looks_like_jwt
from dropline.server.storage import schema
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)

TOKEN_AUTH_METHODS = ["none", "client_secret_basic", "client_secret_post"]
CONFIDENTIAL_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

# Set by the route for the duration of one call into Authlib (which runs in a
# worker thread, each with its own context): Authlib's hooks get no request.
current_issuer: ContextVar[str] = ContextVar("dropline_oauth_issuer")


def audience(issuer: str) -> str:
    return issuer.rstrip("/") + "/api/v1"


def is_loopback_redirect(uri: str) -> bool:
    """RFC 8252 section 7.3: http on 127.0.0.1 or [::1], any port, any path."""
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and parts.hostname in ("127.0.0.1", "::1")
        and not parts.username
        and not parts.password
        and not parts.fragment
    )


def web_redirect_uri(issuer: str) -> str:
    """Where the web client's sign-in comes back to: this server's own callback."""
    return issuer.rstrip("/") + WEB_CALLBACK_PATH


def narrow_scope(requested: str | None, allowed: tuple[str, ...] | frozenset[str]) -> str:
    """The requested scopes the caller may have (the default set when none asked)."""
    wanted = (requested or DEFAULT_SCOPE).split()
    return " ".join(s for s in ALL_SCOPES if s in wanted and s in allowed)


@dataclass(slots=True)
class GrantUser:
    """The resource owner a token is for; ``grant_id`` is set once the sign-in exists."""

    user_id: str
    tenant_id: str
    grant_id: str | None = None


class Client(ClientMixin):  # type: ignore[misc]
    def __init__(self, record: ClientRecord, store: OAuthStore) -> None:
        self.record = record
        self.store = store

    def get_client_id(self) -> str:
        return self.record.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.record.redirect_uris[0] if self.record.redirect_uris else None

    def get_allowed_scope(self, scope: str | None) -> str:
        return narrow_scope(scope, self.record.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        if self.record.client_id == WEB_CLIENT:
            # The server's own callback at whatever address it is reached by.
            return redirect_uri == web_redirect_uri(current_issuer.get())
        if self.record.loopback_redirects and is_loopback_redirect(redirect_uri):
            return True
        # Exact string match, nothing looser: a prefix or pattern match is an open redirect.
        return redirect_uri in self.record.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.store.check_secret(self.record, client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.record.public:
            return method == "none"
        return method in CONFIDENTIAL_AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" and "authorization_code" in self.record.grant_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.record.grant_types


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, query: list[tuple[str, str]], form: list[tuple[str, str]]) -> None:
        datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in [*query, *form]:
            datalist[key].append(value)
        self._datalist = datalist
        self._data = {key: values[-1] for key, values in datalist.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class OAuthRequest(OAuth2Request):  # type: ignore[misc]
    """An HTTP request already read by the route, in the shape Authlib expects."""

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Any,
        query: list[tuple[str, str]],
        form: list[tuple[str, str]],
        ctx: trail.AuditContext,
    ) -> None:
        super().__init__(method, uri, headers=headers)
        self.payload = _Payload(query, form)
        self._args = dict(query)
        self._form = dict(form)
        self.audit_ctx = ctx

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class S256Only(CodeChallenge):  # type: ignore[misc]
    """PKCE required for every authorization request, S256 only (``plain`` refused)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    CODE_CHALLENGE_METHODS = {"S256": CodeChallenge.CODE_CHALLENGE_METHODS["S256"]}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge (S256)")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


class _Issuing:
    """Token issuance for every grant goes through the server's one place."""

    request: OAuthRequest
    server: DroplineAuthorizationServer
    GRANT_TYPE: str

    def generate_token(
        self,
        user: GrantUser | None = None,
        scope: str | None = None,
        grant_type: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        assert user is not None
        return self.server.issue(
            self.request,
            grant_type or self.GRANT_TYPE,
            self.request.client,
            user,
            scope,
            include_refresh_token,
        )


class AuthorizationCodeGrant(_Issuing, grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def save_authorization_code(self, code: str, request: OAuthRequest) -> None:
        user: GrantUser = request.user
        data = request.payload.data
        self.server.store.save_code(
            code,
            CodeRecord(
                client_id=request.client.get_client_id(),
                tenant_id=user.tenant_id,
                user_id=user.user_id,
                redirect_uri=data.get("redirect_uri", ""),
                # The client's allowed scopes narrowed again to what this user may hold.
                scope=narrow_scope(request.scope, self.server.allowed_scopes(user.user_id)),
                code_challenge=data["code_challenge"],
                code_challenge_method=data.get("code_challenge_method", "S256"),
            ),
        )

    def query_authorization_code(self, code: str, client: Client) -> _Code | None:
        record = self.server.store.claim_code(code, client.get_client_id())
        return _Code(record) if record else None

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        """Already spent by :meth:`query_authorization_code` (atomically)."""

    def authenticate_user(self, authorization_code: _Code) -> GrantUser:
        return GrantUser(authorization_code.record.user_id, authorization_code.record.tenant_id)


@dataclass(slots=True)
class _Code:
    record: CodeRecord

    def get_redirect_uri(self) -> str:
        return self.record.redirect_uri

    def get_scope(self) -> str:
        return self.record.scope

    @property
    def code_challenge(self) -> str:
        return self.record.code_challenge

    @property
    def code_challenge_method(self) -> str:
        return self.record.code_challenge_method


@dataclass(slots=True)
class _Refresh:
    record: RefreshRecord

    def check_client(self, client: Client) -> bool:
        return self.record.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.record.scope


class RefreshTokenGrant(_Issuing, grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotate on every use

    def authenticate_refresh_token(self, refresh_token: str) -> _Refresh | None:
        client = self.request.client
        outcome, record = self.server.store.claim_refresh(refresh_token, client.get_client_id())
        if outcome is RefreshOutcome.REUSED and record is not None:
            ctx = self.request.audit_ctx.with_actor(
                record.tenant_id, record.user_id, record.grant_id, "oauth"
            )
            with self.server.db.write() as conn:
                trail.record_with_event(
                    conn,
                    ctx,
                    "oauth.refresh_reused",
                    "failure",
                    "auth.failed",
                    resource=f"grant:{record.grant_id}",
                    detail={"client_id": record.client_id, "reason": "refresh token reused"},
                )
            log.warning("refresh token reused; sign-in %s revoked", record.grant_id)
            raise InvalidGrantError("refresh token already used: the sign-in was revoked")
        if outcome is not RefreshOutcome.OK or record is None:
            return None
        return _Refresh(record)

    def authenticate_user(self, refresh_token: _Refresh) -> GrantUser:
        r = refresh_token.record
        return GrantUser(r.user_id, r.tenant_id, grant_id=r.grant_id)

    def revoke_old_credential(self, refresh_token: _Refresh) -> None:
        """Already spent by :meth:`authenticate_refresh_token` (atomically)."""


class ClientCredentialsGrant(_Issuing, grants.ClientCredentialsGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = CONFIDENTIAL_AUTH_METHODS

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        client: Client = self.request.client
        record = client.record
        if record.service_user_id is None or record.tenant_id is None:
            raise InvalidGrantError("this client has no service account")
        requested = self.request.payload.scope
        if requested and not set(requested.split()) <= set(record.scopes):
            raise InvalidScopeError()
        scope = requested or " ".join(record.scopes)
        token = self.generate_token(
            user=GrantUser(record.service_user_id, record.tenant_id),
            scope=scope,
            include_refresh_token=False,
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER


class _Device(dict[str, Any]):
    def __init__(self, record: DeviceRecord) -> None:
        super().__init__(client_id=record.client_id, scope=record.scope)
        self.record = record

    def get_client_id(self) -> str:
        return self.record.client_id

    def get_scope(self) -> str:
        return self.record.scope

    def get_user_code(self) -> str:
        return self.record.user_code

    def is_expired(self) -> bool:
        return self.record.expires_at < time.time()


class DeviceGrant(_Issuing, DeviceCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def query_device_credential(self, device_code: str) -> _Device | None:
        record = self.server.store.device_by_code(device_code)
        if record is None or record.used_at is not None:
            return None
        return _Device(record)

    def query_user_grant(self, user_code: str) -> tuple[GrantUser, bool] | None:
        record = self.server.store.device_by_user_code(user_code)
        if record is None or record.approved is None:
            return None
        user = GrantUser(record.user_id or "", record.tenant_id or "")
        return user, bool(record.approved)

    def should_slow_down(self, credential: _Device) -> bool:
        return self.server.store.poll_device(credential.record.device_code_hash)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        credential: _Device = self.request.credential
        # Two polls racing for the same approval: only one gets tokens.
        if not self.server.store.spend_device(credential.record.device_code_hash):
            raise InvalidGrantError("this device code was already used")
        user: GrantUser = self.request.user
        client: Client = self.request.client
        scope = narrow_scope(credential.get_scope(), self.server.allowed_scopes(user.user_id))
        token = self.generate_token(
            user=user, scope=scope, include_refresh_token=client.check_grant_type("refresh_token")
        )
        return 200, token, self.TOKEN_RESPONSE_HEADER


class DeviceEndpoint(DeviceAuthorizationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = TOKEN_AUTH_METHODS
    EXPIRES_IN = DEVICE_SECONDS
    INTERVAL = DEVICE_INTERVAL

    def generate_user_code(self) -> str:
        return new_user_code()

    def get_verification_uri(self) -> str:
        return current_issuer.get().rstrip("/") + "/device"

    def save_device_credential(
        self, client_id: str, scope: str | None, data: dict[str, Any]
    ) -> None:
        self.server.store.save_device(
            data["device_code"], data["user_code"], client_id, scope or DEFAULT_SCOPE
        )


@dataclass(slots=True)
class _Revocable:
    grant_id: str
    client_id: str
    kind: str

    def check_client(self, client: Client) -> bool:
        return self.client_id == client.get_client_id()


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> _Revocable | None:
        server: DroplineAuthorizationServer = self.server
        if looks_like_jwt(token_string):
            issuer = current_issuer.get()
            try:
                claims = server.tokens.verify(
                    token_string, issuer=issuer, audience=audience(issuer)
                )
            except InvalidToken:
                return None  # RFC 7009: an invalid token is not an error
            return _Revocable(claims.grant_id, claims.client_id, "access_token")
        found = server.store.grant_for_refresh(token_string)
        return _Revocable(found[0], found[1], "refresh_token") if found else None

    def revoke_token(self, token: _Revocable, request: OAuthRequest) -> None:
        server: DroplineAuthorizationServer = self.server
        with server.db.write() as conn:
            if server.store.revoke_grant(conn, token.grant_id, "revoked by client"):
                trail.record(
                    conn,
                    request.audit_ctx.with_actor(
                        *server.grant_owner(conn, token.grant_id), token.grant_id, "oauth"
                    ),
                    "oauth.revoke",
                    "success",
                    resource=f"grant:{token.grant_id}",
                    detail={"client_id": token.client_id, "token_type": token.kind},
                )


class DroplineAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(
        self, db: Database, store: OAuthStore, tokens: TokenService, refresh_seconds: int
    ) -> None:
        super().__init__(scopes_supported=list(ALL_SCOPES))
        self.db = db
        self.store = store
        self.tokens = tokens
        self.refresh_seconds = refresh_seconds
        self.register_grant(AuthorizationCodeGrant, [S256Only(required=True)])
        self.register_grant(RefreshTokenGrant)
        self.register_grant(DeviceGrant)
        self.register_grant(ClientCredentialsGrant)
        self.register_endpoint(DeviceEndpoint)
        self.register_endpoint(Revocation)

    # -- Authlib's framework hooks ---------------------------------------------------

    def query_client(self, client_id: str) -> Client | None:
        record = self.store.client(client_id)
        return Client(record, self.store) if record else None

    def save_token(self, token: dict[str, Any], request: OAuthRequest) -> None:
        """Stored by :meth:`issue` in the same transaction as the sign-in."""

    def create_oauth2_request(self, request: Any) -> OAuthRequest:
        if not isinstance(request, OAuthRequest):
            raise TypeError("routes pass an OAuthRequest")
        return request

    def handle_response(
        self, status: int, body: Any, headers: list[tuple[str, str]]
    ) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, list(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """No signal system: auditing happens where the work happens."""

    # -- ours --------------------------------------------------------------------

    def allowed_scopes(self, user_id: str) -> frozenset[str]:
        with self.db.read() as conn:
            row = conn.execute(
                select(schema.users.c.is_admin).where(schema.users.c.id == user_id)
            ).first()
        if row is None:
            return frozenset()
        return frozenset(USER_SCOPES + (ADMIN_SCOPES if row.is_admin else ()))

    @staticmethod
    def grant_owner(conn: Connection, grant_id: str) -> tuple[str | None, str | None]:
        row = conn.execute(
            select(schema.oauth_grants.c.tenant_id, schema.oauth_grants.c.user_id).where(
                schema.oauth_grants.c.id == grant_id
            )
        ).first()
        return (row.tenant_id, row.user_id) if row else (None, None)

    def issue(
        self,
        request: OAuthRequest,
        grant_type: str,
        client: Client,
        user: GrantUser,
        scope: str | None,
        include_refresh_token: bool,
    ) -> dict[str, Any]:
        """Mint the access token (and refresh token); record the sign-in and audit row."""
        issuer = current_issuer.get()
        scope = scope or ""
        refresh = secrets.token_urlsafe(32) if include_refresh_token else None
        with self.db.write() as conn:
            if user.grant_id is None:
                user.grant_id = self.store.create_grant(
                    conn, user.tenant_id, user.user_id, client.get_client_id(), scope
                )
            if refresh is not None:
                self.store.save_refresh(
                    conn,
                    refresh,
                    user.grant_id,
                    client.get_client_id(),
                    scope,
                    self.refresh_seconds,
                )
            access, ttl = self.tokens.issue(
                issuer=issuer,
                audience=audience(issuer),
                user_id=user.user_id,
                tenant_id=user.tenant_id,
                client_id=client.get_client_id(),
                scope=scope,
                grant_id=user.grant_id,
            )
            trail.record(
                conn,
                request.audit_ctx.with_actor(user.tenant_id, user.user_id, user.grant_id, "oauth"),
                "oauth.token",
                "success",
                resource=f"grant:{user.grant_id}",
                detail={
                    "grant_type": grant_type,
                    "client_id": client.get_client_id(),
                    "scope": scope,
                },
            )
        token: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": ttl,
            "scope": scope,
        }
        if refresh is not None:
            token["refresh_token"] = refresh
        return token


__all__ = [
    "Client",
    "DroplineAuthorizationServer",
    "GrantUser",
    "OAuthRequest",
    "audience",
    "current_issuer",
    "is_loopback_redirect",
    "narrow_scope",
    "web_redirect_uri",
]
