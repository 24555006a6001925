"""A failure-injecting httpx transport in front of the real one.

Requests go to the real server over loopback; scripted faults replace chosen ones
with a connection error, an error status, a lost answer (the server did the work,
the client never hears), or a body cut off midway. It counts what it saw.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx

Matcher = Callable[[httpx.Request], bool]


def route(method: str, path_prefix: str = "") -> Matcher:
    def match(request: httpx.Request) -> bool:
        return request.method == method and request.url.path.startswith(path_prefix)

    return match


@dataclass
class Fault:
    match: Matcher
    times: int = 1
    status: int | None = None  # answer with this status (problem+json) instead of forwarding
    slug: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    exc: type[Exception] | None = None  # raise this instead of forwarding
    forward_first: bool = False  # let the server do the work, then fail (a lost answer)
    cut_response_after: int | None = None  # forward, then cut the response body after N bytes
    cut_request_after: int | None = None  # send only the first N body bytes, then drop

    def build_response(self, request: httpx.Request) -> httpx.Response:
        assert self.status is not None
        body = {
            "type": f"https://dropline.dev/problems/{self.slug or 'injected'}",
            "title": "Injected",
            "status": self.status,
            "detail": "injected by the test",
        }
        return httpx.Response(
            self.status,
            json=body,
            headers={"content-type": "application/problem+json", **self.headers},
            request=request,
        )


class _CutStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, limit: int) -> None:
        self.inner = inner
        self.limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        sent = 0
        async for chunk in self.inner:
            room = self.limit - sent
            if room <= 0:
                break
            yield chunk[:room]
            sent += min(len(chunk), room)
        raise httpx.ReadError("connection cut by the test")

    async def aclose(self) -> None:
        await self.inner.aclose()


class _CutRequest(httpx.AsyncByteStream):
    def __init__(self, body: bytes, limit: int) -> None:
        self.body = body
        self.limit = limit

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.body[: self.limit]
        raise httpx.WriteError("connection cut by the test")


class FaultTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.inner = inner or httpx.AsyncHTTPTransport()
        self.faults: list[Fault] = []
        self.seen: list[tuple[str, str]] = []  # (method, path) of every request, faulted or not
        self.body_bytes: dict[str, int] = {}  # method -> request body bytes handed on

    def inject(self, match: Matcher, **kwargs: object) -> Fault:
        fault = Fault(match, **kwargs)  # type: ignore[arg-type]
        self.faults.append(fault)
        return fault

    def count(self, method: str, path_prefix: str = "") -> int:
        return sum(1 for m, p in self.seen if m == method and p.startswith(path_prefix))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path))
        try:
            request.content  # noqa: B018 - a streamed body (an upload chunk) is read first
        except httpx.RequestNotRead:
            await request.aread()
        fault = next((f for f in self.faults if f.times > 0 and f.match(request)), None)
        if fault is not None:
            fault.times -= 1
            return await self._apply(fault, request)
        return await self._forward(request)

    async def _forward(self, request: httpx.Request) -> httpx.Response:
        body = request.content if not isinstance(request.stream, _CutRequest) else b""
        self.body_bytes[request.method] = self.body_bytes.get(request.method, 0) + len(body)
        return await self.inner.handle_async_request(request)

    async def _apply(self, fault: Fault, request: httpx.Request) -> httpx.Response:
        if fault.cut_request_after is not None:
            body = request.content
            cut = httpx.Request(
                request.method,
                request.url,
                headers=request.headers,
                stream=_CutRequest(body, fault.cut_request_after),
            )
            self.body_bytes[request.method] = (
                self.body_bytes.get(request.method, 0) + fault.cut_request_after
            )
            response = await self.inner.handle_async_request(cut)
            await response.aread()
            return response
        if fault.forward_first:
            response = await self._forward(request)
            await response.aread()
            await response.aclose()
        if fault.cut_response_after is not None:
            response = await self._forward(request)
            assert isinstance(response.stream, httpx.AsyncByteStream)
            return httpx.Response(
                response.status_code,
                headers=response.headers,
                stream=_CutStream(response.stream, fault.cut_response_after),
                request=request,
            )
        if fault.exc is not None:
            raise fault.exc("injected by the test")
        return fault.build_response(request)

    async def aclose(self) -> None:
        await self.inner.aclose()
