"""``GET /api/v1/me``: who the credential belongs to."""

from __future__ import annotations

from fastapi import APIRouter, Request
from sqlalchemy import select

from dropline.server.http.auth import AnyPrincipal
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
    }


def _policy(request: Request) -> dict[str, object]:
    rules = getattr(request.state, "policy", None)
    return rules.model_dump(exclude_none=True) if rules is not None else {}
