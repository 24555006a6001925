"""``DroplineClient``: the typed async SDK for the Dropline API (files, change feed, tus, Range).

One pooled ``httpx.AsyncClient`` per instance; every call goes through the circuit
breaker and the retry policy, and every httpx exception becomes a :mod:`dropline.sdk.errors`
class at :func:`dropline.sdk.wire.translating`.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

import httpx

from dropline.sdk.breaker import CircuitBreaker
from dropline.sdk.client_undo import UndoCalls
from dropline.sdk.credentials import ApiKeyCredentials, OAuthCredentials
from dropline.sdk.errors import (
    DroplineError,
    NotFoundError,
    ProtocolError,
    UnavailableError,
    ValidationError,
    from_response,
    request_may_have_applied,
)
from dropline.sdk.models import (
    Account,
    Change,
    ChangeAction,
    ChangePage,
    Entry,
    EntryPage,
    EntryType,
    UploadResult,
    UploadSession,
)
from dropline.sdk.retry import NO_RETRY, RetryPolicy
from dropline.sdk.wire import (
    OFFSET_OCTET_STREAM,
    TUS_VERSION,
    ContentStream,
    SizedBody,
    chunk_checksum_async,
    cursor_pages,
    encode_upload_metadata,
    etag,
    int_header,
    json_body,
    quote_id,
    translating,
    upload_result,
)

__all__ = [
    "NO_RETRY",
    "Account",
    "ApiKeyCredentials",
    "Change",
    "ChangeAction",
    "ChangePage",
    "CircuitBreaker",
    "ContentStream",
    "DroplineClient",
    "Entry",
    "EntryType",
    "OAuthCredentials",
    "RetryPolicy",
    "UploadResult",
    "UploadSession",
]

log = logging.getLogger(__name__)


def repr_digest(sha256_hex: str) -> str:
    """``Repr-Digest: sha-256=:<base64>:`` (RFC 9530) for a hex SHA-256."""
    try:
        raw = bytes.fromhex(sha256_hex)
    except ValueError:
        raise ValidationError("a SHA-256 is 64 hex digits") from None
    if len(raw) != 32:
        raise ValidationError("a SHA-256 is 64 hex digits")
    return f"sha-256=:{base64.b64encode(raw).decode('ascii')}:"


API = "/api/v1"
LONG_POLL_MAX = 120  # seconds; the server's cap for /changes/wait
LONG_POLL_GRACE = 30.0  # extra HTTP read time past the server's long-poll timeout
# An idle connection is dropped here before the server's keep-alive (uvicorn: 5 s) can
# close it: at httpx's default of the same 5 s, a request sent on a connection the server
# was closing failed with a ReadError (200 agents on one loaded machine saw one each).
KEEPALIVE_EXPIRY = 3.0


class DroplineClient(UndoCalls):
    """The async client. Use as ``async with DroplineClient(url, credentials) as client``.

    ``user_agent`` names the product calling (``dropline-agent/0.1.0``): the server keeps
    it with every revision the client publishes, so a file's history says where each
    version came from."""

    def __init__(
        self,
        base_url: str,
        credentials: httpx.Auth,
        *,
        retry: RetryPolicy | None = None,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float | httpx.Timeout = 30.0,
        max_connections: int = 16,
        user_agent: str = "dropline-sdk/0.1",
    ) -> None:
        self.retry = retry or RetryPolicy()
        self.breaker = breaker or CircuitBreaker()
        self._http = httpx.AsyncClient(
            base_url=base_url,
            auth=credentials,
            transport=transport,
            timeout=timeout,
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=KEEPALIVE_EXPIRY,
            ),
            headers={"User-Agent": user_agent, "Accept": "application/json"},
            follow_redirects=False,  # never carry a credential to a place we did not name
        )
        self.base_url = self._http.base_url

    async def __aenter__(self) -> DroplineClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- transport ---------------------------------------------------------------------

    def _url(self, url: str | httpx.URL) -> httpx.URL:
        """An API path (``/api/v1/...``) under the base URL, which may carry a path prefix
        (a server behind ``https://host/dropline``); an absolute URL only if it is on the
        configured server's origin, since it would get our credentials."""
        base = self.base_url
        if isinstance(url, httpx.URL):
            target = url
        else:
            path = url if url.startswith("/") else "/" + url
            target = base.copy_with(raw_path=base.raw_path.rstrip(b"/") + path.encode("ascii"))
        if (target.scheme, target.host, target.port) != (base.scheme, base.host, base.port):
            raise ValidationError(
                f"refusing to send credentials to {target.scheme}://{target.host}: "
                "it is not the configured server",
                title="Unexpected address",
            )
        return target

    def _upload_url(self, location: str) -> httpx.URL:
        """Where a tus upload lives, from the ``Location`` the server gave (kept as given so
        it survives a change of port): absolute, a path already under the base URL's
        prefix, or a path relative to the API root."""
        try:
            parsed = httpx.URL(location)
        except httpx.InvalidURL as exc:
            raise ValidationError(f"not an upload URL: {location!r:.80}") from exc
        if parsed.is_absolute_url:
            return self._url(parsed)
        prefix = self.base_url.raw_path.rstrip(b"/")
        raw = parsed.raw_path
        if prefix and (raw == prefix or raw.startswith(prefix + b"/")):
            return self._url(self.base_url.copy_with(raw_path=raw))
        return self._url(location)

    async def _send_once(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        content: bytes | memoryview | SizedBody | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: httpx.Timeout | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        self.breaker.before_call()
        try:
            with translating():
                request = self._http.build_request(
                    method,
                    self._url(url),
                    params=params,
                    json=json,
                    content=bytes(content) if isinstance(content, memoryview) else content,
                    headers=headers,
                    timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
                )
                response = await self._http.send(request, stream=stream)
        except DroplineError as err:
            if isinstance(err, UnavailableError):
                self.breaker.record_failure()
            else:
                self.breaker.release()
            raise
        except BaseException:
            self.breaker.release()
            raise
        if response.is_success:
            self.breaker.record_success()
            return response
        try:
            if stream:
                with translating():
                    await response.aread()
        finally:
            await response.aclose()
        failure = from_response(response)
        if isinstance(failure, UnavailableError):
            self.breaker.record_failure()
        else:
            self.breaker.record_success()
        raise failure

    async def _request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        idempotent: bool = True,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        policy = retry or self.retry
        what = f"{method} {httpx.URL(url).path if isinstance(url, str) else url.path}"
        return await policy.call(
            lambda: self._send_once(method, url, **kwargs), idempotent=idempotent, what=what
        )

    async def _entry(self, method: str, url: str, **kwargs: Any) -> Entry:
        response = await self._request(method, url, **kwargs)
        return Entry.from_json(json_body(response))

    # -- account and files -------------------------------------------------------------

    async def me(self) -> Account:
        response = await self._request("GET", f"{API}/me")
        return Account.from_json(json_body(response))

    async def metadata(self, path: str) -> Entry:
        """The entry at ``path``; :class:`NotFoundError` if there is none."""
        return await self._entry("GET", f"{API}/metadata", params={"path": path})

    async def get(self, entry_id: str) -> Entry:
        return await self._entry("GET", f"{API}/files/{quote_id(entry_id)}")

    async def iter_folder(
        self,
        path: str | None = None,
        parent_id: str | None = None,
        *,
        page_size: int | None = None,
    ) -> AsyncIterator[Entry]:
        """A folder's entries sorted by name, fetched page by page."""
        if (path is None) == (parent_id is None):
            raise ValidationError("list a folder by path or by parent_id (exactly one)")
        params: dict[str, str | int] = (
            {"path": path} if path is not None else {"parent_id": str(parent_id)}
        )
        if page_size is not None:
            params["limit"] = page_size
        async for page in cursor_pages(self._request, f"{API}/files", params, EntryPage.from_json):
            for entry in page.entries:
                yield entry

    async def list_folder(
        self,
        path: str | None = None,
        parent_id: str | None = None,
        *,
        page_size: int | None = None,
    ) -> list[Entry]:
        return [e async for e in self.iter_folder(path, parent_id, page_size=page_size)]

    async def create_folder(self, path: str) -> Entry:
        """Create ``path`` and missing parents; an existing folder is returned as is."""
        # Safe to replay: the API answers 200 with the folder when it already exists.
        return await self._entry("POST", f"{API}/folders", json={"path": path})

    async def move(self, entry_id: str, new_path: str, if_rev: str | None = None) -> Entry:
        """Move or rename; with ``if_rev`` only if the entry is still at that revision."""
        headers = {"If-Match": etag(if_rev)} if if_rev is not None else None
        return await self._entry(
            "PATCH",
            f"{API}/files/{quote_id(entry_id)}",
            json={"path": new_path},
            headers=headers,
            idempotent=False,
        )

    async def delete(self, entry_id: str, if_rev: str | None = None) -> None:
        """Move to the trash; with ``if_rev`` only if the entry is still at that revision."""
        headers = {"If-Match": etag(if_rev)} if if_rev is not None else None
        url = f"{API}/files/{quote_id(entry_id)}"
        ambiguous = False

        async def attempt() -> None:
            nonlocal ambiguous
            try:
                await self._send_once("DELETE", url, headers=headers)
            except NotFoundError:
                if ambiguous:
                    return  # an earlier attempt deleted it; only its answer was lost
                raise
            except DroplineError as err:
                ambiguous = ambiguous or request_may_have_applied(err)
                raise

        await self.retry.call(attempt, what=f"DELETE {url}")

    # -- change feed -------------------------------------------------------------------

    async def latest_cursor(self) -> str:
        response = await self._request("GET", f"{API}/changes/latest-cursor")
        doc = json_body(response)
        cursor = doc.get("cursor") if isinstance(doc, dict) else None
        if not isinstance(cursor, str):
            raise ProtocolError("latest-cursor answered without a cursor")
        return cursor

    async def changes(self, cursor: str | None = None, limit: int | None = None) -> ChangePage:
        """One page of changes after ``cursor`` (from the start of the feed without one)."""
        params: dict[str, str | int] = {}
        if cursor is not None:
            params["cursor"] = cursor
        if limit is not None:
            params["limit"] = limit
        response = await self._request("GET", f"{API}/changes", params=params)
        return ChangePage.from_json(json_body(response))

    async def wait_changes(self, cursor: str, timeout: float = 60) -> ChangePage:
        """Long-poll: a page as soon as something changes after ``cursor``, or empty after
        ``timeout`` seconds (at most 120)."""
        seconds = max(1, min(LONG_POLL_MAX, int(timeout)))
        if self.breaker.state != "closed":
            # After an outage, probe with a quick call: a long-poll as the breaker's only
            # probe would keep every other request failing fast for the whole poll.
            page = await self.changes(cursor)
            if page.changes:
                return page
        http_timeout = httpx.Timeout(
            self._http.timeout.connect,
            read=seconds + LONG_POLL_GRACE,
            write=self._http.timeout.write,
            pool=self._http.timeout.pool,
        )
        response = await self._request(
            "GET",
            f"{API}/changes/wait",
            params={"cursor": cursor, "timeout": seconds},
            timeout=http_timeout,
        )
        return ChangePage.from_json(json_body(response))

    # -- tus uploads -------------------------------------------------------------------

    async def create_upload(
        self,
        path: str,
        length: int,
        *,
        sha256: str | None = None,
        mtime: float | None = None,
        if_rev: str | None = None,
        data: bytes | memoryview | None = None,
    ) -> UploadSession:
        """Start a tus upload of ``length`` bytes to ``path``; ``data`` may carry the first
        bytes (creation-with-upload: a small file is published by this one request)."""
        session, _entry = await self.start_upload(
            path, length, sha256=sha256, mtime=mtime, if_rev=if_rev, data=data
        )
        return session

    async def start_upload(
        self,
        path: str,
        length: int,
        *,
        sha256: str | None = None,
        mtime: float | None = None,
        if_rev: str | None = None,
        data: bytes | memoryview | None = None,
        checksum: bool | str = True,
    ) -> tuple[UploadSession, Entry | None]:
        """:meth:`create_upload`, and the published entry when ``data`` was the whole file
        (the server answers such a POST with the entry itself). ``checksum``: the
        ``Upload-Checksum`` of ``data`` if the caller has it already, True to compute it,
        False to send none (when ``sha256`` covers ``data`` as the whole file)."""
        if length < 0:
            raise ValidationError("an upload length cannot be negative")
        meta = {"path": path}
        if sha256 is not None:
            meta["sha256"] = sha256
        if mtime is not None:
            meta["mtime"] = repr(float(mtime))
        if if_rev is not None:
            meta["if_rev"] = if_rev
        headers = {
            "Tus-Resumable": TUS_VERSION,
            "Upload-Length": str(length),
            "Upload-Metadata": encode_upload_metadata(meta),
        }
        if data is not None:
            headers["Content-Type"] = OFFSET_OCTET_STREAM
            if isinstance(checksum, str):
                headers["Upload-Checksum"] = checksum
            elif checksum:
                headers["Upload-Checksum"] = await chunk_checksum_async(data)
        # Not replayed once the server may have it: a second POST would start a second
        # upload, and with if_rev="none" a replay of a finished one would fail as stale.
        response = await self._request(
            "POST", f"{API}/uploads", headers=headers, content=data, idempotent=False
        )
        location = response.headers.get("Location")
        if not location:
            raise ProtocolError("the upload was created without a Location")
        offset = int_header(response, "Upload-Offset")
        session = UploadSession(
            url=location,
            offset=offset or 0,
            length=length,
            entry_id=response.headers.get("Dropline-Entry-Id"),
            rev=response.headers.get("Dropline-Rev"),
        )
        entry: Entry | None = None
        if session.complete and response.content:
            entry = Entry.from_json(json_body(response))
            if entry.id != session.entry_id or entry.rev != session.rev:
                raise ProtocolError("the upload's entry and its Dropline-Entry-Id/-Rev differ")
        return session, entry

    async def upload_status(self, url: str) -> UploadResult:
        """``HEAD`` the upload: its durable offset and, once published, its entry id."""
        response = await self._request(
            "HEAD", self._upload_url(url), headers={"Tus-Resumable": TUS_VERSION}
        )
        return upload_result(response)

    async def upload_offset(self, url: str) -> int:
        return (await self.upload_status(url)).offset

    async def append(
        self,
        url: str,
        offset: int,
        data: bytes | memoryview | SizedBody,
        checksum: bool | str = True,
        *,
        retry: RetryPolicy | None = None,
        whole_sha256: str | None = None,
    ) -> UploadResult:
        """``PATCH`` ``data`` at ``offset``. Replayed only when it certainly did not arrive;
        after anything else ask :meth:`upload_status` for the offset and go on from there.
        ``checksum`` may be a ready ``Upload-Checksum`` value (``sha256 <base64>``).
        ``whole_sha256`` (hex) declares the whole file's SHA-256 (``Repr-Digest``) for an
        upload created without one: the server publishes nothing that does not match it.
        ``data`` may be a :class:`SizedBody` streamed as it is read (then ``checksum`` is
        a ready value or False: a checksum needs the bytes before they are sent)."""
        headers = {
            "Tus-Resumable": TUS_VERSION,
            "Upload-Offset": str(offset),
            "Content-Type": OFFSET_OCTET_STREAM,
        }
        if whole_sha256 is not None:
            headers["Repr-Digest"] = repr_digest(whole_sha256)
        if isinstance(checksum, str):
            headers["Upload-Checksum"] = checksum
        elif checksum:
            if not isinstance(data, bytes | memoryview):
                raise ValidationError("a streamed chunk needs its Upload-Checksum given")
            headers["Upload-Checksum"] = await chunk_checksum_async(data)
        if not isinstance(data, bytes | memoryview):
            # Sent as it is read, with its length (not chunked transfer coding).
            headers["Content-Length"] = str(len(data))
        response = await self._request(
            "PATCH",
            self._upload_url(url),
            headers=headers,
            content=data,
            idempotent=False,
            retry=retry,
        )
        return upload_result(response)

    async def send_upload_batch(self, body: bytes, content_type: str) -> list[Any]:
        """``POST /api/v1/uploads/batch`` with a ready multipart body; the per-file results
        as the server sent them. :func:`dropline.sdk.batch.upload_batch` builds the body, reads
        the results and recovers from a lost answer; use that."""
        # Replayed only when it certainly never arrived (a lost answer is for the caller
        # to settle: some files may be in already).
        response = await self._request(
            "POST",
            f"{API}/uploads/batch",
            content=body,
            headers={"Content-Type": content_type},
            idempotent=False,
        )
        doc = json_body(response)
        results = doc.get("results") if isinstance(doc, dict) else None
        if not isinstance(results, list):
            raise ProtocolError("the batch upload answered without a list of results")
        return results

    async def terminate_upload(self, url: str) -> None:
        """Abandon an upload; one that is already gone counts as terminated."""
        with suppress(NotFoundError):
            await self._request(
                "DELETE", self._upload_url(url), headers={"Tus-Resumable": TUS_VERSION}
            )

    # -- downloads ---------------------------------------------------------------------

    @asynccontextmanager
    async def open_content(
        self,
        entry_id: str,
        start: int = 0,
        if_range: str | None = None,
        rev: str | None = None,
    ) -> AsyncIterator[ContentStream]:
        """Stream a file's bytes from ``start``. With ``if_range`` (a rev) the server sends
        the rest only if the file is still at that rev, and the whole file otherwise.
        ``rev``: that revision's bytes instead of the current ones."""
        headers: dict[str, str] = {"Accept": "*/*", "Accept-Encoding": "identity"}
        if start > 0:
            headers["Range"] = f"bytes={start}-"
            if if_range is not None:
                headers["If-Range"] = etag(if_range)
        response = await self._request(
            "GET",
            f"{API}/files/{quote_id(entry_id)}/content",
            params={"rev": rev} if rev is not None else None,
            headers=headers,
            stream=True,
        )
        try:
            yield ContentStream(response, start)
        finally:
            await response.aclose()
