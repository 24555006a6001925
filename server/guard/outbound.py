"""Outbound HTTP to addresses users give us (webhooks, push transfers), guarded against SSRF.

The host is resolved and every address it resolves to is checked; the request then
goes to a checked address, with the Host header and TLS SNI keeping the name, so a
DNS answer that changes between the check and the connect (rebinding) cannot steer it.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ipaddress
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

# Enough of an answer's body to show in an error; the rest is never read.
BODY_EXCERPT_BYTES = 2048
USER_AGENT = "Dropline/1.0"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class TargetRefused(Exception):
    """The URL is malformed, not https, or reaches an address outbound calls may not."""


class OutboundError(Exception):
    """The call did not get an HTTP answer (timeout, refused connection, TLS failure)."""


@dataclass(frozen=True, slots=True)
class Answer:
    status_code: int
    headers: httpx.Headers
    body_excerpt: str
    latency_ms: float


def is_public(ip: IPAddress) -> bool:
    """True for globally routable unicast addresses only.

    ``is_global`` is False for private (RFC 1918, fc00::/7), loopback, link-local
    (169.254/16 with the cloud metadata service, fe80::/10), shared (100.64/10),
    reserved and unspecified addresses; multicast is refused separately.
    """
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every call: building one loads the CA bundle, which
    costs about 25 ms, more than a whole delivery to a nearby receiver."""
    return httpx.create_ssl_context()


def parse_target(url: str, allow_private: bool) -> httpx.URL:
    """Syntax checks that need no network: scheme, host, no credentials in the URL."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise TargetRefused(f"not a valid URL: {exc}") from None
    if parsed.scheme == "http" and not allow_private:
        raise TargetRefused("the URL must use https")
    if parsed.scheme not in ("https", "http"):
        raise TargetRefused("the URL must use https")
    if not parsed.host:
        raise TargetRefused("the URL has no host")
    if parsed.userinfo:
        # A password in a URL ends up in logs and answers; headers are the place for it.
        raise TargetRefused("the URL must not carry a user name or password")
    return parsed


async def resolve(url: httpx.URL, allow_private: bool) -> list[str]:
    """The addresses ``url``'s host resolves to, all checked; refuses if any is not public.

    Checking every address matters: a name answering with one public and one private
    address would otherwise let the connect pick the private one.
    """
    host = url.host
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [str(literal)]
    else:
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as exc:
            raise TargetRefused(f"cannot resolve {host}: {exc}") from None
        addresses = []
        for info in infos:
            address = str(info[4][0]).split("%", 1)[0]
            if address not in addresses:
                addresses.append(address)
        if not addresses:
            raise TargetRefused(f"{host} resolves to no address")
    if not allow_private:
        for address in addresses:
            if not is_public(ipaddress.ip_address(address)):
                where = host if literal is not None else f"{host} resolves to {address}, which"
                raise TargetRefused(
                    f"{where} is a private, loopback or link-local address (refused)"
                )
    return addresses


async def check_target(url: str, allow_private: bool) -> httpx.URL:
    """Everything :func:`send` will check, run early so a bad URL is refused at once."""
    parsed = parse_target(url, allow_private)
    await resolve(parsed, allow_private)
    return parsed


def _host_header(url: httpx.URL) -> str:
    host = url.host if ":" not in url.host else f"[{url.host}]"
    default = 443 if url.scheme == "https" else 80
    return host if url.port in (None, default) else f"{host}:{url.port}"


async def send(
    method: str,
    url: str,
    *,
    allow_private: bool,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    content: bytes | AsyncIterable[bytes] | None = None,
) -> Answer:
    """One request to a checked address; redirects are not followed (they could point
    anywhere). Raises :class:`TargetRefused` or :class:`OutboundError`."""
    parsed = parse_target(url, allow_private)
    addresses = await resolve(parsed, allow_private)
    request_headers = {"User-Agent": USER_AGENT, **(headers or {})}
    request_headers["Host"] = _host_header(parsed)
    last_error: Exception | None = None
    # A streamed body can be sent once only, so only the first address is tried then.
    candidates = addresses if isinstance(content, bytes | None) else addresses[:1]
    for address in candidates:
        pinned = parsed.copy_with(host=address)
        # A client per call: its pool is keyed by address, and a connection opened with
        # one name's SNI must never carry a request for another name at that address.
        async with httpx.AsyncClient(
            timeout=timeout, follow_redirects=False, trust_env=False, verify=_tls_context()
        ) as client:
            request = client.build_request(
                method,
                pinned,
                headers=request_headers,
                content=content,
                extensions={"sni_hostname": parsed.host} if parsed.scheme == "https" else {},
            )
            started = time.perf_counter()
            try:
                response = await client.send(request, stream=True)
            except httpx.ConnectError as exc:
                last_error = exc
                continue
            except httpx.TimeoutException:
                raise OutboundError(f"no answer within {timeout:g} s") from None
            except httpx.HTTPError as exc:
                raise OutboundError(f"{type(exc).__name__}: {exc}") from None
            try:
                excerpt = bytearray()
                async for chunk in response.aiter_raw():
                    excerpt += chunk
                    if len(excerpt) >= BODY_EXCERPT_BYTES:
                        break
            except httpx.HTTPError:
                excerpt = bytearray()  # the status is what counts; a broken body is no answer
            finally:
                await response.aclose()
            latency = (time.perf_counter() - started) * 1000
            return Answer(
                status_code=response.status_code,
                headers=response.headers,
                body_excerpt=bytes(excerpt[:BODY_EXCERPT_BYTES]).decode("utf-8", "replace"),
                latency_ms=latency,
            )
    raise OutboundError(f"cannot connect to {parsed.host}: {last_error}")


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


__all__ = [
    "Answer",
    "OutboundError",
    "TargetRefused",
    "check_target",
    "is_public",
    "parse_target",
    "resolve",
    "retry_after_seconds",
    "send",
]
