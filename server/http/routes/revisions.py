"""Version history routes: a file's revisions, a past revision's content, restore.

Thin: :class:`dropline.server.files.revisions.Revisions` does the work. A past
revision's bytes come from the content route (``GET /files/{id}/content?rev=``).
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from dropline.server.files.records import Entry
from dropline.server.files.revisions import Revisions
from dropline.server.http.auth import ReadPrincipal, WritePrincipal
from dropline.server.http.routes.files import EntryOut, etag_value, json_body
from dropline.server.http.routes.params import RevisionsCursor

router = APIRouter(prefix="/api/v1", tags=["files"])


class RevisionUser(BaseModel):
    id: str
    email: str


class RevisionOut(BaseModel):
    rev: str
    size: int
    sha256: str
    mtime: float | None
    created_at: float
    user: RevisionUser | None
    client: str | None
    current: bool


class RevisionList(BaseModel):
    revisions: list[RevisionOut]
    next_cursor: str | None


class RestoreIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rev: str = Field(min_length=1, max_length=64)


def revisions_of(request: Request) -> Revisions:
    return Revisions(request.app.state.files)


@router.get("/files/{entry_id}/revisions", response_model=RevisionList)
def list_revisions(
    principal: ReadPrincipal,
    request: Request,
    entry_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
    cursor: RevisionsCursor = None,
) -> dict[str, Any]:
    revisions, next_cursor = revisions_of(request).list(
        principal, entry_id, limit=limit, cursor=cursor
    )
    return {"revisions": [r.to_json() for r in revisions], "next_cursor": next_cursor}


@router.post(
    "/files/{entry_id}/restore",
    response_model=EntryOut,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": RestoreIn.model_json_schema()}},
        }
    },
)
async def restore_revision(
    principal: WritePrincipal,
    request: Request,
    entry_id: str,
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    body = await json_body(request, RestoreIn)

    def restore() -> Entry:
        return revisions_of(request).restore(
            principal, entry_id, body.rev, if_match=etag_value(if_match)
        )

    entry = await anyio.to_thread.run_sync(restore)
    return JSONResponse(entry.to_json(), headers={"ETag": f'"{entry.rev}"'})
