"""The HTTP details of the Dropline API: headers, tus metadata and checksums, download
streams, and the one boundary where httpx's exceptions become :mod:`dropline.sdk.errors`.

Used by :mod:`dropline.sdk.client`; nothing here sends a request of its own.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar
from urllib.parse import quote

import httpcore
import httpx

from dropline.sdk.errors import FOREIGN_ERRORS, ProtocolError, ValidationError, from_transport_error
from dropline.sdk.models import UploadResult

TUS_VERSION = "1.0.0"
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
RESPONSE_READ_SIZE = 1024 * 1024

# httpcore reads a response body 64 KiB at a time, and every read is one trip through its
# parser, the event loop and the download loop: 16,384 trips per GiB, about a third of the
# agent's CPU for a big download. Up to 1 MiB a read (the event loop hands over at most
# 256 KiB a time anyway) cut the client's CPU for 512 MiB from 1.4-1.9 s to 1.1-1.2 s. Only
# ever raised, never lowered below what the process chose; small answers are unaffected.
if httpcore.AsyncHTTP11Connection.READ_NUM_BYTES < RESPONSE_READ_SIZE:
    httpcore.AsyncHTTP11Connection.READ_NUM_BYTES = RESPONSE_READ_SIZE


@contextmanager
def translating() -> Iterator[None]:
    """The one boundary: inside it, httpx's exceptions become :mod:`dropline.sdk.errors`."""
    try:
        yield
    except FOREIGN_ERRORS as exc:
        raise from_transport_error(exc) from exc


class CursorPage(Protocol):
    @property
    def next_cursor(self) -> str | None: ...


PageT = TypeVar("PageT", bound=CursorPage)


async def cursor_pages(
    request: Callable[..., Awaitable[httpx.Response]],
    url: str,
    params: dict[str, str | int],
    parse: Callable[[object], PageT],
) -> AsyncIterator[PageT]:
    """Every page of a cursor-paged listing (files, revisions, trash), in order: each
    request carries the ``next_cursor`` of the page before it."""
    params = dict(params)
    while True:
        page = parse(json_body(await request("GET", url, params=params)))
        yield page
        if page.next_cursor is None:
            return
        params["cursor"] = page.next_cursor


def quote_id(entry_id: str) -> str:
    if not entry_id:
        raise ValidationError("an entry id is required")
    return quote(entry_id, safe="")


def etag(rev: str) -> str:
    return f'"{rev}"'


def unquote_etag(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    if value.startswith("W/"):
        value = value[2:]
    return value[1:-1] if len(value) >= 2 and value[0] == value[-1] == '"' else value


def int_header(response: httpx.Response, name: str) -> int | None:
    raw = response.headers.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ProtocolError(f"the {name} header is not a number: {raw!r:.40}") from None
    if value < 0:
        raise ProtocolError(f"the {name} header is negative: {value}")
    return value


def sha256_from_repr_digest(value: str | None) -> str | None:
    """Hex SHA-256 from ``Repr-Digest: sha-256=:<base64>:`` (RFC 9530), if present."""
    if not value:
        return None
    for member in value.split(","):
        name, _, rest = member.strip().partition("=")
        if name.strip().lower() != "sha-256":
            continue
        rest = rest.strip()
        if len(rest) < 2 or rest[0] != ":" or rest[-1] != ":":
            return None
        try:
            raw = base64.b64decode(rest[1:-1], validate=True)
        except (binascii.Error, ValueError):
            return None
        return raw.hex() if len(raw) == 32 else None
    return None


def encode_upload_metadata(pairs: Mapping[str, str]) -> str:
    """tus ``Upload-Metadata``: comma-separated ``key base64(value)`` pairs."""
    return ",".join(
        f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}"
        for key, value in pairs.items()
    )


class SizedBody(Protocol):
    """A request body of known length whose bytes arrive as they are read (a streamed
    upload chunk); iterable more than once."""

    def __len__(self) -> int: ...

    def __aiter__(self) -> AsyncIterator[bytes]: ...


def chunk_checksum(data: bytes | memoryview) -> str:
    """The tus ``Upload-Checksum`` value for ``data``."""
    return "sha256 " + base64.b64encode(hashlib.sha256(data).digest()).decode("ascii")


async def chunk_checksum_async(data: bytes | memoryview) -> str:
    # Hashing megabytes takes milliseconds: do it off the event loop (hashlib frees the GIL).
    if len(data) > 1024 * 1024:
        return await asyncio.to_thread(chunk_checksum, data)
    return chunk_checksum(data)


def decode_upload_metadata(header: str | None) -> dict[str, str]:
    """tus ``Upload-Metadata`` back into a dict; pairs that do not decode are left out."""
    pairs: dict[str, str] = {}
    for item in (header or "").split(","):
        key, _, value = item.strip().partition(" ")
        if not key:
            continue
        try:
            pairs[key] = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            continue
    return pairs


def upload_result(response: httpx.Response) -> UploadResult:
    offset = int_header(response, "Upload-Offset")
    if offset is None:
        raise ProtocolError("the upload answer has no Upload-Offset")
    meta = decode_upload_metadata(response.headers.get("Upload-Metadata"))
    return UploadResult(
        offset=offset,
        length=int_header(response, "Upload-Length"),
        entry_id=response.headers.get("Dropline-Entry-Id"),
        rev=response.headers.get("Dropline-Rev"),
        path=meta.get("path"),
        sha256=meta.get("sha256"),
    )


def json_body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        raise ProtocolError(
            f"the server's answer to {response.request.url.path} is not JSON"
        ) from None


class ContentStream:
    """An open download: where it starts, what it is, and its bytes as they arrive."""

    def __init__(self, response: httpx.Response, requested_start: int) -> None:
        self._response = response
        self.status = response.status_code
        self.rev = unquote_etag(response.headers.get("ETag"))
        self.sha256 = sha256_from_repr_digest(response.headers.get("Repr-Digest"))
        length = int_header(response, "Content-Length")
        if self.status == 206:
            self.offset, self.total = self._content_range(response.headers.get("Content-Range"))
            if self.offset != requested_start:
                raise ProtocolError(
                    f"asked for bytes from {requested_start}, got them from {self.offset}"
                )
        else:
            # A 200 to a Range request means If-Range did not match: the whole file comes.
            self.offset = 0
            self.total = length

    @property
    def resumed(self) -> bool:
        return self.status == 206

    @staticmethod
    def _content_range(value: str | None) -> tuple[int, int | None]:
        # "bytes 100-999/1000"
        if not value or not value.startswith("bytes "):
            raise ProtocolError(f"a 206 answer with Content-Range {value!r}")
        span, _, total = value[len("bytes ") :].partition("/")
        first, _, _last = span.partition("-")
        try:
            return int(first), None if total.strip() == "*" else int(total)
        except ValueError:
            raise ProtocolError(f"a 206 answer with Content-Range {value!r}") from None

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body as it arrives; a connection lost midway raises UnavailableError."""
        with translating():
            async for chunk in self._response.aiter_raw():
                yield chunk
