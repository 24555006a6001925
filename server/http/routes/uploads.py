"""Upload routes: tus 1.0.0 at ``/api/v1/uploads`` (headers in, service calls, headers
out) and the batch upload of small files at ``/api/v1/uploads/batch``."""

from __future__ import annotations

import email.utils
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from dropline.server.http.auth import AnyPrincipal, WritePrincipal, require
from dropline.server.http.routes.files import EntryOut
from dropline.server.http.routes.params import PATH_SCHEMA, UPLOAD_METADATA_FORMAT
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem
from dropline.server.uploads.batch import MAX_BYTES, MAX_FILES, BatchUploads
from dropline.server.uploads.receive import BodyCut
from dropline.server.uploads.rows import UploadState
from dropline.server.uploads.sessions import UploadService
from dropline.server.uploads.tus import OFFSET_OCTET_STREAM, TUS_EXTENSIONS, TUS_VERSION

CHECKSUM_ALGORITHMS = "sha256,sha1"


async def check_tus_version(tus_resumable: str | None) -> None:
    if (tus_resumable or "").strip() != TUS_VERSION:
        raise Problem(
            "tus-version",
            f"send 'Tus-Resumable: {TUS_VERSION}'",
            headers={"Tus-Version": TUS_VERSION},
        )


async def require_tus(request: Request) -> None:
    # async: a header check is not worth a trip to the thread pool (FastAPI runs plain
    # functions there). The header is declared in each operation's document below.
    await check_tus_version(request.headers.get("tus-resumable"))


router = APIRouter(prefix="/api/v1/uploads", tags=["uploads"])
# After the credential in each signature, so an anonymous caller hears 401 first.
Tus = Annotated[None, Depends(require_tus)]


# The tus headers as the handlers read them (by hand, from the request: the fast lane
# below serves POST and PATCH without FastAPI), declared for the OpenAPI document in
# lower case, as FastAPI names the headers it declares itself. Content-Type is not a
# parameter in OpenAPI: the PATCH's body says it; a POST may carry the first bytes (or
# all of them) as application/offset+octet-stream, which the description says.
def _header(name: str, required: bool, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "header",
        "required": required,
        "description": description,
        "schema": {"type": "string", **schema},
    }


_DIGITS = r"^[0-9]{1,19}$"
_TUS_RESUMABLE = _header("tus-resumable", True, "the tus protocol version", enum=[TUS_VERSION])
_UPLOAD_DOC: dict[str, list[dict[str, Any]]] = {
    "create": [
        _TUS_RESUMABLE,
        _header(
            "upload-length",
            True,
            "the file's size in bytes, at most Tus-Max-Size (OPTIONS); Upload-Defer-Length "
            "is not supported",
            pattern=r"^[0-9]{1,10}$",
        ),
        _header(
            "upload-metadata",
            True,
            "comma-separated 'key base64(value)' pairs: 'path' (absolute), or 'filename' "
            "with an optional 'parent_path'; optional 'sha256' (64 hex digits), 'mtime' "
            "(epoch seconds), 'if_rev'",
            format=UPLOAD_METADATA_FORMAT,
        ),
    ],
    "append": [
        _TUS_RESUMABLE,
        _header("upload-offset", True, "where these bytes start", pattern=_DIGITS),
        _header(
            "upload-checksum",
            False,
            "the chunk's checksum: 'sha256' or 'sha1', a space, base64 of the digest",
            pattern=r"^(?:sha256|sha1) [A-Za-z0-9+/]+={0,2}$",
        ),
        _header(
            "repr-digest",
            False,
            "the whole file's SHA-256 (RFC 9530), checked when the last byte arrives",
            pattern=r"^sha-256=:[A-Za-z0-9+/]{43}=:$",
        ),
    ],
    "tus": [_TUS_RESUMABLE],
}
_APPEND_BODY = {
    "required": True,
    "content": {OFFSET_OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
}


def _uploads(request: Request) -> UploadService:
    service: UploadService = request.app.state.uploads
    return service


def _content_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit():
        raise Problem("bad-request", "Content-Length is malformed")
    return int(raw)


async def _body(request: Request) -> AsyncIterator[bytes]:
    """The request body straight from ASGI ``receive``: one generator layer less than
    ``Request.stream()`` on a path that sees every 64 KiB piece of a large upload."""
    receive = request.receive
    while True:
        message = await receive()
        if message["type"] == "http.request":
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                return
        elif message["type"] == "http.disconnect":
            raise BodyCut()


def _headers(state: UploadState) -> dict[str, str]:
    headers = {
        "Tus-Resumable": TUS_VERSION,
        "Upload-Offset": str(state.offset),
        "Upload-Expires": email.utils.formatdate(state.expires_at, usegmt=True),
        "Cache-Control": "no-store",
    }
    if state.entry_id is not None and state.rev is not None:
        headers["Dropline-Entry-Id"] = state.entry_id
        headers["Dropline-Rev"] = state.rev
    return headers


@router.options("", status_code=204)
def options(principal: AnyPrincipal, request: Request) -> Response:
    return Response(
        status_code=204,
        headers={
            "Tus-Resumable": TUS_VERSION,
            "Tus-Version": TUS_VERSION,
            "Tus-Extension": TUS_EXTENSIONS,
            "Tus-Checksum-Algorithm": CHECKSUM_ALGORITHMS,
            "Tus-Max-Size": str(_uploads(request).max_size),
        },
    )


async def _create(request: Request, principal: Principal) -> Response:
    """tus creation (and creation-with-upload): the POST's work, from its headers."""
    h = request.headers
    content_length = _content_length(request)
    with_data = (h.get("content-type") or "").split(";")[0].strip().lower() == OFFSET_OCTET_STREAM
    if not with_data and content_length:
        raise Problem(
            "unsupported-media-type", f"data sent with the POST needs {OFFSET_OCTET_STREAM}"
        )
    try:
        state = await _uploads(request).create(
            principal,
            upload_length=h.get("upload-length"),
            defer_length=h.get("upload-defer-length"),
            metadata=h.get("upload-metadata"),
            body=_body(request) if with_data else None,
            content_length=content_length,
        )
    except BodyCut:
        return Response(status_code=400)  # nobody is listening any more
    headers = _headers(state)
    headers["Location"] = f"/api/v1/uploads/{state.id}"
    if not with_data:
        del headers["Upload-Offset"]
    if state.entry is not None:
        # Published by this very request: the entry comes along, no GET needed.
        return JSONResponse(state.entry.to_json(), status_code=201, headers=headers)
    return Response(status_code=201, headers=headers)


async def _patch(request: Request, principal: Principal) -> Response:
    """tus append: the PATCH's work, from its headers."""
    h = request.headers
    try:
        state, _cut = await _uploads(request).append(
            principal,
            request.path_params["upload_id"],
            upload_offset=h.get("upload-offset"),
            checksum=h.get("upload-checksum"),
            content_type=h.get("content-type"),
            content_length=_content_length(request),
            body=_body(request),
            repr_digest=h.get("repr-digest"),
        )
    except BodyCut:
        return Response(status_code=400)  # nobody is listening any more
    return Response(status_code=204, headers=_headers(state))


# The FastAPI routes of POST and PATCH declare their headers for the OpenAPI document;
# the handlers read them from the request (the fast lane below calls them the same way).


@router.post(
    "",
    status_code=201,
    openapi_extra={"parameters": _UPLOAD_DOC["create"]},
    description="tus creation. With Content-Type: application/offset+octet-stream the body "
    "carries the first bytes, or all of them (creation-with-upload).",
    responses={
        201: {
            "model": EntryOut,
            "description": "Created. When this request carried the whole file, it is "
            "published and the answer holds its entry; otherwise the body is empty.",
        }
    },
)
async def create(principal: WritePrincipal, _tus: Tus, request: Request) -> Response:
    return await _create(request, principal)


@router.head("/{upload_id}", openapi_extra={"parameters": _UPLOAD_DOC["tus"]})
async def head(principal: WritePrincipal, _tus: Tus, request: Request, upload_id: str) -> Response:
    state = await _uploads(request).head(principal, upload_id)
    headers = _headers(state)
    headers["Upload-Length"] = str(state.length)
    if state.metadata:
        headers["Upload-Metadata"] = state.metadata
    return Response(status_code=200, headers=headers)


@router.patch(
    "/{upload_id}",
    status_code=204,
    openapi_extra={"parameters": _UPLOAD_DOC["append"], "requestBody": _APPEND_BODY},
)
async def patch(principal: WritePrincipal, _tus: Tus, request: Request, upload_id: str) -> Response:
    return await _patch(request, principal)


@router.delete("/{upload_id}", status_code=204, openapi_extra={"parameters": _UPLOAD_DOC["tus"]})
async def terminate(
    principal: WritePrincipal, _tus: Tus, request: Request, upload_id: str
) -> Response:
    await _uploads(request).terminate(principal, upload_id)
    return Response(status_code=204, headers={"Tus-Resumable": TUS_VERSION})


# -- batch uploads (dropline.server.uploads.batch) -------------------------------------------


class BatchFileResult(BaseModel):
    index: int
    path: str
    status: int
    entry: EntryOut | None = None
    problem: dict[str, Any] | None = None


class BatchOut(BaseModel):
    results: list[BatchFileResult]
    succeeded: int
    failed: int


_BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["manifest", "file"],
                    "properties": {
                        "manifest": {
                            "type": "object",
                            "description": "one entry per file part, in the same order",
                            "required": ["files"],
                            "properties": {
                                "files": {
                                    "type": "array",
                                    "maxItems": MAX_FILES,
                                    "items": {
                                        "type": "object",
                                        "required": ["path", "sha256"],
                                        "properties": {
                                            "path": {"type": "string", **PATH_SCHEMA},
                                            "sha256": {
                                                "type": "string",
                                                "pattern": "^[0-9a-f]{64}$",
                                            },
                                            "mtime": {"type": "number"},
                                            "if_rev": {"type": "string"},
                                        },
                                    },
                                }
                            },
                        },
                        "file": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": f"one part per file; at most {MAX_FILES} files "
                            f"and {MAX_BYTES} bytes in all",
                        },
                    },
                },
                "encoding": {"manifest": {"contentType": "application/json"}},
            }
        },
    }
}


def _batches(request: Request) -> BatchUploads:
    service: BatchUploads = request.app.state.batches
    return service


@router.post(
    "/batch",
    response_model=None,
    responses={
        200: {
            "model": BatchOut,
            "description": "One result per file, in manifest order: its entry (status 201) "
            "or its problem; the files that passed were published together.",
        }
    },
    openapi_extra=_BATCH_BODY,
)
async def upload_batch(principal: WritePrincipal, request: Request) -> Response:
    try:
        results = await _batches(request).upload(
            principal,
            content_type=request.headers.get("content-type"),
            content_length=_content_length(request),
            body=_body(request),
        )
    except BodyCut:
        return Response(status_code=400)  # nobody is listening any more
    succeeded = sum(1 for r in results if r.entry is not None)
    return JSONResponse(
        {
            "results": [r.to_json() for r in results],
            "succeeded": succeeded,
            "failed": len(results) - succeeded,
        },
        headers={"Cache-Control": "no-store"},
    )


# -- the fast lane of the hot routes ---------------------------------------------------
# Every upload's bytes pass through POST and PATCH. FastAPI's own work per request on
# them (matching through every included router, solving dependencies and parameters)
# measured as a third of all the Python calls of a whole 4 KiB upload (8,100 -> 5,400),
# so the same handlers also run as plain Starlette routes placed ahead of the routers.
# The FastAPI routes above stay for the OpenAPI document, and answer if the lane is off.

_write_scope = require("files:write")


class _FastLane:
    """A plain ASGI endpoint: the credential (checked in the thread pool, as FastAPI runs
    the dependency), then the tus version, then the handler. Problems raised here reach
    the app's exception handlers exactly as from a FastAPI route."""

    def __init__(self, handler: Callable[[Request, Principal], Awaitable[Response]]) -> None:
        self.handler = handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        principal = await run_in_threadpool(_write_scope, request)
        await check_tus_version(request.headers.get("tus-resumable"))
        response = await self.handler(request, principal)
        await response(scope, receive, send)


def install_fast_lane(app: Starlette) -> None:
    """Put POST and PATCH of tus uploads ahead of the app's routers."""
    app.router.routes[0:0] = [
        Route(router.prefix, _FastLane(_create), methods=["POST"], include_in_schema=False),
        Route(
            router.prefix + "/{upload_id}",
            _FastLane(_patch),
            methods=["PATCH"],
            include_in_schema=False,
        ),
    ]
