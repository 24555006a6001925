"""Webhook routes under ``/api/v1/webhooks``: subscriptions, secret rotation, the delivery
log, redelivery and a test ping. Subscriptions belong to the caller's tenant and need
the ``webhooks`` scope. Thin: parse, call
:class:`dropline.server.webhooks.subscriptions.WebhookService`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from dropline.server.http.auth import require
from dropline.server.http.routes.files import json_body
from dropline.server.http.routes.params import TARGET_URL_SCHEMA
from dropline.server.http.routes.transfers import audit_context
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.webhooks.subscriptions import EVENT_TYPES, WebhookService

router = APIRouter(prefix="/api/v1", tags=["webhooks"])

WebhookPrincipal = Annotated[Principal, Depends(require("webhooks"))]
DELIVERY_STATES = ("pending", "succeeded", "failed", "cancelled")


# Each event type at most once: the list is a set, and a repeat would exceed max_length.
_EVENT_TYPES_SCHEMA: dict[str, Any] = {"items": {"enum": list(EVENT_TYPES)}, "uniqueItems": True}


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=8, max_length=2048, json_schema_extra=TARGET_URL_SCHEMA)
    event_types: list[str] = Field(
        min_length=1, max_length=len(EVENT_TYPES), json_schema_extra=_EVENT_TYPES_SCHEMA
    )
    description: str = Field(default="", max_length=500)
    active: bool = True


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(
        default=None, min_length=8, max_length=2048, json_schema_extra=TARGET_URL_SCHEMA
    )
    event_types: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=len(EVENT_TYPES),
        json_schema_extra=_EVENT_TYPES_SCHEMA,
    )
    description: str | None = Field(default=None, max_length=500)
    active: bool | None = None


class SecretRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_seconds: int | None = Field(default=None, ge=0)


class WebhookOut(BaseModel):
    """A subscription as the API shows it (documentation of the answers below)."""

    id: str
    url: str
    description: str
    event_types: list[str]
    active: bool
    disabled_reason: str | None
    created_at: float
    updated_at: float
    previous_secret_expires_at: float | None


class WebhookWithSecret(WebhookOut):
    secret: str


class WebhookList(BaseModel):
    webhooks: list[WebhookOut]


class DeliveryOut(BaseModel):
    id: str
    event_type: str
    event_id: int | None
    state: Literal["pending", "succeeded", "failed", "cancelled"]
    attempts: int
    next_attempt_at: float | None
    last_status_code: int | None
    last_latency_ms: float | None
    last_error: str | None
    created_at: float
    delivered_at: float | None


class AttemptOut(BaseModel):
    attempt: int
    at: float
    outcome: Literal["success", "retry", "failed", "disabled"]
    status_code: int | None
    latency_ms: float | None
    error: str | None


class DeliveryDetail(DeliveryOut):
    payload: dict[str, Any]
    attempt_log: list[AttemptOut]


class DeliveryList(BaseModel):
    deliveries: list[DeliveryOut]
    next_before: float | None


def _doc(model: type[BaseModel], status: int = 200) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": model, "description": "ok"}}


def _service(request: Request) -> WebhookService:
    service: WebhookService = request.app.state.webhooks
    return service


def _body_schema(model: type[BaseModel], required: bool = True) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": required,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


@router.get("/webhooks/event-types")
def event_types(_principal: WebhookPrincipal) -> dict[str, list[str]]:
    return {"event_types": list(EVENT_TYPES)}


@router.post(
    "/webhooks",
    status_code=201,
    responses=_doc(WebhookWithSecret, 201),
    openapi_extra=_body_schema(WebhookCreate),
)
async def create_webhook(principal: WebhookPrincipal, request: Request) -> JSONResponse:
    body = await json_body(request, WebhookCreate)
    service = _service(request)
    url = await service.check_url(body.url)

    ctx = audit_context(request, principal)

    def create() -> tuple[Any, str]:
        return service.create(
            principal, url, body.event_types, body.description, body.active, audit_ctx=ctx
        )

    endpoint, secret = await anyio.to_thread.run_sync(create)
    doc = {**endpoint.to_json(), "secret": secret}
    return JSONResponse(
        doc,
        status_code=201,
        headers={"Location": f"/api/v1/webhooks/{endpoint.id}", "Cache-Control": "no-store"},
    )


@router.get("/webhooks", responses=_doc(WebhookList))
def list_webhooks(principal: WebhookPrincipal, request: Request) -> dict[str, Any]:
    return {"webhooks": [e.to_json() for e in _service(request).list_endpoints(principal)]}


@router.get("/webhooks/{webhook_id}", responses=_doc(WebhookOut))
def get_webhook(principal: WebhookPrincipal, request: Request, webhook_id: str) -> dict[str, Any]:
    return _service(request).get(principal, webhook_id).to_json()


@router.patch(
    "/webhooks/{webhook_id}",
    responses=_doc(WebhookOut),
    openapi_extra=_body_schema(WebhookUpdate),
)
async def update_webhook(
    principal: WebhookPrincipal, request: Request, webhook_id: str
) -> dict[str, Any]:
    body = await json_body(request, WebhookUpdate)
    service = _service(request)
    url = await service.check_url(body.url) if body.url is not None else None
    ctx = audit_context(request, principal)

    def update() -> dict[str, Any]:
        return service.update(
            principal,
            webhook_id,
            url=url,
            event_types=body.event_types,
            description=body.description,
            active=body.active,
            audit_ctx=ctx,
        ).to_json()

    return await anyio.to_thread.run_sync(update)


@router.delete("/webhooks/{webhook_id}", status_code=204)
def delete_webhook(principal: WebhookPrincipal, request: Request, webhook_id: str) -> Response:
    _service(request).delete(principal, webhook_id, audit_context(request, principal))
    return Response(status_code=204)


@router.post(
    "/webhooks/{webhook_id}/rotate-secret",
    responses=_doc(WebhookWithSecret),
    openapi_extra=_body_schema(SecretRotation, False),
)
async def rotate_secret(principal: WebhookPrincipal, request: Request, webhook_id: str) -> Any:
    raw = await request.body()
    body = await json_body(request, SecretRotation) if raw.strip() else SecretRotation()

    ctx = audit_context(request, principal)

    def rotate() -> tuple[Any, str]:
        return _service(request).rotate_secret(principal, webhook_id, body.overlap_seconds, ctx)

    endpoint, secret = await anyio.to_thread.run_sync(rotate)
    return JSONResponse(
        {**endpoint.to_json(), "secret": secret}, headers={"Cache-Control": "no-store"}
    )


@router.post("/webhooks/{webhook_id}/ping", status_code=202, responses=_doc(DeliveryOut, 202))
def ping(principal: WebhookPrincipal, request: Request, webhook_id: str) -> dict[str, Any]:
    return _service(request).ping(principal, webhook_id)


@router.get("/webhooks/{webhook_id}/deliveries", responses=_doc(DeliveryList))
def deliveries(
    principal: WebhookPrincipal,
    request: Request,
    webhook_id: str,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: float | None = None,
    state: Annotated[str | None, Query(json_schema_extra={"enum": list(DELIVERY_STATES)})] = None,
) -> dict[str, Any]:
    if state is not None and state not in DELIVERY_STATES:
        raise Problem("validation", f"state must be one of {', '.join(DELIVERY_STATES)}")
    items = _service(request).deliveries(
        principal, webhook_id, limit=limit, before=before, state=state
    )
    following = items[-1]["created_at"] if len(items) == limit else None
    return {"deliveries": items, "next_before": following}


@router.get("/webhooks/{webhook_id}/deliveries/{delivery_id}", responses=_doc(DeliveryDetail))
def delivery(
    principal: WebhookPrincipal, request: Request, webhook_id: str, delivery_id: str
) -> dict[str, Any]:
    return _service(request).delivery(principal, webhook_id, delivery_id)


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
    status_code=202,
    responses=_doc(DeliveryOut, 202),
)
def redeliver(
    principal: WebhookPrincipal, request: Request, webhook_id: str, delivery_id: str
) -> dict[str, Any]:
    return _service(request).redeliver(principal, webhook_id, delivery_id)
