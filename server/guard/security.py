"""Where the security parts meet the web app: one :class:`Security` on ``app.state.security``.

It owns the OAuth server, signing keys, defender, rate limiter and the client
certificate map, and gives route and auth code small calls: authenticate a JWT
or a certificate, react to a failed authentication, apply per-request policy and
rate limits, build an audit context, and turn a policy denial into a 403 with
its audit row and ``policy.violated`` event. The HTTP gate in front of the routes
is :class:`dropline.server.http.security_middleware.SecurityMiddleware`.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, select, update
from starlette.requests import Request

from dropline.server.audit import trail
from dropline.server.guard import policy
from dropline.server.guard.defender import Defender
from dropline.server.guard.networks import is_trusted, parse_networks
from dropline.server.guard.shared_limits import limiter_for
from dropline.server.identity.accounts import Identity, Principal
from dropline.server.identity.key_table import signing_keys_for
from dropline.server.identity.oauth.server import DroplineAuthorizationServer, audience
from dropline.server.identity.oauth.store import OAuthStore
from dropline.server.identity.tls import fingerprint, forwarded_certificate, peer_certificate_pem
from dropline.server.identity.tokens import InvalidToken, TokenService, looks_like_jwt
from dropline.server.problems import Problem
from dropline.server.settings import Settings
from dropline.server.storage import schema
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)


@dataclass
class RequestFacts:
    """What code without the request (file hooks) needs to know about it."""

    request_id: str | None
    client_ip: str | None
    method: str
    via_mtls: bool
    # Set once the caller is authenticated: whose data key seals what this request stores,
    # and the policy that applies to it.
    tenant_id: str | None = None
    rules: policy.Rules | None = None
    # Audit writes for denials, run just before the response starts: the denial may
    # happen inside a write transaction that is about to roll back.
    pending: list[Callable[[Connection], None]] = field(default_factory=list)
    audited: set[tuple[str, str]] = field(default_factory=set)


request_facts: ContextVar[RequestFacts | None] = ContextVar("dropline_request_facts", default=None)

# Paths a banned address may still reach (liveness probes come from load balancers).
UNGUARDED = ("/healthz", "/readyz")
# Unauthenticated endpoints where guessing happens: limited per source address.
SIGN_IN_PREFIXES = ("/oauth/", "/device")


class Security:
    def __init__(self, settings: Settings, db: Database, identity: Identity) -> None:
        self.settings = settings
        self.db = db
        self.identity = identity
        self.keys = signing_keys_for(settings.data_dir, db, settings.signing_key_refresh_seconds)
        self.tokens = TokenService(self.keys, settings.access_token_seconds)
        self.store = OAuthStore(db)
        self.store.ensure_first_party()
        self.oauth = DroplineAuthorizationServer(
            db, self.store, self.tokens, settings.refresh_token_seconds
        )
        self.defender = Defender(
            db,
            settings.defender_max_failures,
            settings.defender_window_seconds,
            settings.defender_ban_seconds,
        )
        self.limiter = limiter_for(
            db,
            {
                "credential": settings.rate_limit_per_credential,
                "endpoint": settings.rate_limit_per_endpoint,
                "ip": settings.rate_limit_per_ip,
            },
        )
        self.trusted = parse_networks(settings.trusted_proxies)

    # -- request facts ----------------------------------------------------------

    def issuer(self, request: Request) -> str:
        if self.settings.public_url:
            return self.settings.public_url.rstrip("/")
        return str(request.base_url).rstrip("/")

    @staticmethod
    def client_ip(request: Request) -> str | None:
        ip = getattr(request.state, "client_ip", None)
        if ip is None and request.client is not None:
            return request.client.host
        return ip

    def audit_context(
        self, request: Request, principal: Principal | None = None
    ) -> trail.AuditContext:
        ctx = trail.AuditContext(
            source_ip=self.client_ip(request),
            request_id=getattr(request.state, "request_id", None),
        )
        if principal is not None:
            ctx = ctx.with_actor(
                principal.tenant_id, principal.user_id, principal.credential_id, principal.kind
            )
        return ctx

    # -- authentication ------------------------------------------------------------

    def jwt_authenticator(self, request: Request, token: str) -> Principal | None:
        if not looks_like_jwt(token):
            return None
        issuer = self.issuer(request)
        try:
            claims = self.tokens.verify(token, issuer=issuer, audience=audience(issuer))
        except InvalidToken as exc:
            log.info("access token refused: %s", exc)
            return None
        if not self.store.grant_is_live(claims.grant_id, claims.tenant_id, claims.subject):
            return None
        return Principal(
            tenant_id=claims.tenant_id,
            user_id=claims.subject,
            credential_id=claims.grant_id,
            kind="oauth",
            scopes=claims.scopes,
        )

    def presented_certificate(self, request: Request) -> str | None:
        pem = peer_certificate_pem(request.scope)
        if pem is not None:
            return pem
        client = request.client
        if client is not None and is_trusted(client.host, self.trusted):
            value = request.headers.get(self.settings.client_cert_header)
            if value:
                return forwarded_certificate(value)
        return None

    def certificate_principal(self, request: Request) -> Principal | None:
        pem = self.presented_certificate(request)
        if pem is None:
            return None
        try:
            fp, _subject = fingerprint(pem)
        except ValueError:
            return None
        t = schema.client_certs
        with self.db.read() as conn:
            row = conn.execute(
                select(t, schema.users.c.is_active)
                .join(schema.users, schema.users.c.id == t.c.user_id)
                .where(t.c.fingerprint == fp, t.c.revoked_at.is_(None))
            ).first()
        if row is None or not row.is_active:
            self.on_auth_failure(request, "client certificate not mapped", "mtls")
            return None
        return Principal(
            tenant_id=row.tenant_id,
            user_id=row.user_id,
            credential_id=row.id,
            kind="mtls",
            scopes=frozenset(row.scopes.split()),
        )

    def on_auth_failure(self, request: Request, reason: str, kind: str | None = None) -> None:
        ip = self.client_ip(request)
        ctx = self.audit_context(request)
        ctx = ctx.with_actor(None, None, None, kind)
        with self.db.write() as conn:
            trail.record_with_event(
                conn,
                ctx,
                "auth.failed",
                "failure",
                "auth.failed",
                resource=request.url.path,
                detail={"reason": reason},
            )
        self.defender.failure(ip)

    def after_authenticate(self, request: Request, principal: Principal) -> None:
        """Per-request policy (where from, when) and the rate limits: per credential, and
        per credential and URL (docs/security.md: how they were sized)."""
        decision = self.limiter.hit("credential", principal.credential_id)
        if decision.allowed and request.method in ("GET", "HEAD"):
            # A sync client reads many URLs, each now and then; a runaway script reads one
            # over and over. The query is part of the URL (listings of two folders are two
            # URLs); hashed, so a bucket's key stays small. Writes each make or change
            # something, so only the credential's own bucket counts them.
            url = f"{principal.credential_id} {request.url.path}?{request.url.query}"
            key = hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=16).digest()
            endpoint = self.limiter.hit("endpoint", key.hex())
            if not endpoint.allowed or endpoint.remaining < decision.remaining:
                decision = endpoint
        request.state.ratelimit_headers = decision.headers()
        if not decision.allowed:
            whose = "this credential" if decision.policy == "credential" else "one URL"
            raise Problem(
                "rate-limited",
                f"more than {decision.limit} requests in {decision.window} s for {whose}",
                headers=decision.headers(),
            )
        rules = policy.effective_cached(self.db, principal.tenant_id, principal.user_id)
        try:
            policy.check_request(rules, self.client_ip(request))
        except policy.PolicyDenied as denied:
            raise self.deny(request, principal, denied) from None
        request.state.policy = rules
        facts = request_facts.get()
        if facts is not None:
            facts.tenant_id = principal.tenant_id
            facts.rules = rules

    # -- policy -------------------------------------------------------------------

    def subject(self, request: Request, principal: Principal) -> policy.Subject:
        via_mtls = principal.kind == "mtls" or self.presented_certificate(request) is not None
        return policy.Subject(principal.tenant_id, principal.user_id, principal.scopes, via_mtls)

    def rules(self, request: Request, principal: Principal) -> policy.Rules:
        cached = getattr(request.state, "policy", None)
        if isinstance(cached, policy.Rules):
            return cached
        return policy.effective_cached(self.db, principal.tenant_id, principal.user_id)

    def deny(
        self,
        request: Request | None,
        principal: Principal,
        denied: policy.PolicyDenied,
        resource: str | None = None,
        conn: Connection | None = None,
    ) -> Problem:
        """Record the denial (audit row + ``policy.violated`` event); returns the 403 to raise.

        With ``conn`` the row joins that transaction; inside a request it is written
        just before the response starts (after any transaction the denial aborted);
        otherwise at once.
        """
        ctx = self.context_for(principal, request)
        detail = {"rule": denied.rule, "reason": denied.detail}
        where = resource or (request.url.path if request is not None else None)

        def write(c: Connection) -> None:
            trail.record_with_event(
                c, ctx, "policy.denied", "denied", "policy.violated", where, detail
            )

        facts = request_facts.get()
        if conn is not None:
            write(conn)
        elif facts is not None:
            facts.pending.append(write)
        else:
            with self.db.write() as c:
                write(c)
        return Problem("policy-denied", denied.detail, rule=denied.rule)

    def context_for(
        self, principal: Principal | None, request: Request | None = None
    ) -> trail.AuditContext:
        """The audit context from the request, or from the request facts in a hook."""
        if request is not None:
            return self.audit_context(request, principal)
        facts = request_facts.get()
        ctx = trail.AuditContext(
            source_ip=facts.client_ip if facts else None,
            request_id=facts.request_id if facts else None,
        )
        if principal is not None:
            ctx = ctx.with_actor(
                principal.tenant_id, principal.user_id, principal.credential_id, principal.kind
            )
        return ctx

    def check_path(self, request: Request, principal: Principal, path: str) -> None:
        """Classified folders, for any operation on ``path`` (raises the 403)."""
        try:
            policy.check_path(
                self.rules(request, principal), self.subject(request, principal), path
            )
        except policy.PolicyDenied as denied:
            raise self.deny(request, principal, denied, resource=path) from None

    def check_upload(
        self, request: Request, principal: Principal, path: str, size: int | None, replaces: int = 0
    ) -> None:
        """Size, extension, quota and folder rules for a file about to be written."""
        try:
            with self.db.read() as conn:
                policy.check_upload(
                    conn,
                    self.rules(request, principal),
                    self.subject(request, principal),
                    path,
                    size,
                    replaces,
                )
        except policy.PolicyDenied as denied:
            raise self.deny(request, principal, denied, resource=path) from None

    def check_push_host(self, request: Request, principal: Principal, host: str) -> None:
        """The policy's push allow-list, for a push transfer being created (raises the 403)."""
        try:
            policy.check_push_host(self.rules(request, principal), host)
        except policy.PolicyDenied as denied:
            raise self.deny(request, principal, denied, resource=host) from None

    def check_content(self, request: Request, principal: Principal, path: str, head: bytes) -> None:
        try:
            policy.check_content(self.rules(request, principal), path, head)
        except policy.PolicyDenied as denied:
            raise self.deny(request, principal, denied, resource=path) from None

    def write_all(self, writes: list[Callable[[Connection], None]]) -> None:
        with self.db.write() as conn:
            for write in writes:
                write(conn)

    # -- client certificates ----------------------------------------------------------

    def map_certificate(
        self, conn: Connection, tenant_id: str, user_id: str, pem: str, scopes: tuple[str, ...]
    ) -> dict[str, Any]:
        fp, subject = fingerprint(pem)
        cert_id = str(uuid.uuid4())
        conn.execute(
            schema.client_certs.insert().values(
                id=cert_id,
                fingerprint=fp,
                subject=subject,
                tenant_id=tenant_id,
                user_id=user_id,
                scopes=" ".join(scopes),
                created_at=time.time(),
            )
        )
        return {
            "id": cert_id,
            "fingerprint": fp,
            "subject": subject,
            "user_id": user_id,
            "scopes": list(scopes),
        }


def list_certificates(conn: Connection, tenant_id: str) -> list[dict[str, Any]]:
    t = schema.client_certs
    rows = conn.execute(select(t).where(t.c.tenant_id == tenant_id).order_by(t.c.created_at)).all()
    return [
        {
            "id": r.id,
            "fingerprint": r.fingerprint,
            "subject": r.subject,
            "user_id": r.user_id,
            "scopes": r.scopes.split(),
            "created_at": r.created_at,
            "revoked_at": r.revoked_at,
        }
        for r in rows
    ]


def revoke_certificate(conn: Connection, tenant_id: str, cert_id: str) -> bool:
    t = schema.client_certs
    return bool(
        conn.execute(
            update(t)
            .where(t.c.id == cert_id, t.c.tenant_id == tenant_id, t.c.revoked_at.is_(None))
            .values(revoked_at=time.time())
        ).rowcount
    )


def current_tenant() -> str | None:
    """The authenticated tenant of the request being served (None outside requests)."""
    facts = request_facts.get()
    return facts.tenant_id if facts is not None else None


__all__ = [
    "Security",
    "current_tenant",
    "list_certificates",
    "request_facts",
    "revoke_certificate",
]
