"""Transfer routes: ``POST /api/v1/transfers`` (202 + Location), status, list, cancel.

Thin: parse the body and ``Idempotency-Key``, plug the caller's policy checks in,
call :class:`dropline.server.transfers.service.TransferService` off the event loop.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from dropline.server.audit import trail
from dropline.server.guard import policy
from dropline.server.http.auth import require
from dropline.server.http.routes.files import json_body
from dropline.server.http.routes.params import CIDR_SCHEMA, FOLDER_SCHEMA, TARGET_URL_SCHEMA
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.transfers.requests import PushDestination, TransferRequest, push_host
from dropline.server.transfers.service import STATES, PolicyCheck, Transfer, TransferService

router = APIRouter(prefix="/api/v1", tags=["transfers"])

TransferPrincipal = Annotated[Principal, Depends(require("transfers"))]


class TransferErrorOut(BaseModel):
    code: str | None
    message: str


class TransferOut(BaseModel):
    """A transfer as the API shows it (documentation of the answers below)."""

    id: str
    state: Literal["queued", "running", "completed", "failed", "cancelled", "expired"]
    kind: Literal["folder", "inbox", "link", "push"]
    file_ids: list[str]
    destination: dict[str, Any]
    bytes_total: int
    bytes_done: int
    files_total: int
    files_done: int
    error: TransferErrorOut | None
    result: dict[str, Any]
    attempts: int
    next_attempt_at: float | None
    created_at: float
    updated_at: float
    started_at: float | None
    finished_at: float | None


class TransferList(BaseModel):
    transfers: list[TransferOut]
    next_before: float | None


MAX_KEY_LENGTH = 255


def _request_schema() -> dict[str, Any]:
    """The request model's schema with what the service checks by hand written into it."""
    schema = TransferRequest.model_json_schema()
    defs = schema["$defs"]
    schema["properties"]["file_ids"]["uniqueItems"] = True
    defs["FolderDestination"]["properties"]["path"].update(FOLDER_SCHEMA)
    defs["PushDestination"]["properties"]["url"].update(TARGET_URL_SCHEMA)
    # Leave allowed_cidrs out, or give at least one network (IPv4 in the pattern; IPv6
    # networks are accepted too).
    cidrs = defs["LinkDestination"]["properties"]["allowed_cidrs"]["anyOf"][0]
    cidrs.update(minItems=1, items={"type": "string", **CIDR_SCHEMA})
    return schema


def _service(request: Request) -> TransferService:
    service: TransferService = request.app.state.transfers
    return service


def _idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    key = value.strip()
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise Problem(
            "bad-request", f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable ASCII characters"
        )
    return key


def _policy_check(request: Request, caller: Principal) -> PolicyCheck | None:
    """The security layer's checks, when it is installed: classified folders for what the
    caller reads, size/extension/quota/folder rules for what lands, and the recipient's
    own rules for an inbox. A denial is audited and emits ``policy.violated``."""
    security = getattr(request.app.state, "security", None)
    if security is None:
        return None

    def check(principal: Principal, action: str, path: str, size: int | None) -> None:
        if principal.user_id == caller.user_id:
            if action == "download":
                security.check_path(request, caller, path)
            else:
                security.check_upload(request, caller, path, size)
            return
        try:
            with security.db.read() as conn:
                rules = policy.effective(conn, principal.tenant_id, principal.user_id)
                subject = policy.Subject(principal.tenant_id, principal.user_id, frozenset(), False)
                policy.check_upload(conn, rules, subject, path, size)
        except policy.PolicyDenied as denied:
            raise security.deny(request, caller, denied, resource=path) from None

    return check


def audit_context(request: Request, principal: Principal | None = None) -> trail.AuditContext:
    """Who and from where, for the audit rows these routes write (as the security layer
    builds it when installed)."""
    security = getattr(request.app.state, "security", None)
    if security is not None:
        ctx: trail.AuditContext = security.audit_context(request, principal)
        return ctx
    client = request.client.host if request.client is not None else None
    ctx = trail.AuditContext(
        source_ip=client, request_id=getattr(request.state, "request_id", None)
    )
    if principal is not None:
        ctx = ctx.with_actor(
            principal.tenant_id, principal.user_id, principal.credential_id, principal.kind
        )
    return ctx


def _answer(transfer: Transfer, status: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(transfer.to_json(), status_code=status, headers=headers)


@router.post(
    "/transfers",
    status_code=202,
    responses={202: {"model": TransferOut, "description": "accepted (or replayed)"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _request_schema()}},
        }
    },
)
async def create_transfer(
    principal: TransferPrincipal,
    request: Request,
    idempotency_key: Annotated[
        str | None,
        Header(
            description="1-255 printable ASCII characters: a repeat of the same request "
            "answers with the transfer the first one made",
            json_schema_extra={"pattern": r"^[\x21-\x7e](?:[\x20-\x7e]{0,253}[\x21-\x7e])?$"},
        ),
    ] = None,
) -> JSONResponse:
    body = await json_body(request, TransferRequest)
    key = _idempotency_key(idempotency_key)
    service = _service(request)
    if isinstance(body.destination, PushDestination):
        await service.check_push_url(body.destination.url)
        security = getattr(request.app.state, "security", None)
        if security is not None:
            security.check_push_host(request, principal, push_host(body.destination.url))
    settings = request.app.state.settings
    link_base = settings.public_url or str(request.base_url)
    check = _policy_check(request, principal)
    ctx = audit_context(request, principal)

    def create() -> tuple[Transfer, bool]:
        return service.create(
            principal, body, idempotency_key=key, link_base=link_base, check=check, audit_ctx=ctx
        )

    transfer, created = await anyio.to_thread.run_sync(create)
    headers = {"Location": f"/api/v1/transfers/{transfer.id}"}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    return _answer(transfer, 202, **headers)


@router.get("/transfers", responses={200: {"model": TransferList, "description": "newest first"}})
def list_transfers(
    principal: TransferPrincipal,
    request: Request,
    state: Annotated[str | None, Query(json_schema_extra={"enum": list(STATES)})] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: float | None = None,
) -> dict[str, Any]:
    if state is not None and state not in STATES:
        raise Problem("validation", f"state must be one of {', '.join(STATES)}")
    found = _service(request).list_transfers(principal, limit=limit, state=state, before=before)
    items = [t.to_json() for t in found]
    following = items[-1]["created_at"] if len(items) == limit else None
    return {"transfers": items, "next_before": following}


@router.get(
    "/transfers/{transfer_id}", responses={200: {"model": TransferOut, "description": "ok"}}
)
def get_transfer(principal: TransferPrincipal, request: Request, transfer_id: str) -> JSONResponse:
    return _answer(_service(request).get(principal, transfer_id))


@router.delete(
    "/transfers/{transfer_id}", responses={200: {"model": TransferOut, "description": "ok"}}
)
def cancel_transfer(
    principal: TransferPrincipal, request: Request, transfer_id: str
) -> JSONResponse:
    ctx = audit_context(request, principal)
    return _answer(_service(request).cancel(principal, transfer_id, ctx))
