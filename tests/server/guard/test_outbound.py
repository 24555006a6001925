"""The outbound guard on its own: address checks, and a TLS call pinned to the checked
address while the certificate is still verified against the name."""

from __future__ import annotations

import functools
import ipaddress
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import pytest
import trustme

from dropline.server.guard import outbound


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = self.headers.get("Host", "").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@contextmanager
def tls_server(ca: trustme.CA, name: str) -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def trusting(ca: trustme.CA, monkeypatch: pytest.MonkeyPatch) -> None:
    # No public CA can sign for a loopback name here: trust the test CA instead.
    context = ssl.create_default_context()
    ca.configure_trust(context)
    monkeypatch.setattr(outbound, "_tls_context", lambda: context)


def post(url: str) -> outbound.Answer:
    send = functools.partial(outbound.send, allow_private=True, timeout=10, content=b"{}")
    answer: outbound.Answer = anyio.run(send, "POST", url)
    return answer


def test_tls_goes_to_the_checked_address_and_verifies_the_name(
    ca: trustme.CA, trusting: None
) -> None:
    with tls_server(ca, "localhost") as port:
        answer = post(f"https://localhost:{port}/hook")
    # The certificate names only "localhost", never 127.0.0.1: it verified because SNI
    # and the check used the name while the socket went to the resolved address.
    assert answer.status_code == 200
    assert answer.body_excerpt == f"localhost:{port}"


def test_a_certificate_for_another_name_is_refused(ca: trustme.CA, trusting: None) -> None:
    with tls_server(ca, "elsewhere.example") as port, pytest.raises(outbound.OutboundError):
        post(f"https://localhost:{port}/")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fd00::1", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_only_public_unicast_addresses_pass(address: str, public: bool) -> None:
    assert outbound.is_public(ipaddress.ip_address(address)) is public


def test_retry_after_takes_seconds_or_a_date() -> None:
    assert outbound.retry_after_seconds("120") == 120
    assert outbound.retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470) == 10
    assert outbound.retry_after_seconds("soon") is None
    assert outbound.retry_after_seconds(None) is None
