"""The sample nginx front, run by Debian's nginx on loopback before ``dropline-server serve``
with only ports, paths and certificates swapped: tus uploads and ranged downloads pass whole,
and a client certificate nginx verified, never a forged header, becomes a principal."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import socket
import ssl
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import trustme

from dropline.sdk import ApiKeyCredentials, DroplineClient, upload_file
from tests.support.live import ServerProcess
from tests.support.nginx import running_nginx
from tests.support.server_cli import run_here

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "packaging" / "nginx" / "dropline-server.conf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def swap(text: str, pattern: str, replacement: str, count: int = 1) -> str:
    """Replace what ``pattern`` matches, which must match exactly ``count`` times."""
    changed, found = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    assert found == count, f"{pattern!r} matched {found} times in {SAMPLE.name}, not {count}"
    return changed


def config_from_sample(prefix: Path, https: int, http: int, upstream: int, tls: Path) -> str:
    conf = SAMPLE.read_text(encoding="utf-8")
    conf = swap(conf, r"^\s*listen \[::\]:\d+.*;\n", "", 2)  # loopback only, no IPv6
    conf = swap(conf, r"listen 80;", f"listen 127.0.0.1:{http};")
    conf = swap(conf, r"listen 443 ssl;", f"listen 127.0.0.1:{https} ssl;")
    conf = swap(conf, r"server 127\.0\.0\.1:8600;", f"server 127.0.0.1:{upstream};")
    conf = swap(conf, r"ssl_certificate \S+;", f"ssl_certificate {tls / 'server.pem'};")
    conf = swap(conf, r"ssl_certificate_key \S+;", f"ssl_certificate_key {tls / 'server.pem'};")
    conf = swap(conf, r"ssl_client_certificate \S+;", f"ssl_client_certificate {tls / 'ca.pem'};")
    conf = swap(conf, r"access_log \S+;", f"access_log {prefix / 'access.log'};")
    conf = swap(conf, r"error_log \S+;", f"error_log {prefix / 'error.log'};")
    return conf


@dataclass
class Front:
    url: str
    server: ServerProcess
    tls: Path  # the certificates of the tls fixture
    key: str

    def client(self, cert: Path | None = None, source: str = "127.0.0.1") -> httpx.Client:
        """A client of the front; ``source`` is the address it connects from."""
        transport = httpx.HTTPTransport(verify=self.context(cert), local_address=source)
        return httpx.Client(base_url=self.url, transport=transport, timeout=30)

    def context(self, cert: Path | None = None) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.tls / "server-ca.pem"))
        if cert is not None:
            ctx.load_cert_chain(str(cert))
        return ctx


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """server.pem (nginx's key and chain), server-ca.pem, ca.pem (the client CA), robot.pem
    and robot.crt (a client the client CA signed), stranger.pem (one another CA signed)."""
    tls = tmp_path_factory.mktemp("tls")
    server_ca, client_ca = trustme.CA(), trustme.CA()
    server_ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        tls / "server.pem"
    )
    server_ca.cert_pem.write_to_path(tls / "server-ca.pem")
    client_ca.cert_pem.write_to_path(tls / "ca.pem")
    robot = client_ca.issue_cert("robot.acme.example", common_name="robot.acme.example")
    robot.private_key_and_cert_chain_pem.write_to_path(tls / "robot.pem")
    robot.cert_chain_pems[0].write_to_path(tls / "robot.crt")
    stranger = trustme.CA().issue_cert("robot.acme.example")
    stranger.private_key_and_cert_chain_pem.write_to_path(tls / "stranger.pem")
    return tls


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, tls: Path
) -> Iterator[tuple[ServerProcess, str]]:
    """``dropline-server serve`` set up as the sample's comments ask (it trusts the proxy
    on 127.0.0.1), with alice's API key and robot's certificate mapped; and alice's key."""
    data = tmp_path_factory.mktemp("server") / "data"
    run_here(data, "tenants", "create", "acme")
    for email in ("alice@acme.example", "robot@acme.example"):
        run_here(data, *f"users create --tenant acme --email {email} --no-password".split())
    key = run_here(data, "api-keys", "create", "--tenant", "acme", "--user", "alice@acme.example")
    robot = f"certs map --tenant acme --user robot@acme.example --cert {tls / 'robot.crt'}"
    run_here(data, *robot.split(), "--scopes", "files:read")
    process = ServerProcess(data, extra_env={"DROPLINE_TRUSTED_PROXIES": "127.0.0.1/32"})
    process.start()
    yield process, key.strip()
    process.stop()


@pytest.fixture(scope="module")
def front(
    tmp_path_factory: pytest.TempPathFactory, tls: Path, server: tuple[ServerProcess, str]
) -> Iterator[Front]:
    """nginx, running the sample config in front of the server; stopped by its PID."""
    process, key = server
    prefix = tmp_path_factory.mktemp("nginx")
    https = free_port()
    site = prefix / "dropline-server.conf"
    site.write_text(config_from_sample(prefix, https, free_port(), process.port, tls))
    with running_nginx(prefix, site, https):
        yield Front(f"https://127.0.0.1:{https}", process, tls, key)


def test_a_tus_upload_and_a_ranged_download_pass_through_whole(
    front: Front, tmp_path: Path
) -> None:
    data = os.urandom(5 * 1024 * 1024 + 123)
    source = tmp_path / "report.bin"
    source.write_bytes(data)

    async def upload() -> str:
        transport = httpx.AsyncHTTPTransport(verify=front.context())
        async with DroplineClient(
            front.url, ApiKeyCredentials(front.key), transport=transport
        ) as c:
            # Two PATCHes of 4 MiB and the rest: the body streams through nginx unbuffered.
            entry = await upload_file(
                c, source, "/via-nginx/report.bin", chunk_size=4 * 1024 * 1024
            )
            return entry.id

    entry_id = asyncio.run(upload())
    with front.client() as c:
        c.headers["Authorization"] = f"Bearer {front.key}"
        meta = c.get("/api/v1/metadata", params={"path": "/via-nginx/report.bin"}).json()
        assert meta["id"] == entry_id and meta["sha256"] == hashlib.sha256(data).hexdigest()
        part = c.get(
            f"/api/v1/files/{entry_id}/content", headers={"Range": "bytes=1048570-3145733"}
        )
        assert part.status_code == 206
        assert part.headers["Content-Range"] == f"bytes 1048570-3145733/{len(data)}"
        assert part.content == data[1048570:3145734]
        assert c.get(f"/api/v1/files/{entry_id}/content").content == data


def test_a_verified_client_certificate_reaches_the_server_as_its_principal(front: Front) -> None:
    # From another loopback address, as a remote client would be: the server must trust
    # the header because nginx (its trusted proxy) sent it, whoever the client is.
    with front.client(cert=front.tls / "robot.pem", source="127.0.0.2") as robot:
        me = robot.get("/api/v1/me")
    assert me.status_code == 200, me.text
    assert me.json()["user"]["email"] == "robot@acme.example"
    assert me.json()["credential"]["kind"] == "mtls"
    assert me.json()["scopes"] == ["files:read"]


def test_a_client_cannot_send_the_certificate_header_itself(front: Front) -> None:
    forged = {"X-Client-Cert": urllib.parse.quote((front.tls / "robot.crt").read_text())}
    with front.client(source="127.0.0.2") as c:
        r = c.get("/api/v1/me", headers=forged)
    assert r.status_code == 401
    assert r.json()["type"].endswith("/unauthenticated")


def test_the_server_sees_the_address_and_scheme_the_client_used(front: Front) -> None:
    with front.client(source="127.0.0.2") as c:
        # No DROPLINE_PUBLIC_URL here: the issuer is derived from the request, https via nginx.
        issuer = c.get("/.well-known/oauth-authorization-server").json()["issuer"]
        assert issuer.startswith("https://127.0.0.1")
        wrong = {"Authorization": "Bearer dlk_not_a_key", "X-Forwarded-For": "203.0.113.9"}
        assert c.get("/api/v1/me", headers=wrong).status_code == 401
    # The failure is audited with the client's own address, not nginx's nor a made-up one.
    rows = [
        json.loads(line) for line in run_here(front.server.data_dir, "audit", "export").splitlines()
    ]
    assert [r["source_ip"] for r in rows if r["action"] == "auth.failed"][-1] == "127.0.0.2"


def test_metrics_are_for_the_monitoring_hosts_only(front: Front) -> None:
    with front.client() as local, front.client(source="127.0.0.2") as remote:
        assert "dropline_http_requests_total" in local.get("/metrics").text
        assert remote.get("/metrics").status_code == 403


def test_a_certificate_from_another_ca_is_turned_away_by_nginx(front: Front) -> None:
    with front.client(cert=front.tls / "stranger.pem") as c:
        r = c.get("/api/v1/me")
    assert r.status_code == 400  # nginx: "The SSL certificate error"; the server never sees it
