"""``/api/v1/admin/...``: tenants (super-admin), users, API keys, OAuth clients, policies,
bans (super-admin) and client-certificate mappings.
Thin: :mod:`dropline.server.admin.service` does the work.

Every route needs the ``admin`` scope *and* a user who is an admin of the tenant now
(a demoted admin's old token stops working here at once).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from dropline.server.admin.service import Actor, Admin, NotFound, Refused, is_admin, is_super_admin
from dropline.server.audit import trail
from dropline.server.guard import policy
from dropline.server.guard.security import Security
from dropline.server.http.auth import require
from dropline.server.identity.accounts import ALL_SCOPES, DEFAULT_KEY_LIFETIME_SECONDS, Principal
from dropline.server.problems import Problem

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


def _admin_actor(
    request: Request, principal: Annotated[Principal, Depends(require("admin"))]
) -> Actor:
    security: Security = request.app.state.security
    with security.db.read() as conn:
        if not is_admin(conn, principal.tenant_id, principal.user_id):
            raise Problem("forbidden", "this credential's user is not an administrator")
        sup = is_super_admin(conn, principal.user_id)
    return Actor(security.audit_context(request, principal), principal.tenant_id, sup)


AdminActor = Annotated[Actor, Depends(_admin_actor)]


def _service(request: Request) -> Admin:
    service: Admin = request.app.state.admin
    return service


Service = Annotated[Admin, Depends(_service)]


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Translate the service's refusals into problems, at this one boundary."""
    try:
        return fn(*args, **kwargs)
    except NotFound as exc:
        raise Problem("not-found", f"no such {exc}") from None
    except Refused as exc:
        raise Problem("validation", str(exc)) from None
    except PermissionError as exc:
        raise Problem("forbidden", str(exc)) from None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TenantIn(_Model):
    name: str = Field(min_length=1, max_length=200)


# The server's own rules, for the document (the service checks them and answers 400).
_SCOPES: dict[str, Any] = {"items": {"enum": list(ALL_SCOPES)}, "uniqueItems": True, "minItems": 1}
_GRANT_TYPES = [
    "authorization_code",
    "refresh_token",
    "client_credentials",
    "urn:ietf:params:oauth:grant-type:device_code",
]
_GRANT_TYPES_SCHEMA: dict[str, Any] = {
    "items": {"enum": _GRANT_TYPES},
    "uniqueItems": True,
    "minItems": 1,
}
_EMAIL_SCHEMA: dict[str, Any] = {"pattern": "^[^@]*@", "description": "contains an @"}
_REDIRECT_URIS_SCHEMA: dict[str, Any] = {
    "items": {"pattern": r"^(?:https://|http://127\.0\.0\.1|http://\[::1\])"},
    "description": "https, or a loopback http address; at least one for authorization_code",
}
# A policy document, as dropline.server.guard.policy.Rules validates it.
PolicyBody = Annotated[dict[str, Any], Body(json_schema_extra=policy.Rules.model_json_schema())]


class UserIn(_Model):
    email: str = Field(
        min_length=3,
        max_length=320,
        json_schema_extra=_EMAIL_SCHEMA,
    )
    password: str | None = Field(default=None, min_length=8)
    admin: bool = False


class UserPatch(_Model):
    active: bool | None = None
    admin: bool | None = None
    password: str | None = Field(default=None, min_length=8)


class KeyIn(_Model):
    user_id: str
    scopes: list[str] = Field(default=["files:read", "files:write"], json_schema_extra=_SCOPES)
    expires_in: int | None = Field(default=DEFAULT_KEY_LIFETIME_SECONDS, gt=0)
    name: str | None = Field(default=None, max_length=200)


class RotateIn(_Model):
    expires_in: int | None = Field(default=DEFAULT_KEY_LIFETIME_SECONDS, gt=0)
    old_expires_in: int | None = Field(default=None, ge=0)


class ClientIn(_Model):
    name: str = Field(min_length=1, max_length=200)
    grant_types: list[str] = Field(json_schema_extra=_GRANT_TYPES_SCHEMA)
    scopes: list[str] = Field(json_schema_extra=_SCOPES)
    redirect_uris: list[str] = Field(default=[], json_schema_extra=_REDIRECT_URIS_SCHEMA)
    confidential: bool = True
    service_user_id: str | None = None


class CertIn(_Model):
    user_id: str
    certificate: str = Field(description="PEM")
    scopes: list[str] = Field(default=["files:read", "files:write"], json_schema_extra=_SCOPES)


# -- tenants --------------------------------------------------------------------------


@router.get("/tenants")
def list_tenants(actor: AdminActor, admin: Service) -> dict[str, Any]:
    return {"tenants": _call(admin.list_tenants, actor)}


@router.post("/tenants", status_code=201)
def create_tenant(body: TenantIn, actor: AdminActor, admin: Service) -> dict[str, Any]:
    result: dict[str, Any] = _call(admin.create_tenant, actor, body.name)
    return result


# -- users ----------------------------------------------------------------------------


@router.get("/users")
def list_users(actor: AdminActor, admin: Service) -> dict[str, Any]:
    return {"users": _call(admin.list_users, actor)}


@router.post("/users", status_code=201)
def create_user(body: UserIn, actor: AdminActor, admin: Service) -> dict[str, Any]:
    result: dict[str, Any] = _call(admin.create_user, actor, body.email, body.password, body.admin)
    return result


@router.get("/users/{user_id}")
def get_user(user_id: str, actor: AdminActor, admin: Service) -> dict[str, Any]:
    result: dict[str, Any] = _call(admin.get_user, actor, user_id)
    return result


@router.patch("/users/{user_id}")
def update_user(user_id: str, body: UserPatch, actor: AdminActor, admin: Service) -> dict[str, Any]:
    result: dict[str, Any] = _call(
        admin.update_user,
        actor,
        user_id,
        active=body.active,
        admin=body.admin,
        password=body.password,
    )
    return result


# -- API keys ---------------------------------------------------------------------------


@router.get("/api-keys")
def list_keys(actor: AdminActor, admin: Service, user_id: str | None = None) -> dict[str, Any]:
    return {"api_keys": _call(admin.list_keys, actor, user_id)}


@router.post("/api-keys", status_code=201)
def create_key(body: KeyIn, actor: AdminActor, admin: Service) -> dict[str, Any]:
    info, key = _call(
        admin.create_key, actor, body.user_id, tuple(body.scopes), body.expires_in, body.name
    )
    return {**info, "key": key}


@router.post("/api-keys/{key_id}/rotate", status_code=201)
def rotate_key(
    key_id: str, actor: AdminActor, admin: Service, body: RotateIn | None = None
) -> dict[str, Any]:
    body = body or RotateIn()
    info, key = _call(admin.rotate_key, actor, key_id, body.expires_in, body.old_expires_in)
    return {**info, "key": key}


@router.delete("/api-keys/{key_id}")
def revoke_key(key_id: str, actor: AdminActor, admin: Service) -> dict[str, Any]:
    result: dict[str, Any] = _call(admin.revoke_key, actor, key_id)
    return result


# -- OAuth clients ------------------------------------------------------------------------


@router.get("/clients")
def list_clients(actor: AdminActor, admin: Service) -> dict[str, Any]:
    return {"clients": _call(admin.list_clients, actor)}


@router.post("/clients", status_code=201)
def create_client(body: ClientIn, actor: AdminActor, admin: Service) -> dict[str, Any]:
    info, secret = _call(
        admin.create_client,
        actor,
        body.name,
        tuple(body.grant_types),
        tuple(body.scopes),
        tuple(body.redirect_uris),
        body.confidential,
        body.service_user_id or None,  # "" names no user, as leaving it out does
    )
    return {**info, "client_secret": secret}


@router.post("/clients/{client_id}/secret", status_code=201)
def rotate_client_secret(client_id: str, actor: AdminActor, admin: Service) -> dict[str, Any]:
    return {
        "client_id": client_id,
        "client_secret": _call(admin.rotate_client_secret, actor, client_id),
    }


@router.delete("/clients/{client_id}", status_code=204)
def revoke_client(client_id: str, actor: AdminActor, admin: Service) -> Response:
    _call(admin.revoke_client, actor, client_id)
    return Response(status_code=204)


# -- policies ---------------------------------------------------------------------------


@router.get("/policy")
def get_policy(actor: AdminActor, admin: Service) -> dict[str, Any]:
    return {"rules": _call(admin.get_policy, actor)}


@router.put("/policy")
def set_policy(rules: PolicyBody, actor: AdminActor, admin: Service) -> dict[str, Any]:
    return {"rules": _call(admin.set_policy, actor, rules)}


@router.delete("/policy", status_code=204)
def delete_policy(actor: AdminActor, admin: Service) -> Response:
    _call(admin.set_policy, actor, None)
    return Response(status_code=204)


@router.get("/users/{user_id}/policy")
def get_user_policy(user_id: str, actor: AdminActor, admin: Service) -> dict[str, Any]:
    return {"rules": _call(admin.get_policy, actor, user_id)}


@router.put("/users/{user_id}/policy")
def set_user_policy(
    user_id: str, rules: PolicyBody, actor: AdminActor, admin: Service
) -> dict[str, Any]:
    return {"rules": _call(admin.set_policy, actor, rules, user_id)}


@router.delete("/users/{user_id}/policy", status_code=204)
def delete_user_policy(user_id: str, actor: AdminActor, admin: Service) -> Response:
    _call(admin.set_policy, actor, None, user_id)
    return Response(status_code=204)


# -- bans (super-admin: an address is not any one tenant's) -----------------------------------


@router.get("/bans")
def list_bans(request: Request, actor: AdminActor) -> dict[str, Any]:
    if not actor.super_admin:
        raise Problem("forbidden", "only a super-admin manages bans")
    security: Security = request.app.state.security
    return {"bans": [b.as_json() for b in security.defender.bans()]}


@router.delete("/bans/{ip}", status_code=204)
def lift_ban(ip: str, request: Request, actor: AdminActor) -> Response:
    if not actor.super_admin:
        raise Problem("forbidden", "only a super-admin manages bans")
    security: Security = request.app.state.security
    if not security.defender.lift(ip):
        raise Problem("not-found", "no ban for that address")
    with security.db.write() as conn:
        trail.record(conn, actor.ctx, "admin.ban.lift", "success", f"ip:{ip}")
    return Response(status_code=204)


# -- client certificates ---------------------------------------------------------------------


@router.get("/client-certs")
def list_certs(actor: AdminActor, admin: Service) -> dict[str, Any]:
    return {"client_certs": _call(admin.list_certificates, actor)}


@router.post("/client-certs", status_code=201)
def map_cert(body: CertIn, request: Request, actor: AdminActor, admin: Service) -> dict[str, Any]:
    result: dict[str, Any] = _call(
        admin.map_certificate,
        actor,
        request.app.state.security,
        body.user_id,
        body.certificate,
        tuple(body.scopes),
    )
    return result


@router.delete("/client-certs/{cert_id}", status_code=204)
def revoke_cert(cert_id: str, actor: AdminActor, admin: Service) -> Response:
    _call(admin.revoke_certificate, actor, cert_id)
    return Response(status_code=204)
