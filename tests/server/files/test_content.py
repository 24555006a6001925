"""Content download: whole file, single ranges byte-exact, If-Range, ETag, Repr-Digest, HEAD."""

from __future__ import annotations

import base64
import hashlib
import os

import httpx
import pytest

from tests.server.tus import upload

DATA = os.urandom(300_000)


@pytest.fixture
def file_id(client: httpx.Client) -> str:
    r = upload(client, "/data.bin", DATA)
    assert r.status_code == 201
    return r.headers["dropline-entry-id"]


def url(file_id: str) -> str:
    return f"/api/v1/files/{file_id}/content"


def test_whole_download_carries_etag_and_digest(client: httpx.Client, file_id: str) -> None:
    r = client.get(url(file_id))
    assert r.status_code == 200
    assert r.content == DATA
    entry = client.get(f"/api/v1/files/{file_id}").json()
    assert r.headers["etag"] == f'"{entry["rev"]}"'
    digest = base64.b64encode(hashlib.sha256(DATA).digest()).decode()
    assert r.headers["repr-digest"] == f"sha-256=:{digest}:"
    assert r.headers["accept-ranges"] == "bytes"
    assert r.headers["content-length"] == str(len(DATA))


@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=100-199", 100, 199),
        ("bytes=299990-", 299990, 299999),
        ("bytes=-10", 299990, 299999),
        ("bytes=-999999", 0, 299999),
        ("bytes=250000-999999", 250000, 299999),
    ],
)
def test_single_range_is_byte_exact(
    client: httpx.Client, file_id: str, header: str, start: int, end: int
) -> None:
    r = client.get(url(file_id), headers={"Range": header})
    assert r.status_code == 206
    assert r.content == DATA[start : end + 1]
    assert r.headers["content-range"] == f"bytes {start}-{end}/{len(DATA)}"


def test_large_range_across_read_boundaries(client: httpx.Client) -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    file_id = upload(client, "/big.bin", data).headers["dropline-entry-id"]
    r = client.get(url(file_id), headers={"Range": "bytes=1048570-2097160"})
    assert r.content == data[1048570:2097161]


@pytest.mark.parametrize("header", ["bytes=300000-", "bytes=400000-500000", "bytes=-0"])
def test_unsatisfiable_range_is_416(client: httpx.Client, file_id: str, header: str) -> None:
    r = client.get(url(file_id), headers={"Range": header})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(DATA)}"
    assert r.json()["type"].endswith("/range-not-satisfiable")


@pytest.mark.parametrize(
    "header",
    ["bytes", "bytes=abc", "bytes=5-3", "bytes=1-2-3", "bytes=-", "bytes=1e3-", "bytes=²-"],
)
def test_malformed_range_is_400(client: httpx.Client, file_id: str, header: str) -> None:
    r = client.get(url(file_id), headers={"Range": header.encode("latin-1")})
    assert r.status_code == 400
    assert r.json()["type"].endswith("/bad-request")


def test_multi_range_and_other_units_get_the_whole_file(client: httpx.Client, file_id: str) -> None:
    for header in ("bytes=0-1,5-6", "items=0-1"):
        r = client.get(url(file_id), headers={"Range": header})
        assert r.status_code == 200
        assert r.content == DATA


def test_if_range_matching_gives_range_else_whole_file(client: httpx.Client, file_id: str) -> None:
    etag = client.head(url(file_id)).headers["etag"]
    same = client.get(url(file_id), headers={"Range": "bytes=0-9", "If-Range": etag})
    assert same.status_code == 206
    assert same.content == DATA[:10]
    new = os.urandom(1000)
    upload(client, "/data.bin", new)
    changed = client.get(url(file_id), headers={"Range": "bytes=0-9", "If-Range": etag})
    assert changed.status_code == 200
    assert changed.content == new


def test_if_none_match_gives_304(client: httpx.Client, file_id: str) -> None:
    etag = client.head(url(file_id)).headers["etag"]
    r = client.get(url(file_id), headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.content == b""


def test_head_has_the_headers_and_no_body(client: httpx.Client, file_id: str) -> None:
    r = client.head(url(file_id), headers={"Range": "bytes=10-19"})
    assert r.status_code == 206
    assert r.content == b""
    assert r.headers["content-length"] == "10"
    assert r.headers["repr-digest"].startswith("sha-256=:")


def test_folder_has_no_content(client: httpx.Client) -> None:
    folder = client.post("/api/v1/folders", json={"path": "/folder"}).json()
    r = client.get(url(folder["id"]))
    assert r.status_code == 409
    assert client.get(url("00000000-0000-0000-0000-000000000000")).status_code == 404


def test_empty_file_downloads_empty(client: httpx.Client) -> None:
    file_id = upload(client, "/empty.txt", b"").headers["dropline-entry-id"]
    r = client.get(url(file_id))
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["repr-digest"] == (
        "sha-256=:" + base64.b64encode(hashlib.sha256(b"").digest()).decode() + ":"
    )
    assert client.get(url(file_id), headers={"Range": "bytes=0-"}).status_code == 416
