"""Trash routes: list what was deleted, bring it back, purge it.

Thin: :class:`dropline.server.files.trash.Trash` does the work. Purging someone else's
item takes a tenant administrator (the ``admin`` scope and an admin user now); to
anyone else it is not found, like any id that is not theirs.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from dropline.server.admin.service import is_admin
from dropline.server.files.records import Entry
from dropline.server.files.trash import Trash
from dropline.server.http.auth import ReadPrincipal, WritePrincipal
from dropline.server.http.routes.files import EntryOut, json_body
from dropline.server.http.routes.params import FOLDER_SCHEMA, TrashCursor, path_field
from dropline.server.identity.accounts import Principal

router = APIRouter(prefix="/api/v1", tags=["trash"])


class TrashItemOut(BaseModel):
    id: str
    name: str
    path: str
    type: Literal["file", "folder"]
    size: int
    sha256: str | None
    rev: str
    trashed_at: float
    files: int
    path_taken: bool


class TrashList(BaseModel):
    items: list[TrashItemOut]
    next_cursor: str | None


class TrashRestoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Annotated[str, path_field(min_length=1)] | None = None


def trash_of(request: Request) -> Trash:
    return Trash(request.app.state.files)


@router.get("/trash", response_model=TrashList)
def list_trash(
    principal: ReadPrincipal,
    request: Request,
    path: Annotated[
        str | None,
        Query(description="only items at or under this folder", json_schema_extra=FOLDER_SCHEMA),
    ] = None,
    since: Annotated[float | None, Query(description="deleted at or after (epoch s)")] = None,
    until: Annotated[float | None, Query(description="deleted before (epoch s)")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: TrashCursor = None,
) -> dict[str, Any]:
    items, next_cursor = trash_of(request).list(
        principal, path=path, since=since, until=until, limit=limit, cursor=cursor
    )
    return {"items": [i.to_json() for i in items], "next_cursor": next_cursor}


@router.post(
    "/trash/{item_id}/restore",
    response_model=EntryOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": TrashRestoreIn.model_json_schema()}},
        }
    },
)
async def restore_from_trash(
    principal: WritePrincipal, request: Request, item_id: str
) -> JSONResponse:
    body = await json_body(request, TrashRestoreIn)

    def restore() -> Entry:
        return trash_of(request).restore(principal, item_id, body.path)

    entry = await anyio.to_thread.run_sync(restore)
    return JSONResponse(entry.to_json(), headers={"ETag": f'"{entry.rev}"'})


def _tenant_admin(request: Request, principal: Principal) -> bool:
    if "admin" not in principal.scopes:
        return False
    with request.app.state.db.read() as conn:
        return bool(is_admin(conn, principal.tenant_id, principal.user_id))


@router.delete("/trash/{item_id}", status_code=204)
def purge_from_trash(principal: WritePrincipal, request: Request, item_id: str) -> Response:
    as_admin = _tenant_admin(request, principal)
    trash_of(request).purge(principal, item_id, as_admin=as_admin)
    return Response(status_code=204)
