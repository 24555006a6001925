"""Ids and upload URLs of one user are 404 for everyone else, on every route, and change nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.server import tus


@pytest.fixture
def owned(client: httpx.Client) -> dict[str, str]:
    """Alice's file, folder and an unfinished upload."""
    file_id = tus.upload(client, "/private/secret.txt", b"secret").headers["dropline-entry-id"]
    folder_id = client.get("/api/v1/metadata", params={"path": "/private"}).json()["id"]
    location = tus.create(client, 10, path="/private/pending.txt").headers["location"]
    tus.patch(client, location, 0, b"12345")
    return {"file": file_id, "folder": folder_id, "upload": location}


@pytest.fixture(params=["other-tenant", "same-tenant"])
def stranger(
    request: pytest.FixtureRequest, mallory: httpx.Client, bob: httpx.Client
) -> httpx.Client:
    return mallory if request.param == "other-tenant" else bob


def assert_404(r: httpx.Response) -> None:
    assert r.status_code == 404, (r.request.method, r.request.url, r.status_code)
    if r.request.method != "HEAD":
        assert r.json()["type"] == "https://dropline.dev/problems/not-found"


def test_strangers_get_404_on_every_route(
    client: httpx.Client, stranger: httpx.Client, owned: dict[str, str]
) -> None:
    f, d, up = owned["file"], owned["folder"], owned["upload"]
    assert_404(stranger.get(f"/api/v1/files/{f}"))
    assert_404(stranger.patch(f"/api/v1/files/{f}", json={"name": "mine.txt"}))
    assert_404(stranger.delete(f"/api/v1/files/{f}"))
    assert_404(stranger.get(f"/api/v1/files/{f}/content"))
    assert_404(stranger.head(f"/api/v1/files/{f}/content"))
    assert_404(stranger.get("/api/v1/files", params={"parent_id": d}))
    assert_404(stranger.get("/api/v1/files", params={"path": "/private"}))
    assert_404(stranger.get("/api/v1/metadata", params={"path": "/private/secret.txt"}))
    assert_404(stranger.head(up))
    assert_404(tus.patch(stranger, up, 5, b"67890"))
    assert_404(stranger.delete(up))
    # Their own moves cannot target Alice's folder either.
    mine = tus.upload(stranger, "/mine.txt", b"m").headers["dropline-entry-id"]
    assert_404(stranger.patch(f"/api/v1/files/{mine}", json={"parent_id": d}))
    # Their spaces are separate: the same path is free for them, and their listing and
    # feed show none of Alice's entries.
    assert [e["path"] for e in stranger.get("/api/v1/files").json()["entries"]] == ["/mine.txt"]
    feed = stranger.get("/api/v1/changes").json()["changes"]
    assert [c["entry"]["path"] for c in feed] == ["/mine.txt"]
    # Nothing of Alice's changed.
    assert client.get(f"/api/v1/files/{f}").json()["path"] == "/private/secret.txt"
    assert client.head(up).headers["upload-offset"] == "5"
    assert tus.patch(client, up, 5, b"67890").status_code == 204
