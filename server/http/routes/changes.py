"""Change-feed routes: latest cursor, a page of changes, and the long-poll."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from dropline.server.files.changes import MAX_CURSOR_DIGITS, ChangeFeed
from dropline.server.http.auth import ReadPrincipal
from dropline.server.http.routes.files import EntryOut

router = APIRouter(prefix="/api/v1/changes", tags=["changes"])


class ChangeOut(BaseModel):
    seq: int
    action: Literal["created", "modified", "moved", "deleted"]
    old_path: str | None
    entry: EntryOut


class ChangePageOut(BaseModel):
    changes: list[ChangeOut]
    cursor: str
    has_more: bool


class CursorOut(BaseModel):
    cursor: str


def _feed(request: Request) -> ChangeFeed:
    feed: ChangeFeed = request.app.state.changes
    return feed


Limit = Annotated[int, Query(ge=1, le=1000)]
# The feed checks the cursor itself (bad-request when malformed, 410 when expired).
Cursor = Annotated[
    str | None,
    Query(
        description="the cursor of the previous page (or latest-cursor); empty starts over",
        json_schema_extra={"pattern": f"^[0-9]{{0,{MAX_CURSOR_DIGITS}}}$"},
    ),
]


@router.get("/latest-cursor", response_model=CursorOut)
def latest_cursor(principal: ReadPrincipal, request: Request) -> dict[str, str]:
    return {"cursor": _feed(request).latest_cursor()}


@router.get("", response_model=ChangePageOut)
def list_changes(
    principal: ReadPrincipal, request: Request, cursor: Cursor = None, limit: Limit = 500
) -> dict[str, Any]:
    return _feed(request).page(principal, cursor, limit).to_json()


@router.get("/wait", response_model=ChangePageOut)
async def wait_for_changes(
    principal: ReadPrincipal,
    request: Request,
    cursor: Cursor = None,
    timeout: Annotated[float, Query(ge=0, allow_inf_nan=False)] = 60.0,
    limit: Limit = 500,
) -> dict[str, Any]:
    page = await _feed(request).wait(principal, cursor, timeout, limit)
    return page.to_json()
