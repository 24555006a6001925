"""Public share-link routes: ``GET /s/{token}`` lists the files, ``GET /s/{token}/files/{id}``
downloads one (and counts it). No API credential: the link is the credential, and a
password, if the link has one, comes as HTTP Basic or ``Dropline-Share-Password``.

A browser asking for HTML at ``/s/{token}`` gets a download page instead of JSON, with
a password form (posted back to ``/s/{token}``) where the link has a password
(dropline.server.http.web.share_page).
"""

from __future__ import annotations

import base64
import binascii
import email.utils
from collections.abc import AsyncIterator
from typing import Any, BinaryIO
from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from dropline.server.http.routes.transfers import audit_context
from dropline.server.http.web import share_page
from dropline.server.problems import Problem
from dropline.server.transfers.shares import Share, SharedFile, ShareService

router = APIRouter(tags=["shares"])

READ_SIZE = 1024 * 1024
PASSWORD_HEADER = "dropline-share-password"


def _password(request: Request, token: str) -> str | None:
    given = request.headers.get(PASSWORD_HEADER)
    if given:
        return given
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not value:
        # The share page's form, remembered by this browser for this link.
        return share_page.password_from_cookie(request, token)
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        return None
    return decoded.partition(":")[2] or None


def _client_ip(request: Request) -> str | None:
    ip = getattr(request.state, "client_ip", None)
    if ip is None and request.client is not None:
        return request.client.host
    return ip if isinstance(ip, str) else None


async def _open(request: Request, token: str, password: str | None = None) -> Share:
    service: ShareService = request.app.state.shares
    password = password or _password(request, token)
    try:
        return await anyio.to_thread.run_sync(service.open, token, password, _client_ip(request))
    except Problem as exc:
        security = getattr(request.app.state, "security", None)
        if security is not None and exc.slug == "share-password" and password:
            # A wrong password counts towards the address's ban, like a failed sign-in.
            await anyio.to_thread.run_sync(
                security.on_auth_failure, request, "wrong share-link password", "share"
            )
        raise


def _headers(shared: SharedFile) -> dict[str, str]:
    digest = base64.b64encode(bytes.fromhex(shared.sha256)).decode("ascii")
    headers = {
        "ETag": f'"{shared.rev}"',
        "Repr-Digest": f"sha-256=:{digest}:",
        "Content-Type": "application/octet-stream",
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(shared.name, safe='')}",
        "Content-Length": str(shared.size),
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
    }
    if shared.mtime is not None:
        headers["Last-Modified"] = email.utils.formatdate(shared.mtime, usegmt=True)
    return headers


async def _stream(handle: BinaryIO) -> AsyncIterator[bytes]:
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(handle.read, READ_SIZE)
            if not chunk:
                return
            yield chunk
    finally:
        handle.close()


@router.get("/s/{token}", response_model=None)
async def share_listing(request: Request, token: str) -> Response:
    if share_page.wants_html(request):
        return await share_page.show(request, token, _open)
    share = await _open(request, token)
    doc: dict[str, Any] = share.to_json(token)
    return JSONResponse(
        doc, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
    )


@router.post("/s/{token}", include_in_schema=False)
async def share_password(request: Request, token: str) -> Response:
    """The share page's password form."""
    return await share_page.submit_password(request, token, _open)


@router.head("/s/{token}/files/{file_id}")
async def share_file_head(request: Request, token: str, file_id: str) -> Response:
    """The file's headers; unlike a download, it does not count."""
    share = await _open(request, token)
    return Response(status_code=200, headers=_headers(share.file(file_id)))


@router.get(
    "/s/{token}/files/{file_id}",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}, "description": "the file"}},
)
async def share_download(request: Request, token: str, file_id: str) -> Response:
    share = await _open(request, token)
    service: ShareService = request.app.state.shares
    ctx = audit_context(request).with_actor(share.tenant_id, "share-link", share.id, "share")
    shared = await anyio.to_thread.run_sync(service.take_download, share, file_id, ctx)
    blobs = request.app.state.blobs
    try:
        handle = await anyio.to_thread.run_sync(blobs.open, shared.blob_id)
    except FileNotFoundError:
        raise Problem("share-expired", "the shared version of this file is gone") from None
    return StreamingResponse(_stream(handle), headers=_headers(shared))
