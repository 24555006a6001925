"""Hostile names and paths over HTTP: each one is a 400 and leaves the space untouched."""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from tests.server import tus
from tests.server.files.test_names import HOSTILE_NAMES, HOSTILE_PATHS


def snapshot(client: httpx.Client) -> tuple[object, object]:
    return (
        client.get("/api/v1/changes").json()["changes"],
        client.get("/api/v1/files", params={"path": "/base"}).json()["entries"],
    )


@pytest.fixture
def base(client: httpx.Client) -> str:
    return tus.upload(client, "/base/ok.txt", b"ok").headers["dropline-entry-id"]


def assert_refused(r: httpx.Response, slugs: tuple[str, ...] = ("invalid-name",)) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["type"].rsplit("/", 1)[1] in slugs


def send(client: httpx.Client, method: str, url: str, body: dict[str, str]) -> httpx.Response:
    """JSON with ASCII escapes, so even a lone surrogate travels as a client could send it."""
    return client.request(
        method, url, content=json.dumps(body), headers={"Content-Type": "application/json"}
    )


def meta_value(name: str) -> str:
    # A lone surrogate has no UTF-8 form: send the bytes a careless encoder would.
    raw = name.encode("utf-8", "surrogatepass")
    return base64.b64encode(raw).decode()


def test_hostile_names_are_refused_everywhere(client: httpx.Client, base: str) -> None:
    before = snapshot(client)
    for name in HOSTILE_NAMES:
        assert_refused(send(client, "PATCH", f"/api/v1/files/{base}", {"name": name}))
        r = client.post(
            "/api/v1/uploads",
            headers={
                "Upload-Length": "1",
                "Upload-Metadata": f"filename {meta_value(name)},parent_path "
                + base64.b64encode(b"/base").decode(),
            },
        )
        assert_refused(r, ("invalid-name", "bad-request"))
        if "/" in name:
            continue  # inside a path, "a/b" is two good names
        path = "/base/" + name
        assert_refused(send(client, "POST", "/api/v1/folders", {"path": path}))
        assert_refused(send(client, "PATCH", f"/api/v1/files/{base}", {"path": path}))
        r = client.post(
            "/api/v1/uploads",
            headers={"Upload-Length": "1", "Upload-Metadata": f"path {meta_value(path)}"},
        )
        assert_refused(r, ("invalid-name", "bad-request"))
    assert snapshot(client) == before


def test_hostile_paths_are_refused_everywhere(client: httpx.Client, base: str) -> None:
    before = snapshot(client)
    for path in HOSTILE_PATHS:
        assert_refused(send(client, "POST", "/api/v1/folders", {"path": path}))
        assert_refused(send(client, "PATCH", f"/api/v1/files/{base}", {"path": path}))
        assert_refused(
            client.post(
                "/api/v1/uploads",
                headers={"Upload-Length": "1", "Upload-Metadata": f"path {meta_value(path)}"},
            )
        )
        assert_refused(
            client.post(
                "/api/v1/uploads",
                headers={
                    "Upload-Length": "1",
                    "Upload-Metadata": f"filename {meta_value('x.txt')},"
                    f"parent_path {meta_value(path)}",
                },
            )
        )
        assert_refused(client.get("/api/v1/files", params={"path": path}))
    assert snapshot(client) == before


def test_nothing_was_written_to_disk_by_refused_uploads(
    client: httpx.Client, base: str, live_server: object
) -> None:
    from tests.support.live import LiveServer

    assert isinstance(live_server, LiveServer)
    for path in HOSTILE_PATHS:
        client.post(
            "/api/v1/uploads",
            headers={
                "Upload-Length": "1",
                "Upload-Metadata": f"path {meta_value(path)}",
                "Content-Type": tus.OCTETS,
            },
            content=b"x",
        )
    assert list(live_server.settings.upload_dir.iterdir()) == []
    assert len([p for p in live_server.settings.blob_dir.rglob("*") if p.is_file()]) == 1


def test_decomposed_unicode_lands_as_nfc(client: httpx.Client) -> None:
    decomposed = "/cafe\u0301/re\u0301sume\u0301.txt"
    r = tus.upload(client, decomposed, b"x")
    assert r.status_code == 201
    meta = client.get("/api/v1/metadata", params={"path": "/café/résumé.txt"})
    assert meta.status_code == 200
    assert meta.json()["name"] == "résumé.txt"
    # Looking it up by the decomposed spelling finds the same entry.
    same = client.get("/api/v1/metadata", params={"path": decomposed})
    assert same.json()["id"] == meta.json()["id"]
