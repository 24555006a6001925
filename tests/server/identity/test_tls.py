"""TLS 1.2+ with strong suites only, and mutual TLS mapped to a service principal.

Certificates are made by ``trustme``; the real server runs on 127.0.0.1 with the
same TLS setup as ``dropline-server serve --tls-cert --tls-key --client-ca``.
"""

from __future__ import annotations

import dataclasses
import socket
import ssl
import urllib.parse
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from sqlalchemy import select

from dropline.server.settings import Settings
from dropline.server.storage import schema
from tests.server import tus
from tests.support.live import LiveServer, running_server


@dataclasses.dataclass
class Pki:
    server_ca: trustme.CA
    client_ca: trustme.CA
    ca_file: Path
    client_ca_file: Path
    robot_pem: Path
    robot_cert_pem: str
    stranger_pem: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    server_ca, client_ca, other_ca = trustme.CA(), trustme.CA(), trustme.CA()
    server_ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        tmp_path / "server.pem"
    )
    server_ca.cert_pem.write_to_path(tmp_path / "ca.pem")
    client_ca.cert_pem.write_to_path(tmp_path / "client-ca.pem")
    robot = client_ca.issue_cert("robot.acme.example", common_name="robot.acme.example")
    robot.private_key_and_cert_chain_pem.write_to_path(tmp_path / "robot.pem")
    other_ca.issue_cert("robot.acme.example").private_key_and_cert_chain_pem.write_to_path(
        tmp_path / "stranger.pem"
    )
    return Pki(
        server_ca,
        client_ca,
        tmp_path / "ca.pem",
        tmp_path / "client-ca.pem",
        tmp_path / "robot.pem",
        robot.cert_chain_pems[0].bytes().decode(),
        tmp_path / "stranger.pem",
    )


@pytest.fixture
def tls_server(server_settings: Settings, pki: Pki, tmp_path: Path) -> Iterator[LiveServer]:
    settings = dataclasses.replace(
        server_settings,
        tls_cert=tmp_path / "server.pem",
        tls_key=tmp_path / "server.pem",
        client_ca=pki.client_ca_file,
    )
    with running_server(settings) as live:
        yield live


def context(pki: Pki, cert: Path | None = None, **versions: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca_file))
    for name, value in versions.items():
        setattr(ctx, name, value)
    if cert is not None:
        ctx.load_cert_chain(str(cert))
    return ctx


def handshake(live: LiveServer, ctx: ssl.SSLContext) -> tuple[str | None, str | None]:
    port = int(live.url.rsplit(":", 1)[1])
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        cipher = tls.cipher()
        return tls.version(), cipher[0] if cipher else None


def test_tls_13_and_12_are_served(tls_server: LiveServer, pki: Pki) -> None:
    assert handshake(tls_server, context(pki))[0] == "TLSv1.3"
    version, cipher = handshake(tls_server, context(pki, maximum_version=ssl.TLSVersion.TLSv1_2))
    assert version == "TLSv1.2"
    assert (
        cipher is not None
        and cipher.startswith("ECDHE")
        and ("GCM" in cipher or "CHACHA" in cipher)
    )
    with httpx.Client(verify=context(pki)) as c:
        assert c.get(tls_server.url + "/healthz").json() == {"status": "ok"}


def test_a_tls_11_client_is_refused(tls_server: LiveServer, pki: Pki) -> None:
    ctx = context(pki)
    # Debian's OpenSSL may refuse to even offer TLS 1.1 at its default security level;
    # lowering it makes the client really try, so the refusal is the server's.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        # Python warns that TLS 1.0/1.1 are deprecated: offering them is this test's point.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, ConnectionResetError)):
        handshake(tls_server, ctx)


@pytest.mark.parametrize("suite", ["AES128-SHA", "AES256-GCM-SHA384", "ECDHE-RSA-AES128-SHA"])
def test_weak_tls_12_suites_are_refused(tls_server: LiveServer, pki: Pki, suite: str) -> None:
    ctx = context(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers(suite)  # no forward secrecy, or CBC with SHA-1
    with pytest.raises(ssl.SSLError):
        handshake(tls_server, ctx)


def _admin(live: LiveServer, pki: Pki) -> httpx.Client:
    live.identity.create_tenant("acme")
    live.identity.create_user("acme", "root@acme.example", "long enough pw", admin=True)
    live.identity.create_user("acme", "robot@acme.example", None)
    _id, key = live.identity.create_api_key("acme", "root@acme.example", ("admin",))
    return httpx.Client(
        base_url=live.url, headers={"Authorization": f"Bearer {key}"}, verify=context(pki)
    )


def test_mutual_tls_maps_a_certificate_to_a_service_principal(
    tls_server: LiveServer, pki: Pki
) -> None:
    with httpx.Client(verify=context(pki, pki.robot_pem), base_url=tls_server.url) as robot:
        # Not mapped yet: the certificate verified, but it is nobody.
        r = robot.get("/api/v1/me")
        assert r.status_code == 401

        with _admin(tls_server, pki) as admin:
            users = admin.get("/api/v1/admin/users").json()["users"]
            robot_id = next(u["id"] for u in users if u["email"] == "robot@acme.example")
            mapped = admin.post(
                "/api/v1/admin/client-certs",
                json={
                    "user_id": robot_id,
                    "certificate": pki.robot_cert_pem,
                    "scopes": ["files:read"],
                },
            )
            assert mapped.status_code == 201, mapped.text
            cert = mapped.json()
            assert "robot.acme.example" in cert["subject"]

            me = robot.get("/api/v1/me")
            assert me.status_code == 200, me.text
            assert me.json()["user"]["email"] == "robot@acme.example"
            assert me.json()["credential"] == {"id": cert["id"], "kind": "mtls"}
            assert me.json()["scopes"] == ["files:read"]
            # The mapped scopes hold: no writing.
            assert robot.post("/api/v1/folders", json={"path": "/x"}).status_code == 403

            assert admin.delete(f"/api/v1/admin/client-certs/{cert['id']}").status_code == 204
            assert robot.get("/api/v1/me").status_code == 401


def test_a_certificate_from_another_ca_fails_the_handshake(
    tls_server: LiveServer, pki: Pki
) -> None:
    with (
        httpx.Client(verify=context(pki, pki.stranger_pem)) as c,
        pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)),
    ):
        c.get(tls_server.url + "/api/v1/me")


def test_bearer_credentials_still_work_without_a_client_certificate(
    tls_server: LiveServer, pki: Pki
) -> None:
    key = tls_server.new_key()
    with httpx.Client(verify=context(pki)) as c:
        r = c.get(tls_server.url + "/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 200
    assert r.json()["credential"]["kind"] == "api_key"


def test_mtls_satisfies_a_folder_that_requires_it(tls_server: LiveServer, pki: Pki) -> None:
    with _admin(tls_server, pki) as admin:
        robot_id = next(
            u["id"]
            for u in admin.get("/api/v1/admin/users").json()["users"]
            if u["email"] == "robot@acme.example"
        )
        admin.post(
            "/api/v1/admin/client-certs",
            json={
                "user_id": robot_id,
                "certificate": pki.robot_cert_pem,
                "scopes": ["files:read", "files:write"],
            },
        )
        admin.put(
            "/api/v1/admin/policy", json={"folders": [{"path": "/secure", "require_mtls": True}]}
        )
    with httpx.Client(
        verify=context(pki, pki.robot_pem),
        base_url=tls_server.url,
        headers={"Tus-Resumable": "1.0.0"},
    ) as robot:
        assert tus.upload(robot, "/secure/report.txt", b"classified").status_code == 201


def test_a_trusted_proxy_can_forward_the_client_certificate(
    server_settings: Settings, pki: Pki
) -> None:
    header = {"X-Client-Cert": urllib.parse.quote(pki.robot_cert_pem)}
    trusting = dataclasses.replace(server_settings, trusted_proxies=("127.0.0.1/32",))
    with running_server(trusting) as live:
        live.identity.create_tenant("acme")
        robot = live.identity.create_user("acme", "robot@acme.example", None)
        security = live.app.state.security  # type: ignore[attr-defined]
        with security.db.write() as conn:
            security.map_certificate(
                conn, live.identity.tenant_id("acme"), robot, pki.robot_cert_pem, ("files:read",)
            )
        r = httpx.get(live.url + "/api/v1/me", headers=header)
        assert r.status_code == 200, r.text
        assert r.json()["credential"]["kind"] == "mtls"
    # The same header from an untrusted peer is ignored.
    with running_server(
        dataclasses.replace(server_settings, data_dir=server_settings.data_dir / "b")
    ) as live:
        r = httpx.get(live.url + "/api/v1/me", headers=header)
        assert r.status_code == 401
        assert r.json()["type"].endswith("/unauthenticated")


def test_unmapped_certificates_are_audited_as_failures(tls_server: LiveServer, pki: Pki) -> None:
    with httpx.Client(verify=context(pki, pki.robot_pem)) as robot:
        robot.get(tls_server.url + "/api/v1/me")
    with tls_server.app.state.db.read() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(
            select(schema.audit_events.c.action, schema.audit_events.c.credential_kind)
        ).all()
    assert [tuple(r) for r in rows] == [("auth.failed", "mtls")]
