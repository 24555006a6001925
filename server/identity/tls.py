"""TLS for ``serve``: a TLS 1.2+ context with strong suites, and client certificates.

uvicorn (0.54) verifies client certificates but does not hand them to the
application. :class:`TLSHttpToolsProtocol` fills the ASGI TLS extension
(``scope["extensions"]["tls"]``: ``client_cert_chain`` as PEM, ``tls_version``,
``cipher_suite``) from the connection's ``ssl_object``, read once per connection.
Behind a TLS-terminating proxy the proxy verifies the certificate and forwards it
in a header instead (see :func:`forwarded_certificate`).
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# AEAD suites with forward secrecy only (TLS 1.2); TLS 1.3 suites are all strong.
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!MD5:!DSS:!SHA1"


def server_context(cert: Path, key: Path, client_ca: Path | None = None) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.load_cert_chain(str(cert), str(key))
    if client_ca is not None:
        ctx.load_verify_locations(cafile=str(client_ca))
        # Optional: clients without a certificate still connect and use a bearer
        # credential; a certificate that is sent must verify against the CA.
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def _tls_extension(transport: asyncio.BaseTransport) -> dict[str, Any] | None:
    ssl_object = transport.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    cipher = ssl_object.cipher()
    return {
        "server_cert": None,
        "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
        "client_cert_name": None,
        "client_cert_error": None,
        "tls_version": ssl_object.version(),
        "cipher_suite": cipher[0] if cipher else None,
    }


class TLSHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus the ASGI TLS extension in every scope."""

    _tls: dict[str, Any] | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._tls = _tls_extension(transport)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._tls is not None:
            scope: dict[str, Any] = self.scope  # type: ignore[assignment]
            scope["extensions"] = {"tls": self._tls}


def uvicorn_tls_options(
    cert: Path | None, key: Path | None, client_ca: Path | None
) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` (empty for plain HTTP)."""
    if cert is None or key is None:
        return {}
    return {
        # uvicorn still wants the file for its "is TLS" checks; the factory decides.
        "ssl_certfile": str(cert),
        "ssl_keyfile": str(key),
        "ssl_context_factory": lambda _config, _default: server_context(cert, key, client_ca),
        "http": TLSHttpToolsProtocol,
    }


def peer_certificate_pem(scope: Mapping[str, Any]) -> str | None:
    tls = (scope.get("extensions") or {}).get("tls")
    if not tls:
        return None
    chain = tls.get("client_cert_chain") or []
    return str(chain[0]) if chain else None


def forwarded_certificate(value: str) -> str | None:
    """A proxy's client-certificate header: URL-encoded PEM (nginx ``$ssl_client_escaped_cert``)."""
    pem = unquote(value.strip())
    return pem if "BEGIN CERTIFICATE" in pem else None


def fingerprint(pem: str) -> tuple[str, str]:
    """(SHA-256 fingerprint hex, subject) of a PEM certificate."""
    cert = x509.load_pem_x509_certificate(pem.encode())
    der = cert.public_bytes(encoding=Encoding.DER)
    return hashlib.sha256(der).hexdigest(), cert.subject.rfc4514_string()


__all__ = [
    "TLSHttpToolsProtocol",
    "fingerprint",
    "forwarded_certificate",
    "peer_certificate_pem",
    "server_context",
    "uvicorn_tls_options",
]
