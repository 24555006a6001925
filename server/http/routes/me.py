"""``GET /api/v1/me``: who the credential belongs to, and what their files take."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request
from sqlalchemy import select

from dropline.server.guard import policy
from dropline.server.guard.usage import Retention, measure
from dropline.server.http.auth import AnyPrincipal
from dropline.server.identity.accounts import Principal
from dropline.server.storage import schema

router = APIRouter(prefix="/api/v1", tags=["identity"])


@router.get("/me")
def me(principal: AnyPrincipal, request: Request) -> dict[str, object]:
    with request.app.state.db.read() as conn:
        row = conn.execute(
            select(schema.users.c.email, schema.tenants.c.name.label("tenant_name"))
            .join(schema.tenants, schema.tenants.c.id == schema.users.c.tenant_id)
            .where(schema.users.c.id == principal.user_id)
        ).one()
    return {
        "user": {"id": principal.user_id, "email": row.email},
        "tenant": {"id": principal.tenant_id, "name": row.tenant_name},
        "credential": {"id": principal.credential_id, "kind": principal.kind},
        "scopes": sorted(principal.scopes),
        # The effective policy (tenant rules, with the user's own rules replacing them).
        "policy": _policy(request),
        "storage": _storage(request, principal),
    }


def _rules(request: Request, principal: Principal) -> policy.Rules:
    rules = getattr(request.state, "policy", None)
    if isinstance(rules, policy.Rules):
        return rules
    return policy.effective_cached(request.app.state.db, principal.tenant_id, principal.user_id)


def _policy(request: Request) -> dict[str, object]:
    rules = getattr(request.state, "policy", None)
    return rules.model_dump(exclude_none=True) if rules is not None else {}


def _storage(request: Request, principal: Principal) -> dict[str, object]:
    """What counts against the quota (current files, kept versions, kept trash): the
    caller's own files, or the whole tenant's when the quota is the tenant's."""
    rules = _rules(request, principal)
    with request.app.state.db.read() as conn:
        space: str | None = principal.space_id
        if rules.storage_quota is not None:
            space = policy.quota_space(conn, principal.tenant_id, principal.user_id)
        usage = measure(conn, principal.tenant_id, space, Retention.of(rules), time.time())
    return {
        **usage.to_json(),
        "quota": rules.storage_quota,
        "scope": "user" if space is not None else "tenant",
    }
