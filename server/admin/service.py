"""Administration: tenants, users, API keys, OAuth clients, policies, bans, certificates.

One service for the admin API and the ``dropline-server`` CLI, so both enforce the
same rules and write the same audit rows. Every call takes the acting
:class:`AuditContext` and the tenant it acts in; an id from another tenant is
"not found", exactly like an id that does not exist. No web framework here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from dropline.server.audit import trail
from dropline.server.guard import policy
from dropline.server.guard.security import Security, list_certificates, revoke_certificate
from dropline.server.identity.accounts import (
    ALL_SCOPES,
    DEFAULT_KEY_LIFETIME_SECONDS,
    TENANT_WIDE_SCOPES,
    Identity,
    IdentityError,
    hash_password,
)
from dropline.server.identity.oauth.store import OAuthStore
from dropline.server.storage import schema
from dropline.server.storage.db import Database


class NotFound(LookupError):
    """No such object in this tenant (or at all: the two are indistinguishable)."""


class Refused(ValueError):
    """A readable refusal: bad input, or an operation the caller may not perform."""


@dataclass(frozen=True, slots=True)
class Actor:
    """Who is administering: a principal of ``tenant_id``, or the CLI operator."""

    ctx: trail.AuditContext
    tenant_id: str
    super_admin: bool = False


def _check_scopes(scopes: tuple[str, ...]) -> tuple[str, ...]:
    unknown = sorted(set(scopes) - set(ALL_SCOPES))
    if unknown:
        raise Refused(f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(ALL_SCOPES)}")
    if not scopes:
        raise Refused("give at least one scope")
    return tuple(s for s in ALL_SCOPES if s in scopes)


def is_super_admin(conn: Connection, user_id: str) -> bool:
    return (
        conn.execute(
            select(schema.super_admins.c.user_id).where(schema.super_admins.c.user_id == user_id)
        ).first()
        is not None
    )


def is_admin(conn: Connection, tenant_id: str, user_id: str) -> bool:
    row = conn.execute(
        select(schema.users.c.is_admin, schema.users.c.is_active).where(
            schema.users.c.id == user_id, schema.users.c.tenant_id == tenant_id
        )
    ).first()
    return row is not None and bool(row.is_admin) and bool(row.is_active)


def _user_json(row: Any) -> dict[str, Any]:
    return {
        "id": row.id,
        "email": row.email,
        "is_admin": bool(row.is_admin),
        "is_active": bool(row.is_active),
        "created_at": row.created_at,
    }


def _key_json(row: Any) -> dict[str, Any]:
    now = time.time()
    state = "active"
    if row.revoked_at is not None:
        state = "revoked"
    elif row.expires_at is not None and row.expires_at < now:
        state = "expired"
    return {
        "id": row.id,
        "user_id": row.user_id,
        "name": row.name,
        "prefix": f"dlk_{row.lookup}_",
        "scopes": row.scopes.split(),
        "created_at": row.created_at,
        "expires_at": row.expires_at,
        "last_used_at": row.last_used_at,
        "revoked_at": row.revoked_at,
        "state": state,
    }


class Admin:
    def __init__(self, db: Database, identity: Identity, store: OAuthStore) -> None:
        self.db = db
        self.identity = identity
        self.store = store

    def _audit(
        self,
        actor: Actor,
        action: str,
        resource: str,
        detail: dict[str, Any] | None = None,
        tenant_id: str | None = None,
    ) -> None:
        with self.db.write() as conn:
            trail.record(
                conn,
                actor.ctx,
                action,
                "success",
                resource,
                detail,
                tenant_id=tenant_id or actor.tenant_id,
            )

    # -- tenants (super-admin) ------------------------------------------------------------

    def _need_super(self, actor: Actor) -> None:
        if not actor.super_admin:
            raise PermissionError("only a super-admin manages tenants and bans")

    def list_tenants(self, actor: Actor) -> list[dict[str, Any]]:
        self._need_super(actor)
        with self.db.read() as conn:
            rows = conn.execute(select(schema.tenants).order_by(schema.tenants.c.name)).all()
        return [{"id": r.id, "name": r.name, "created_at": r.created_at} for r in rows]

    def create_tenant(self, actor: Actor, name: str) -> dict[str, Any]:
        self._need_super(actor)
        try:
            tenant_id = self.identity.create_tenant(name)
        except IdentityError as exc:
            raise Refused(str(exc)) from exc
        self._audit(actor, "admin.tenant.create", f"tenant:{tenant_id}", {"name": name}, tenant_id)
        return {"id": tenant_id, "name": name.strip()}

    def _tenant_name(self, tenant_id: str) -> str:
        with self.db.read() as conn:
            row = conn.execute(
                select(schema.tenants.c.name).where(schema.tenants.c.id == tenant_id)
            ).first()
        if row is None:
            raise NotFound("tenant")
        return str(row.name)

    # -- users -----------------------------------------------------------------------------

    def list_users(self, actor: Actor) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(schema.users)
                .where(schema.users.c.tenant_id == actor.tenant_id)
                .order_by(schema.users.c.email)
            ).all()
        return [_user_json(r) for r in rows]

    def get_user(self, actor: Actor, user_id: str) -> dict[str, Any]:
        with self.db.read() as conn:
            row = conn.execute(
                select(schema.users).where(
                    schema.users.c.id == user_id, schema.users.c.tenant_id == actor.tenant_id
                )
            ).first()
        if row is None:
            raise NotFound("user")
        return _user_json(row)

    def create_user(
        self,
        actor: Actor,
        email: str,
        password: str | None,
        admin: bool = False,
        super_admin: bool = False,
    ) -> dict[str, Any]:
        if super_admin:
            self._need_super(actor)
        try:
            user_id = self.identity.create_user(
                self._tenant_name(actor.tenant_id), email, password, admin=admin or super_admin
            )
        except IdentityError as exc:
            raise Refused(str(exc)) from exc
        if super_admin:
            with self.db.write() as conn:
                conn.execute(
                    schema.super_admins.insert().values(user_id=user_id, created_at=time.time())
                )
        self._audit(
            actor,
            "admin.user.create",
            f"user:{user_id}",
            {
                "email": email.strip().lower(),
                "admin": admin or super_admin,
                "super_admin": super_admin,
            },
        )
        return self.get_user(actor, user_id)

    def update_user(
        self,
        actor: Actor,
        user_id: str,
        *,
        active: bool | None = None,
        admin: bool | None = None,
        password: str | None = None,
    ) -> dict[str, Any]:
        self.get_user(actor, user_id)
        values: dict[str, Any] = {}
        if active is not None:
            values["is_active"] = active
        if admin is not None:
            values["is_admin"] = admin
        if password is not None:
            if len(password) < 8:
                raise Refused("a password needs at least 8 characters")
            values["password_hash"] = hash_password(password)
        if not values:
            raise Refused("nothing to change: give active, admin or password")
        with self.db.write() as conn:
            conn.execute(update(schema.users).where(schema.users.c.id == user_id).values(**values))
            if active is False:
                # A disabled user's sign-ins end now, not when their tokens expire.
                conn.execute(
                    update(schema.oauth_grants)
                    .where(
                        schema.oauth_grants.c.user_id == user_id,
                        schema.oauth_grants.c.revoked_at.is_(None),
                    )
                    .values(revoked_at=time.time(), revoked_reason="user disabled")
                )
            trail.record(
                conn,
                actor.ctx,
                "admin.user.update",
                "success",
                f"user:{user_id}",
                {k: v for k, v in values.items() if k != "password_hash"}
                | ({"password": "changed"} if password else {}),
                tenant_id=actor.tenant_id,
            )
        return self.get_user(actor, user_id)

    # -- API keys -------------------------------------------------------------------------

    def list_keys(self, actor: Actor, user_id: str | None = None) -> list[dict[str, Any]]:
        q = select(schema.api_keys).where(schema.api_keys.c.tenant_id == actor.tenant_id)
        if user_id:
            q = q.where(schema.api_keys.c.user_id == user_id)
        with self.db.read() as conn:
            rows = conn.execute(q.order_by(schema.api_keys.c.created_at)).all()
        return [_key_json(r) for r in rows]

    def _key(self, conn: Connection, actor: Actor, key_id: str) -> Any:
        row = conn.execute(
            select(schema.api_keys).where(
                schema.api_keys.c.id == key_id, schema.api_keys.c.tenant_id == actor.tenant_id
            )
        ).first()
        if row is None:
            raise NotFound("API key")
        return row

    def create_key(
        self,
        actor: Actor,
        user_id: str,
        scopes: tuple[str, ...],
        expires_in: int | None = DEFAULT_KEY_LIFETIME_SECONDS,
        name: str | None = None,
    ) -> tuple[dict[str, Any], str]:
        """A new key; returns its description and the key itself (shown once)."""
        user = self.get_user(actor, user_id)
        scopes = _check_scopes(scopes)
        if set(TENANT_WIDE_SCOPES) & set(scopes) and not user["is_admin"]:
            raise Refused(
                f"{', '.join(TENANT_WIDE_SCOPES)} keys see the whole tenant: only for admin users"
            )
        if expires_in is not None and expires_in <= 0:
            raise Refused("expires_in must be positive")
        key_id, key = self.identity.create_api_key(
            self._tenant_name(actor.tenant_id), user["email"], scopes, expires_in, name=name
        )
        self._audit(
            actor,
            "admin.api_key.create",
            f"api_key:{key_id}",
            {"user_id": user_id, "scopes": list(scopes), "expires_in": expires_in},
        )
        with self.db.read() as conn:
            return _key_json(self._key(conn, actor, key_id)), key

    def rotate_key(
        self,
        actor: Actor,
        key_id: str,
        expires_in: int | None = DEFAULT_KEY_LIFETIME_SECONDS,
        old_expires_in: int | None = None,
    ) -> tuple[dict[str, Any], str]:
        """A new key with the same user, scopes and name. The old one lives until its own
        expiry (or ``old_expires_in`` from now, whichever is sooner), so deployments can
        switch over without a gap."""
        with self.db.read() as conn:
            old = self._key(conn, actor, key_id)
        if old.revoked_at is not None:
            raise Refused("that key is revoked: create a new one instead")
        new, key = self.create_key(
            actor, old.user_id, tuple(old.scopes.split()), expires_in, old.name
        )
        if old_expires_in is not None:
            until = time.time() + old_expires_in
            with self.db.write() as conn:
                conn.execute(
                    update(schema.api_keys)
                    .where(schema.api_keys.c.id == key_id)
                    .values(expires_at=min(until, old.expires_at or until))
                )
        self._audit(actor, "admin.api_key.rotate", f"api_key:{key_id}", {"new_key_id": new["id"]})
        return new, key

    def revoke_key(self, actor: Actor, key_id: str) -> dict[str, Any]:
        with self.db.write() as conn:
            self._key(conn, actor, key_id)
            conn.execute(
                update(schema.api_keys)
                .where(schema.api_keys.c.id == key_id, schema.api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
            trail.record(
                conn,
                actor.ctx,
                "admin.api_key.revoke",
                "success",
                f"api_key:{key_id}",
                tenant_id=actor.tenant_id,
            )
            return _key_json(self._key(conn, actor, key_id))

    # -- OAuth clients ----------------------------------------------------------------------

    def list_clients(self, actor: Actor) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return [c.as_json() for c in self.store.list_clients(conn, actor.tenant_id)]

    def create_client(
        self,
        actor: Actor,
        name: str,
        grant_types: tuple[str, ...],
        scopes: tuple[str, ...],
        redirect_uris: tuple[str, ...] = (),
        confidential: bool = True,
        service_user_id: str | None = None,
    ) -> tuple[dict[str, Any], str | None]:
        allowed = {
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:device_code",
        }
        if not grant_types or not set(grant_types) <= allowed:
            raise Refused(f"grant_types must be among: {', '.join(sorted(allowed))}")
        scopes = _check_scopes(scopes)
        if "client_credentials" in grant_types:
            if not confidential:
                raise Refused("client_credentials needs a confidential client (with a secret)")
            if not service_user_id:
                raise Refused(
                    "client_credentials needs service_user_id: the user the client acts as"
                )
        if service_user_id:
            self.get_user(actor, service_user_id)
        if "authorization_code" in grant_types and not redirect_uris:
            raise Refused("authorization_code needs at least one redirect URI")
        for uri in redirect_uris:
            if not (
                uri.startswith("https://")
                or uri.startswith("http://127.0.0.1")
                or uri.startswith("http://[::1]")
            ):
                raise Refused(f"redirect URIs must be https (or loopback): {uri}")
            if "#" in uri:
                raise Refused(f"redirect URIs must not have a fragment: {uri}")
        with self.db.write() as conn:
            client, secret = self.store.create_client(
                conn,
                tenant_id=actor.tenant_id,
                name=name,
                grant_types=grant_types,
                scopes=scopes,
                redirect_uris=redirect_uris,
                confidential=confidential,
                service_user_id=service_user_id,
            )
            trail.record(
                conn,
                actor.ctx,
                "admin.client.create",
                "success",
                f"client:{client.client_id}",
                {"grant_types": list(grant_types), "scopes": list(scopes)},
                tenant_id=actor.tenant_id,
            )
        return client.as_json(), secret

    def revoke_client(self, actor: Actor, client_id: str) -> None:
        with self.db.write() as conn:
            if not self.store.revoke_client(conn, actor.tenant_id, client_id):
                raise NotFound("client")
            trail.record(
                conn,
                actor.ctx,
                "admin.client.revoke",
                "success",
                f"client:{client_id}",
                tenant_id=actor.tenant_id,
            )

    def rotate_client_secret(self, actor: Actor, client_id: str) -> str:
        with self.db.write() as conn:
            secret = self.store.rotate_client_secret(conn, actor.tenant_id, client_id)
            if secret is None:
                raise NotFound("client")
            trail.record(
                conn,
                actor.ctx,
                "admin.client.rotate_secret",
                "success",
                f"client:{client_id}",
                tenant_id=actor.tenant_id,
            )
        return secret

    # -- policies ---------------------------------------------------------------------------

    def get_policy(self, actor: Actor, user_id: str | None = None) -> dict[str, Any]:
        if user_id:
            self.get_user(actor, user_id)
        with self.db.read() as conn:
            return policy.load_rules(conn, actor.tenant_id, user_id) or {}

    def set_policy(self, actor: Actor, doc: Any, user_id: str | None = None) -> dict[str, Any]:
        if user_id:
            self.get_user(actor, user_id)
        try:
            rules = policy.parse_rules(doc) if doc is not None else None
        except policy.PolicyError as exc:
            raise Refused(str(exc)) from exc
        with self.db.write() as conn:
            policy.save_rules(conn, actor.tenant_id, user_id, rules)
            trail.record(
                conn,
                actor.ctx,
                "admin.policy.set" if rules else "admin.policy.delete",
                "success",
                f"policy:{user_id or 'tenant'}",
                {"rules": rules.model_dump(exclude_none=True) if rules else None},
                tenant_id=actor.tenant_id,
            )
        return rules.model_dump(exclude_none=True) if rules else {}

    # -- client certificates ----------------------------------------------------------------

    def map_certificate(
        self, actor: Actor, security: Security, user_id: str, pem: str, scopes: tuple[str, ...]
    ) -> dict[str, Any]:
        self.get_user(actor, user_id)
        scopes = _check_scopes(scopes)
        try:
            with self.db.write() as conn:
                row = security.map_certificate(conn, actor.tenant_id, user_id, pem, scopes)
                trail.record(
                    conn,
                    actor.ctx,
                    "admin.client_cert.map",
                    "success",
                    f"client_cert:{row['id']}",
                    {
                        "fingerprint": row["fingerprint"],
                        "subject": row["subject"],
                        "user_id": user_id,
                    },
                    tenant_id=actor.tenant_id,
                )
        except ValueError as exc:
            raise Refused(f"not a PEM certificate: {exc}") from exc
        except Exception as exc:  # the unique fingerprint index
            if "UNIQUE" in str(exc).upper():
                raise Refused("that certificate is already mapped") from exc
            raise
        return dict(row)

    def list_certificates(self, actor: Actor) -> list[dict[str, Any]]:
        with self.db.read() as conn:
            return list_certificates(conn, actor.tenant_id)

    def revoke_certificate(self, actor: Actor, cert_id: str) -> None:
        with self.db.write() as conn:
            if not revoke_certificate(conn, actor.tenant_id, cert_id):
                raise NotFound("client certificate")
            trail.record(
                conn,
                actor.ctx,
                "admin.client_cert.revoke",
                "success",
                f"client_cert:{cert_id}",
                tenant_id=actor.tenant_id,
            )


__all__ = ["Actor", "Admin", "NotFound", "Refused", "is_admin", "is_super_admin"]
