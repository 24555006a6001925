"""The "Signing in" examples of docs/api.md, run as written (bash, curl, jq, openssl)."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from dropline.server.settings import Settings
from tests.server.identity.test_oauth_device import enter_code
from tests.support.browser import PASSWORD
from tests.support.docs import doc_block, run_shell
from tests.support.live import LiveServer, running_server

EMAIL = "alice@acme.example"


def run(name: str, live: LiveServer, cwd: Path, **env: str) -> str:
    bin_dir = str(Path(sys.executable).parent)  # dropline-server from this environment
    done = run_shell(
        doc_block(f"signin:{name}"),
        cwd,
        {
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "DROPLINE_URL": live.url,
            "DROPLINE_DATA_DIR": str(live.settings.data_dir),
            "EMAIL": EMAIL,
            "PASSWORD": PASSWORD,
            **env,
        },
    )
    assert done.returncode == 0, done.stderr + done.stdout
    return done.stdout


@pytest.fixture
def acme(live_server: LiveServer) -> LiveServer:
    live_server.new_key(tenant="acme", email=EMAIL)
    live_server.identity.create_user("acme", "robot@acme.example", None)
    return live_server


def test_desktop_pkce_example(acme: LiveServer, tmp_path: Path) -> None:
    out = run("pkce", acme, tmp_path)
    assert "the browser is sent to http://127.0.0.1:53682/callback?code=" in out
    assert json.loads(out.split("\n", 1)[1].rsplit("revoke:", 1)[0])["email"] == EMAIL
    assert out.rstrip().endswith("revoke: 200")
    refreshed = json.loads((tmp_path / "refreshed.json").read_text())
    r = httpx.get(
        acme.url + "/api/v1/me", headers={"Authorization": f"Bearer {refreshed['access_token']}"}
    )
    assert r.status_code == 401  # signed out


def test_device_flow_example(acme: LiveServer, tmp_path: Path) -> None:
    out = run("device-start", acme, tmp_path)
    assert out.startswith(f"Open {acme.url}/device and enter the code ")
    code = out.strip().rsplit(" ", 1)[1]
    assert enter_code(acme, code, EMAIL).status_code == 200
    polled = run("device-poll", acme, tmp_path)
    assert json.loads(polled)["email"] == EMAIL


def test_api_key_example(acme: LiveServer, tmp_path: Path) -> None:
    out = json.loads(run("api-key", acme, tmp_path))
    assert out["kind"] == "api_key"


def test_client_credentials_example(acme: LiveServer, tmp_path: Path) -> None:
    assert json.loads(run("client-credentials", acme, tmp_path)) == ["files:read"]


@pytest.fixture
def tls_acme(server_settings: Settings, tmp_path: Path) -> Iterator[tuple[LiveServer, Path]]:
    ca, client_ca = trustme.CA(), trustme.CA()
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(tmp_path / "server.pem")
    client_ca.cert_pem.write_to_path(tmp_path / "client-ca.pem")
    work = tmp_path / "work"
    work.mkdir()
    ca.cert_pem.write_to_path(work / "ca.pem")
    robot = client_ca.issue_cert("robot.acme.example")
    robot.private_key_and_cert_chain_pem.write_to_path(work / "robot.pem")
    robot.cert_chain_pems[0].write_to_path(work / "robot-cert.pem")
    settings = dataclasses.replace(
        server_settings,
        tls_cert=tmp_path / "server.pem",
        tls_key=tmp_path / "server.pem",
        client_ca=tmp_path / "client-ca.pem",
    )
    with running_server(settings) as live:
        live.identity.create_tenant("acme")
        live.identity.create_user("acme", "robot@acme.example", None)
        yield live, work


def test_mtls_example(tls_acme: tuple[LiveServer, Path]) -> None:
    live, work = tls_acme
    out = run("mtls", live, work)
    assert json.loads(out.split("\n}\n", 1)[1])["kind"] == "mtls"
