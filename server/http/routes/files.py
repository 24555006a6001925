"""Files API routes: metadata, listing, folders, move/rename, delete, content download
(the current content, or a past revision's with ``?rev=``).

Thin: parse and check the HTTP parts (JSON bodies, ``If-Match``, ``Range``), call
:class:`dropline.server.files.entries.FileService` off the event loop, shape the answer.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any, BinaryIO, Literal, TypeVar
from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from dropline.server.files.entries import FileService
from dropline.server.files.records import Entry
from dropline.server.files.revisions import Revisions
from dropline.server.http.auth import ReadPrincipal, WritePrincipal
from dropline.server.http.routes.params import (
    NAME_SCHEMA,
    PATH_SCHEMA,
    EntryPath,
    FolderPath,
    ListCursor,
    path_field,
)
from dropline.server.problems import Problem

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/v1", tags=["files"])

READ_SIZE = 4 * 1024 * 1024  # a few blob chunks per thread hop and per socket write
MAX_NUMBER_DIGITS = 19  # below 2**63: no huge-integer parsing from a header


class EntryOut(BaseModel):
    id: str
    name: str
    path: str
    type: Literal["file", "folder"]
    size: int
    sha256: str | None
    rev: str
    mtime: float | None
    parent_id: str | None


class EntryList(BaseModel):
    entries: list[EntryOut]
    next_cursor: str | None


class FolderCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = path_field()


class EntryUpdate(BaseModel):
    """Exactly one of the three: a new absolute path, a new name, or a new parent folder."""

    model_config = ConfigDict(extra="forbid")
    path: str | None = None
    name: str | None = None
    parent_id: str | None = None


# What the server accepts: an object with exactly one of the three, none of them null.
_ENTRY_UPDATE_SCHEMA: dict[str, Any] = {
    "title": "EntryUpdate",
    "description": EntryUpdate.__doc__,
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,
    "properties": {
        "path": {"type": "string", **PATH_SCHEMA},
        "name": {"type": "string", **NAME_SCHEMA},
        "parent_id": {"type": "string", "description": "the id of the new parent folder"},
    },
}


Model = TypeVar("Model", bound=BaseModel)


def _files(request: Request) -> FileService:
    service: FileService = request.app.state.files
    return service


def _body_schema(model: type[BaseModel] | dict[str, Any]) -> dict[str, Any]:
    schema = model if isinstance(model, dict) else model.model_json_schema()
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    }


async def json_body(request: Request, model: type[Model]) -> Model:
    """Parse a JSON body by hand so malformed JSON is ``bad-request`` and a wrong field
    is ``validation``, as the API guide promises."""
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise Problem("bad-request", "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise Problem("validation", "the request body must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        raise Problem("validation", "the request body is invalid", errors=errors) from None


def etag_value(header: str | None) -> str | None:
    """``If-Match``/``If-Range`` value as a rev: quotes and a weak prefix removed; ``*`` is None."""
    if header is None:
        return None
    value = header.strip()
    if value.startswith("W/"):
        value = value[2:]
    value = value.strip('"')
    return None if value in ("", "*") else value


def _entry_response(entry: Entry, status: int = 200) -> JSONResponse:
    return JSONResponse(entry.to_json(), status_code=status, headers={"ETag": f'"{entry.rev}"'})


@router.get("/metadata", response_model=EntryOut)
def metadata(principal: ReadPrincipal, request: Request, path: EntryPath) -> JSONResponse:
    return _entry_response(_files(request).lookup(principal, path))


@router.get("/files", response_model=EntryList)
def list_files(
    principal: ReadPrincipal,
    request: Request,
    path: FolderPath = None,
    parent_id: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    cursor: ListCursor = None,
) -> dict[str, Any]:
    if path is not None and parent_id is not None:
        raise Problem("validation", "give 'path' or 'parent_id', not both")
    entries, next_cursor = _files(request).list_folder(
        principal, path=path, parent_id=parent_id, limit=limit, cursor=cursor
    )
    return {"entries": [e.to_json() for e in entries], "next_cursor": next_cursor}


@router.post(
    "/folders",
    response_model=EntryOut,
    status_code=201,
    openapi_extra=_body_schema(FolderCreate),
    responses={200: {"model": EntryOut, "description": "the folder already existed"}},
)
async def create_folder(principal: WritePrincipal, request: Request) -> JSONResponse:
    body = await json_body(request, FolderCreate)
    folder, created = await anyio.to_thread.run_sync(
        _files(request).create_folder, principal, body.path
    )
    return _entry_response(folder, 201 if created else 200)


@router.get("/files/{entry_id}", response_model=EntryOut)
def get_entry(principal: ReadPrincipal, request: Request, entry_id: str) -> JSONResponse:
    return _entry_response(_files(request).get(principal, entry_id))


@router.patch(
    "/files/{entry_id}", response_model=EntryOut, openapi_extra=_body_schema(_ENTRY_UPDATE_SCHEMA)
)
async def update_entry(
    principal: WritePrincipal,
    request: Request,
    entry_id: str,
    if_match: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    body = await json_body(request, EntryUpdate)

    def move() -> Entry:
        return _files(request).move(
            principal,
            entry_id,
            path=body.path,
            name=body.name,
            parent_id=body.parent_id,
            if_match=etag_value(if_match),
        )

    return _entry_response(await anyio.to_thread.run_sync(move))


@router.delete("/files/{entry_id}", status_code=204)
def delete_entry(
    principal: WritePrincipal,
    request: Request,
    entry_id: str,
    if_match: Annotated[str | None, Header()] = None,
) -> Response:
    _files(request).delete(principal, entry_id, if_match=etag_value(if_match))
    return Response(status_code=204)


def _number(text: str) -> int:
    text = text.strip()
    if not text or not text.isascii() or not text.isdigit() or len(text) > MAX_NUMBER_DIGITS:
        raise Problem("bad-request", "the Range header is malformed")
    return int(text)


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range as (start, end inclusive), or None to send the whole file.

    Other units and multi-range requests are ignored (RFC 9110 allows it); broken
    syntax is a 400; a range outside the file is a 416.
    """
    if header is None:
        return None
    unit, sep, spec = header.partition("=")
    if not sep:
        raise Problem("bad-request", "the Range header is malformed")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        raise Problem("bad-request", "the Range header is malformed")
    unsatisfiable = Problem(
        "range-not-satisfiable",
        f"the file has {size} bytes",
        headers={"Content-Range": f"bytes */{size}"},
    )
    if first.strip() == "":
        suffix = _number(last)
        if suffix == 0 or size == 0:
            raise unsatisfiable
        return max(0, size - suffix), size - 1
    start = _number(first)
    end = _number(last) if last.strip() else None
    if end is not None and end < start:
        raise Problem("bad-request", "the Range header is malformed (end before start)")
    if end is None:
        end = size - 1
    if start >= size:
        raise unsatisfiable
    return start, min(end, size - 1)


def _content_headers(entry: Entry) -> dict[str, str]:
    assert entry.sha256 is not None
    digest = base64.b64encode(bytes.fromhex(entry.sha256)).decode("ascii")
    headers = {
        "ETag": f'"{entry.rev}"',
        "Repr-Digest": f"sha-256=:{digest}:",
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(entry.name, safe='')}",
        "Cache-Control": "private, no-cache",
    }
    if entry.mtime is not None:
        headers["Last-Modified"] = email.utils.formatdate(entry.mtime, usegmt=True)
    return headers


async def _stream(handle: BinaryIO, length: int, first: bytes) -> AsyncIterator[bytes]:
    """``length`` bytes of ``handle`` (``first`` already read), read (and their chunks
    checked) in a worker thread one piece ahead of the piece being sent, so the disk, the
    checking and the socket overlap instead of taking turns."""

    def read_next(remaining: int) -> asyncio.Future[bytes] | None:
        if remaining <= 0:
            return None
        return asyncio.ensure_future(
            anyio.to_thread.run_sync(handle.read, min(READ_SIZE, remaining))
        )

    remaining = length - len(first)
    ahead = read_next(remaining) if first else None
    try:
        if first:
            yield first
        elif length:
            log.error("blob ended %s bytes early", length)
        while ahead is not None:
            chunk = await ahead
            ahead = None
            if not chunk:
                log.error("blob ended %s bytes early", remaining)
                break
            remaining -= len(chunk)
            ahead = read_next(remaining)
            yield chunk
    finally:
        _close_after(ahead, handle)


def _close_after(read: asyncio.Future[bytes] | None, handle: BinaryIO) -> None:
    """Close ``handle`` once ``read`` is over: a worker thread cannot be stopped, and a
    stream cut short (the client went away, a damaged chunk) may leave one running."""

    def close(done: asyncio.Future[bytes]) -> None:
        if not done.cancelled():
            done.exception()  # retrieved: a read nobody waits for any more is no error
        handle.close()

    if read is None:
        handle.close()
    else:
        read.add_done_callback(close)


_CONTENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/octet-stream": {}}, "description": "the whole file"},
    206: {"content": {"application/octet-stream": {}}, "description": "one byte range"},
}


# GET and HEAD are two routes (one handler) so each has its own OpenAPI operation id.
@router.get(
    "/files/{entry_id}/content",
    response_class=StreamingResponse,
    responses=_CONTENT_RESPONSES,
    operation_id="download_content",
)
@router.head(
    "/files/{entry_id}/content",
    response_class=StreamingResponse,
    responses=_CONTENT_RESPONSES,
    operation_id="download_content_head",
)
async def download(
    principal: ReadPrincipal,
    request: Request,
    entry_id: str,
    range_header: Annotated[str | None, Header(alias="range")] = None,
    if_range: Annotated[str | None, Header()] = None,
    if_none_match: Annotated[str | None, Header()] = None,
    rev: Annotated[
        str | None, Query(max_length=64, description="a past revision (from /revisions)")
    ] = None,
) -> Response:
    files = _files(request)
    if rev is not None:
        # That revision's bytes, under its own rev as the ETag (the file may be in the trash).
        entry = await anyio.to_thread.run_sync(Revisions(files).content, principal, entry_id, rev)
    else:
        entry = await anyio.to_thread.run_sync(files.get, principal, entry_id)
    if entry.type != "file":
        raise Problem("conflict", f"{entry.path} is a folder; only files have content")
    headers = _content_headers(entry)
    if if_none_match is not None and etag_value(if_none_match) == entry.rev:
        return Response(status_code=304, headers=headers)
    if if_range is not None and etag_value(if_range) != entry.rev:
        range_header = None  # the file changed: send all of it (RFC 9110 If-Range)
    span = parse_range(range_header, entry.size)
    start, end = span if span is not None else (0, entry.size - 1)
    length = end - start + 1
    status = 200
    if span is not None:
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{entry.size}"
    headers["Content-Length"] = str(length)
    if request.method == "HEAD":
        files.check(principal, "download", entry.path, entry.size)
        return Response(status_code=status, headers=headers)
    handle = await anyio.to_thread.run_sync(files.open_content, principal, entry, start)
    # The first piece is read (its chunks checked) before the answer starts: damage in it
    # is a content-damaged answer, not a stream cut before its first byte, which a client
    # takes for the network and resumes from the same offset, again and again.
    try:
        first = await anyio.to_thread.run_sync(handle.read, min(READ_SIZE, length))
    except BaseException:
        handle.close()
        raise
    return StreamingResponse(_stream(handle, length, first), status_code=status, headers=headers)
