"""Change-feed routes: latest cursor, a page of changes, and the long-poll."""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from dropline.server.files.changes import MAX_CURSOR_DIGITS, ChangeFeed, ChangePage
from dropline.server.files.entries import FileService
from dropline.server.http.auth import ReadPrincipal
from dropline.server.http.routes.files import EntryOut
from dropline.server.identity.accounts import Principal

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


def _in_sight(request: Request, principal: Principal, page: ChangePage) -> JSONResponse:
    """The page without what a policy keeps from ``principal``; the cursor still moves past
    it, so a long-poll woken only by hidden changes answers an empty page.

    Answered as built: the records make exactly ``ChangePageOut``'s shape, and checking
    a page of 500 changes against the model again cost more than reading them.
    """
    files: FileService = request.app.state.files
    return JSONResponse(replace(page, changes=files.in_sight(principal, page.changes)).to_json())


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
) -> JSONResponse:
    return _in_sight(request, principal, _feed(request).page(principal, cursor, limit))


@router.get("/wait", response_model=ChangePageOut)
async def wait_for_changes(
    principal: ReadPrincipal,
    request: Request,
    cursor: Cursor = None,
    timeout: Annotated[float, Query(ge=0, allow_inf_nan=False)] = 60.0,
    limit: Limit = 500,
) -> JSONResponse:
    page = await _feed(request).wait(principal, cursor, timeout, limit)
    return _in_sight(request, principal, page)
