"""Share-link transfers: the public link, its password, networks, download count and expiry."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.ops_helpers import ops_client, start_transfer, upload, wait_transfer
from tests.support.live import LiveServer
from tests.support.receiver import wait_until


@pytest.fixture
def anonymous(ops_server: LiveServer) -> Iterator[httpx.Client]:
    """Whoever got the link: no API credential at all."""
    with httpx.Client(timeout=30) as client:
        yield client


def make_link(alice: httpx.Client, data: bytes, **options: Any) -> tuple[dict[str, Any], str]:
    source = upload(alice, "/share/plan.pdf", data)
    done = wait_transfer(
        alice, start_transfer(alice, [source["id"]], {"type": "link", **options})["id"]
    )
    assert done["state"] == "completed", done
    return done, done["result"]["url"]


def test_link_lists_and_serves_the_file(alice: httpx.Client, anonymous: httpx.Client) -> None:
    data = b"%PDF-1.7 plan" * 300
    done, url = make_link(alice, data)
    assert url.startswith(str(alice.base_url) + "/s/")
    listing = anonymous.get(url)
    assert listing.status_code == 200
    files = listing.json()["files"]
    assert [(f["name"], f["size"]) for f in files] == [("plan.pdf", len(data))]
    assert listing.json()["downloads_left"] is None
    r = anonymous.get(str(alice.base_url) + files[0]["url"])
    assert r.status_code == 200
    assert r.content == data
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert r.headers["repr-digest"] == f"sha-256=:{digest}:"
    assert "plan.pdf" in r.headers["content-disposition"]
    assert done["result"]["expires_at"] > time.time()


def test_link_serves_the_version_that_was_shared(
    alice: httpx.Client, anonymous: httpx.Client
) -> None:
    _done, url = make_link(alice, b"version one")
    upload(alice, "/share/plan.pdf", b"version two, not shared")
    file_url = str(alice.base_url) + anonymous.get(url).json()["files"][0]["url"]
    assert anonymous.get(file_url).content == b"version one"


def test_download_count_runs_out_and_the_transfer_expires(
    alice: httpx.Client, anonymous: httpx.Client
) -> None:
    done, url = make_link(alice, b"twice only", max_downloads=2)
    file_url = str(alice.base_url) + anonymous.get(url).json()["files"][0]["url"]
    assert anonymous.get(url).json()["downloads_left"] == 2
    assert anonymous.get(file_url).content == b"twice only"
    assert anonymous.get(url).json()["downloads_left"] == 1
    assert anonymous.head(file_url).status_code == 200  # a HEAD is not a download
    assert anonymous.get(file_url).content == b"twice only"
    third = anonymous.get(file_url)
    assert third.status_code == 410
    assert third.json()["type"].endswith("/share-expired")
    assert anonymous.get(url).status_code == 410
    assert alice.get(f"/api/v1/transfers/{done['id']}").json()["state"] == "expired"


def test_link_expires_after_its_time(alice: httpx.Client, anonymous: httpx.Client) -> None:
    done, url = make_link(alice, b"brief", expires_in=3)
    assert anonymous.get(url).status_code == 200
    wait_until(lambda: anonymous.get(url).status_code == 410, timeout=15)
    assert alice.get(f"/api/v1/transfers/{done['id']}").json()["state"] == "expired"


def test_password_is_asked_for_and_checked(alice: httpx.Client, anonymous: httpx.Client) -> None:
    done, url = make_link(alice, b"classified", password="open sesame 42")
    assert "open sesame" not in str(done)
    assert done["destination"]["password_protected"] is True
    missing = anonymous.get(url)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"].startswith("Basic")
    wrong = anonymous.get(url, headers={"Dropline-Share-Password": "guess"})
    assert wrong.status_code == 401
    by_header = anonymous.get(url, headers={"Dropline-Share-Password": "open sesame 42"})
    assert by_header.status_code == 200
    file_url = str(alice.base_url) + by_header.json()["files"][0]["url"]
    by_basic = anonymous.get(file_url, auth=("anyone", "open sesame 42"))
    assert by_basic.status_code == 200
    assert by_basic.content == b"classified"


def test_allowed_networks_limit_who_opens_the_link(
    alice: httpx.Client, anonymous: httpx.Client
) -> None:
    _done, elsewhere = make_link(alice, b"lan only", allowed_cidrs=["10.0.0.0/8"])
    refused = anonymous.get(elsewhere)
    assert refused.status_code == 403
    _done, here = make_link(alice, b"loopback ok", allowed_cidrs=["127.0.0.0/8", "::1/128"])
    assert anonymous.get(here).status_code == 200


def test_unknown_or_revoked_links_are_refused(alice: httpx.Client, anonymous: httpx.Client) -> None:
    done, url = make_link(alice, b"short-lived")
    assert anonymous.get(url + "x").status_code == 404
    revoked = alice.delete(f"/api/v1/transfers/{done['id']}")
    assert revoked.status_code == 200
    assert revoked.json()["state"] == "cancelled"
    assert anonymous.get(url).status_code == 410


def test_transfers_and_link_downloads_are_audited(
    ops_server: LiveServer, alice: httpx.Client, anonymous: httpx.Client
) -> None:
    source = upload(alice, "/share/audited.txt", b"audited")
    r = alice.post(
        "/api/v1/transfers",
        json={
            "file_ids": [source["id"]],
            "destination": {"type": "link", "password": "pw-12345678"},
        },
    )
    done = wait_transfer(alice, r.json()["id"])
    link = done["result"]["url"]
    file_url = (
        str(alice.base_url)
        + anonymous.get(link, auth=("", "pw-12345678")).json()["files"][0]["url"]
    )
    got = anonymous.get(file_url, auth=("", "pw-12345678"))
    assert got.status_code == 200
    with ops_client(ops_server, scopes=("audit:read",)) as auditor:
        rows = auditor.get("/api/v1/audit-events", params={"action": "transfer.create"}).json()
        [created] = rows["events"]
        assert created["request_id"] == r.headers["x-request-id"]
        assert created["resource"] == f"/api/v1/transfers/{done['id']}"
        assert "pw-12345678" not in json.dumps(created)
        rows = auditor.get("/api/v1/audit-events", params={"action": "share.download"}).json()
        [download] = rows["events"]
        assert download["source_ip"] == "127.0.0.1"
        assert download["request_id"] == got.headers["x-request-id"]
        assert download["resource"] == "audited.txt"
        assert download["detail"]["transfer_id"] == done["id"]
