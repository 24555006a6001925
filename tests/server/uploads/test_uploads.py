"""tus 1.0.0 at /api/v1/uploads: creation, append, checksum, termination, expiry, publish rules."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import warnings

import httpx
import pytest

from dropline.server.audit.events import events_after
from tests.server import tus
from tests.support.live import LiveServer
from tests.support.s3 import stored_blob_ids


def entry(client: httpx.Client, path: str) -> httpx.Response:
    return client.get("/api/v1/metadata", params={"path": path})


def content(client: httpx.Client, path: str) -> bytes:
    entry_id = entry(client, path).json()["id"]
    return client.get(f"/api/v1/files/{entry_id}/content").content


def staged_files(live: LiveServer) -> list[str]:
    return sorted(p.name for p in live.settings.upload_dir.iterdir())


def test_options_lists_the_protocol(client: httpx.Client) -> None:
    r = client.options("/api/v1/uploads")
    assert r.status_code == 204
    assert r.headers["tus-version"] == "1.0.0"
    assert set(r.headers["tus-extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "checksum",
        "termination",
        "expiration",
    }
    assert r.headers["tus-checksum-algorithm"] == "sha256,sha1"
    assert int(r.headers["tus-max-size"]) > 0


def test_create_then_patch_in_chunks_publishes_the_file(client: httpx.Client) -> None:
    data = os.urandom(100_000)
    r = tus.create(client, len(data), path="/up/chunked.bin", sha256=tus.sha256(data))
    assert r.status_code == 201
    assert r.headers["tus-resumable"] == "1.0.0"
    assert "upload-expires" in r.headers
    location = r.headers["location"]
    assert location.startswith("/api/v1/uploads/")
    head = client.head(location)
    assert head.headers["upload-offset"] == "0"
    assert head.headers["upload-length"] == str(len(data))
    assert head.headers["cache-control"] == "no-store"
    assert "upload-metadata" in head.headers
    offset = 0
    for size in (30_000, 30_000, 40_000):
        p = tus.patch(client, location, offset, data[offset : offset + size])
        assert p.status_code == 204, p.text
        offset += size
        assert p.headers["upload-offset"] == str(offset)
    assert "dropline-entry-id" in p.headers
    got = entry(client, "/up/chunked.bin").json()
    assert got["id"] == p.headers["dropline-entry-id"]
    assert got["rev"] == p.headers["dropline-rev"]
    assert got["sha256"] == tus.sha256(data)
    assert content(client, "/up/chunked.bin") == data
    later = client.head(location)
    assert later.headers["dropline-entry-id"] == got["id"]
    assert later.headers["upload-offset"] == str(len(data))


def test_creation_with_upload_publishes_in_one_request(client: httpx.Client) -> None:
    data = b"one request"
    r = tus.upload(client, "/one.txt", data, mtime=1700000000.5)
    assert r.status_code == 201
    assert r.headers["upload-offset"] == str(len(data))
    got = entry(client, "/one.txt").json()
    assert got["mtime"] == 1700000000.5
    assert got["rev"] == r.headers["dropline-rev"]
    assert client.head(r.headers["location"]).headers["dropline-entry-id"] == got["id"]


def test_published_post_answers_with_the_entry(client: httpx.Client) -> None:
    data = b"x" * 5000
    r = tus.upload(client, "/answers/entry.txt", data, mtime=1700000001.25)
    assert r.status_code == 201
    assert r.headers["content-type"] == "application/json"
    assert r.json() == entry(client, "/answers/entry.txt").json()
    assert r.json()["sha256"] == tus.sha256(data)
    assert r.json()["id"] == r.headers["dropline-entry-id"]
    # Replacing it answers with the new revision of the same entry.
    again = tus.upload(client, "/answers/entry.txt", b"y" * 10)
    assert again.json()["id"] == r.json()["id"]
    assert again.json()["rev"] == again.headers["dropline-rev"] != r.json()["rev"]
    assert again.json()["size"] == 10


def test_unfinished_post_answers_without_a_body(client: httpx.Client) -> None:
    r = tus.create(client, 10, path="/answers/later.txt")
    assert r.status_code == 201
    assert r.content == b""
    part = client.post(
        "/api/v1/uploads",
        headers={
            "Upload-Length": "10",
            "Upload-Metadata": tus.metadata(path="/answers/part.txt"),
            "Content-Type": tus.OCTETS,
        },
        content=b"12345",
    )
    assert part.status_code == 201
    assert part.content == b""
    assert "dropline-entry-id" not in part.headers


def test_creation_with_partial_body_continues_with_patch(client: httpx.Client) -> None:
    data = os.urandom(5000)
    r = client.post(
        "/api/v1/uploads",
        headers={
            "Upload-Length": str(len(data)),
            "Upload-Metadata": tus.metadata(path="/partial.bin"),
            "Content-Type": tus.OCTETS,
        },
        content=data[:2000],
    )
    assert r.status_code == 201
    assert r.headers["upload-offset"] == "2000"
    assert "dropline-entry-id" not in r.headers
    p = tus.patch(client, r.headers["location"], 2000, data[2000:])
    assert p.status_code == 204
    assert content(client, "/partial.bin") == data


def test_zero_length_upload_is_published_by_the_post(client: httpx.Client) -> None:
    r = tus.create(client, 0, path="/empty.txt")
    assert r.status_code == 201
    assert "dropline-entry-id" in r.headers
    got = entry(client, "/empty.txt").json()
    assert r.json() == got
    assert got["size"] == 0
    assert got["sha256"] == hashlib.sha256(b"").hexdigest()


def test_filename_and_parent_path_metadata(client: httpx.Client) -> None:
    r = tus.create(client, 3, filename="plain.txt", parent_path="/inbox")
    tus.patch(client, r.headers["location"], 0, b"abc")
    assert content(client, "/inbox/plain.txt") == b"abc"
    r = tus.create(client, 1, filename="top.txt")
    tus.patch(client, r.headers["location"], 0, b"z")
    assert content(client, "/top.txt") == b"z"


@pytest.mark.parametrize("algorithm", ["sha256", "sha1"])
def test_matching_chunk_checksum_is_accepted(client: httpx.Client, algorithm: str) -> None:
    r = tus.create(client, 6, path=f"/sum-{algorithm}.txt")
    p = tus.patch(
        client,
        r.headers["location"],
        0,
        b"abcdef",
        **{"Upload-Checksum": tus.checksum(b"abcdef", algorithm)},
    )
    assert p.status_code == 204
    assert content(client, f"/sum-{algorithm}.txt") == b"abcdef"


def test_mismatched_checksum_is_460_and_the_chunk_is_discarded(client: httpx.Client) -> None:
    r = tus.create(client, 8, path="/bad-sum.txt", sha256=tus.sha256(b"abcdwxyz"))
    location = r.headers["location"]
    tus.patch(client, location, 0, b"abcd")
    bad = tus.patch(client, location, 4, b"wxyz", **{"Upload-Checksum": tus.checksum(b"0000")})
    assert bad.status_code == 460
    assert bad.json()["type"].endswith("/checksum-mismatch")
    assert client.head(location).headers["upload-offset"] == "4"
    # The running whole-file hash was rolled back too: the right bytes still publish.
    good = tus.patch(client, location, 4, b"wxyz", **{"Upload-Checksum": tus.checksum(b"wxyz")})
    assert good.status_code == 204
    assert content(client, "/bad-sum.txt") == b"abcdwxyz"


def test_checksum_header_errors(client: httpx.Client) -> None:
    location = tus.create(client, 4, path="/h.txt").headers["location"]
    cases = [
        ("md5 " + "AAAAAAAAAAAAAAAAAAAAAA==", 400, "unsupported-checksum"),
        ("sha256 !!!notbase64", 400, "bad-request"),
        ("sha256 " + "AAAA", 400, "bad-request"),
    ]
    for header, status, slug in cases:
        r = tus.patch(client, location, 0, b"abcd", **{"Upload-Checksum": header})
        assert (r.status_code, r.json()["type"].rsplit("/", 1)[1]) == (status, slug)
    assert client.head(location).headers["upload-offset"] == "0"


def test_wrong_offset_is_409_and_writes_nothing(
    client: httpx.Client, live_server: LiveServer
) -> None:
    location = tus.create(client, 10, path="/off.txt").headers["location"]
    tus.patch(client, location, 0, b"12345")
    r = tus.patch(client, location, 3, b"XXXXXXX")
    assert r.status_code == 409
    assert r.json()["type"].endswith("/offset-mismatch")
    assert r.headers["upload-offset"] == "5"
    upload_id = location.rsplit("/", 1)[1]
    assert (live_server.settings.upload_dir / f"{upload_id}.part").read_bytes() == b"12345"
    assert tus.patch(client, location, 5, b"67890").status_code == 204
    assert content(client, "/off.txt") == b"1234567890"


def test_patch_header_errors(client: httpx.Client) -> None:
    location = tus.create(client, 4, path="/e.txt").headers["location"]
    wrong_type = client.patch(
        location, headers={"Upload-Offset": "0", "Content-Type": "text/plain"}, content=b"abcd"
    )
    assert wrong_type.status_code == 415
    no_offset = client.patch(location, headers={"Content-Type": tus.OCTETS}, content=b"abcd")
    assert no_offset.status_code == 400
    bad_offset = client.patch(
        location, headers={"Upload-Offset": "-1", "Content-Type": tus.OCTETS}, content=b"abcd"
    )
    assert bad_offset.status_code == 400
    no_version = client.patch(
        location,
        headers={"Upload-Offset": "0", "Content-Type": tus.OCTETS, "Tus-Resumable": "0.2.2"},
        content=b"abcd",
    )
    assert no_version.status_code == 412
    assert no_version.json()["type"].endswith("/tus-version")
    assert no_version.headers["tus-version"] == "1.0.0"
    too_much = tus.patch(client, location, 0, b"abcdef")
    assert too_much.status_code == 413
    assert client.head(location).headers["upload-offset"] == "0"


def test_oversize_upload_is_413(client: httpx.Client, live_server: LiveServer) -> None:
    r = tus.create(client, live_server.settings.max_upload_bytes + 1, path="/huge.bin")
    assert r.status_code == 413
    assert r.json()["type"].endswith("/too-large")
    body_longer = client.post(
        "/api/v1/uploads",
        headers={
            "Upload-Length": "2",
            "Upload-Metadata": tus.metadata(path="/x"),
            "Content-Type": tus.OCTETS,
        },
        content=b"abc",
    )
    assert body_longer.status_code == 413
    assert client.get("/api/v1/files").json()["entries"] == []


def test_creation_header_errors(client: httpx.Client) -> None:
    def post(headers: dict[str, str]) -> httpx.Response:
        return client.post("/api/v1/uploads", headers=headers)

    good_meta = tus.metadata(path="/c.txt")
    cases = [
        ({"Upload-Metadata": good_meta}, "bad-request"),
        ({"Upload-Length": "ten", "Upload-Metadata": good_meta}, "bad-request"),
        ({"Upload-Defer-Length": "1", "Upload-Metadata": good_meta}, "bad-request"),
        ({"Upload-Length": "1", "Upload-Metadata": "path !!!"}, "bad-request"),
        ({"Upload-Length": "1", "Upload-Metadata": "path " + "//79"}, "bad-request"),
        ({"Upload-Length": "1", "Upload-Metadata": good_meta + "," + good_meta}, "bad-request"),
        ({"Upload-Length": "1"}, "validation"),
        (
            {"Upload-Length": "1", "Upload-Metadata": tus.metadata(path="/a", sha256="xyz")},
            "validation",
        ),
        (
            {"Upload-Length": "1", "Upload-Metadata": tus.metadata(path="/a", mtime="soon")},
            "validation",
        ),
        (
            {"Upload-Length": "1", "Upload-Metadata": tus.metadata(path="/a", mtime="nan")},
            "validation",
        ),
        (
            {"Upload-Length": "1", "Upload-Metadata": tus.metadata(path="/a", if_rev="a b")},
            "validation",
        ),
        (
            {"Upload-Length": "1", "Upload-Metadata": tus.metadata(path="a/relative")},
            "invalid-name",
        ),
        ({"Upload-Length": "1", "Upload-Metadata": tus.metadata(filename="../up")}, "invalid-name"),
    ]
    for headers, slug in cases:
        r = post(headers)
        assert r.status_code == 400, headers
        assert r.json()["type"].endswith("/" + slug), (headers, r.json())
    assert client.get("/api/v1/changes").json()["changes"] == []


def test_declared_sha256_mismatch_publishes_nothing(
    client: httpx.Client, live_server: LiveServer
) -> None:
    r = tus.create(client, 4, path="/lie.txt", sha256=tus.sha256(b"true"))
    location = r.headers["location"]
    bad = tus.patch(client, location, 0, b"fake")
    assert bad.status_code == 422
    assert bad.json()["type"].endswith("/integrity")
    assert entry(client, "/lie.txt").status_code == 404
    assert client.head(location).status_code == 404
    assert staged_files(live_server) == []


def blob_files(live: LiveServer) -> list[str]:
    return stored_blob_ids(live.settings.blob_url)


def failed_events(live: LiveServer) -> list[dict[str, object]]:
    with live.app.state.db.read() as conn:  # type: ignore[attr-defined]
        return [e["payload"] for e in events_after(conn) if e["type"] == "upload.failed"]


def test_whole_post_with_the_wrong_sha256_keeps_nothing(
    client: httpx.Client, live_server: LiveServer
) -> None:
    r = tus.upload(client, "/lie-in-one.txt", b"fake", sha256=tus.sha256(b"true"))
    assert r.status_code == 422
    assert r.json()["type"].endswith("/integrity")
    assert entry(client, "/lie-in-one.txt").status_code == 404
    assert staged_files(live_server) == []
    assert blob_files(live_server) == []
    assert client.get("/api/v1/changes").json()["changes"] == []
    [failed] = failed_events(live_server)
    assert failed["path"] == "/lie-in-one.txt"
    assert failed["code"] == "integrity"


def test_whole_post_refused_at_publish_removes_its_blob(
    client: httpx.Client, live_server: LiveServer
) -> None:
    assert tus.upload(client, "/taken.txt", b"first").status_code == 201
    r = tus.upload(client, "/taken.txt", b"second", if_rev="none")
    assert r.status_code == 412
    assert content(client, "/taken.txt") == b"first"
    assert staged_files(live_server) == []
    assert len(blob_files(live_server)) == 1
    assert [f["code"] for f in failed_events(live_server)] == ["precondition-failed"]


def repr_digest(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def test_repr_digest_on_the_last_patch_declares_the_whole_file(client: httpx.Client) -> None:
    data = os.urandom(3000)
    location = tus.create(client, len(data), path="/declared-late.bin").headers["location"]
    assert tus.patch(client, location, 0, data[:1000]).status_code == 204
    last = tus.patch(client, location, 1000, data[1000:], **{"Repr-Digest": repr_digest(data)})
    assert last.status_code == 204, last.text
    assert entry(client, "/declared-late.bin").json()["sha256"] == tus.sha256(data)


def test_repr_digest_that_does_not_match_publishes_nothing(
    client: httpx.Client, live_server: LiveServer
) -> None:
    data = os.urandom(3000)
    location = tus.create(client, len(data), path="/declared-wrong.bin").headers["location"]
    # Declared early (on a PATCH that does not finish the upload), checked at the end.
    first = tus.patch(client, location, 0, data[:1000], **{"Repr-Digest": repr_digest(b"x")})
    assert first.status_code == 204
    last = tus.patch(client, location, 1000, data[1000:])
    assert last.status_code == 422
    assert last.json()["type"].endswith("/integrity")
    assert entry(client, "/declared-wrong.bin").status_code == 404
    assert client.head(location).status_code == 404
    assert staged_files(live_server) == []


def test_repr_digest_errors_write_nothing(client: httpx.Client) -> None:
    data = b"declared"
    location = tus.create(client, len(data), path="/declared.txt", sha256=tus.sha256(data)).headers[
        "location"
    ]
    for value, slug in (
        ("sha-256=abc", "bad-request"),
        ("sha-256=:not base64!:", "bad-request"),
        (f"sha-256=:{base64.b64encode(b'short').decode()}:", "bad-request"),
        (repr_digest(b"other content"), "validation"),  # differs from the metadata's
    ):
        r = tus.patch(client, location, 0, data, **{"Repr-Digest": value})
        assert r.status_code == 400, (value, r.text)
        assert r.json()["type"].endswith("/" + slug)
        assert client.head(location).headers["upload-offset"] == "0"
    # Other algorithms are ignored; the matching sha-256 is accepted.
    ok = tus.patch(
        client, location, 0, data, **{"Repr-Digest": "sha-512=:AAAA:, " + repr_digest(data)}
    )
    assert ok.status_code == 204, ok.text
    assert "dropline-entry-id" in ok.headers


def test_if_rev_none_only_creates(client: httpx.Client) -> None:
    assert tus.upload(client, "/once.txt", b"1", if_rev="none").status_code == 201
    r = tus.upload(client, "/once.txt", b"2", if_rev="none")
    assert r.status_code == 412
    assert r.json()["type"].endswith("/precondition-failed")
    assert content(client, "/once.txt") == b"1"


def test_if_rev_replaces_only_that_rev(client: httpx.Client) -> None:
    first = tus.upload(client, "/rev.txt", b"1")
    rev = first.headers["dropline-rev"]
    second = tus.upload(client, "/rev.txt", b"2", if_rev=rev)
    assert second.status_code == 201
    assert second.headers["dropline-entry-id"] == first.headers["dropline-entry-id"]
    stale = tus.upload(client, "/rev.txt", b"3", if_rev=rev)
    assert stale.status_code == 412
    assert content(client, "/rev.txt") == b"2"
    missing = tus.upload(client, "/nothing-here.txt", b"3", if_rev=rev)
    assert missing.status_code == 412


def test_stale_if_rev_is_refused_at_creation_before_bytes_travel(client: httpx.Client) -> None:
    tus.upload(client, "/early.txt", b"1")
    r = tus.create(client, 10, path="/early.txt", if_rev="none")
    assert r.status_code == 412


def test_stale_if_rev_at_completion_is_412_and_discards(
    client: httpx.Client, live_server: LiveServer
) -> None:
    location = tus.create(client, 3, path="/race.txt", if_rev="none").headers["location"]
    tus.upload(client, "/race.txt", b"win")
    r = tus.patch(client, location, 0, b"los")
    assert r.status_code == 412
    assert content(client, "/race.txt") == b"win"
    assert staged_files(live_server) == []
    assert len(blob_files(live_server)) == 1  # the winner's; the loser's blob was removed


def test_upload_over_a_folder_is_409(client: httpx.Client) -> None:
    client.post("/api/v1/folders", json={"path": "/dir"})
    r = tus.upload(client, "/dir", b"x")
    assert r.status_code == 409
    under_file = tus.upload(client, "/one.txt", b"x")
    assert under_file.status_code == 201
    assert tus.upload(client, "/one.txt/below.txt", b"y").status_code == 409


def test_overwrite_keeps_the_id_and_records_modified(client: httpx.Client) -> None:
    a = tus.upload(client, "/same.txt", b"1")
    b = tus.upload(client, "/same.txt", b"22")
    assert a.headers["dropline-entry-id"] == b.headers["dropline-entry-id"]
    actions = [c["action"] for c in client.get("/api/v1/changes").json()["changes"]]
    assert actions == ["created", "modified"]


def test_termination_removes_the_upload_and_its_bytes(
    client: httpx.Client, live_server: LiveServer
) -> None:
    location = tus.create(client, 10, path="/term.txt").headers["location"]
    tus.patch(client, location, 0, b"12345")
    assert staged_files(live_server) != []
    r = client.delete(location)
    assert r.status_code == 204
    assert client.head(location).status_code == 404
    assert tus.patch(client, location, 5, b"67890").status_code == 404
    assert staged_files(live_server) == []
    assert entry(client, "/term.txt").status_code == 404


def test_unknown_upload_ids_are_404(client: httpx.Client) -> None:
    for upload_id in ("0" * 32, "not-an-id", "..%2F..%2Fetc"):
        assert client.head(f"/api/v1/uploads/{upload_id}").status_code == 404
        assert client.delete(f"/api/v1/uploads/{upload_id}").status_code == 404


def test_expired_upload_is_410_then_cleaned_up(
    client: httpx.Client, live_server: LiveServer
) -> None:
    location = tus.create(client, 10, path="/late.txt").headers["location"]
    tus.patch(client, location, 0, b"12345")
    uploads = live_server.app.state.uploads  # type: ignore[attr-defined]
    uploads.expiry_seconds = -1  # every upload from now on is already past its expiry
    try:
        tus.patch(client, location, 5, b"6")  # refreshes expires_at into the past
    finally:
        uploads.expiry_seconds = 3600
    assert client.head(location).status_code == 410
    r = tus.patch(client, location, 6, b"7")
    assert r.status_code == 410
    assert r.json()["type"].endswith("/upload-expired")
    assert staged_files(live_server) != []
    assert asyncio.run(uploads.cleanup_expired()) == 1
    assert staged_files(live_server) == []
    assert client.head(location).status_code == 404


def test_the_documented_routes_answer_like_the_fast_lane(
    client: httpx.Client, live_server: LiveServer
) -> None:
    routes = live_server.app.router.routes  # type: ignore[attr-defined]
    lane = [r for r in routes if getattr(r, "include_in_schema", True) is False]
    assert {(r.path, *sorted(r.methods)) for r in lane} >= {
        ("/api/v1/uploads", "POST"),
        ("/api/v1/uploads/{upload_id}", "PATCH"),
    }
    answers = []
    for without_lane in (False, True):
        if without_lane:
            for r in lane:
                routes.remove(r)
        try:
            data = b"both ways " * 100
            whole = tus.upload(client, f"/lane/{without_lane}.txt", data)
            location = tus.create(client, 3, path=f"/lane/{without_lane}-late.txt").headers[
                "location"
            ]
            patched = tus.patch(client, location, 0, b"abc")
            anonymous = httpx.post(
                live_server.url + "/api/v1/uploads", headers={"Tus-Resumable": "1.0.0"}
            )
            no_tus = client.post("/api/v1/uploads", headers={"Tus-Resumable": "0.2.2"})
            answers.append(
                (
                    whole.status_code,
                    sorted(set(whole.json()) - {"id", "rev", "mtime", "path", "name"}),
                    patched.status_code,
                    "dropline-entry-id" in patched.headers,
                    anonymous.status_code,
                    anonymous.json()["type"],
                    no_tus.status_code,
                    no_tus.headers.get("tus-version"),
                )
            )
        finally:
            if without_lane:
                routes[0:0] = lane
    assert answers[0] == answers[1]
    assert answers[0][0] == 201 and answers[0][4] == 401 and answers[0][6] == 412


def test_the_openapi_document_describes_the_upload_headers(client: httpx.Client) -> None:
    # FastAPI warns about an operation id shared by two file routes; the server runs in
    # this process, where warnings are errors, so only that warning is let through.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Duplicate Operation ID", category=UserWarning)
        document = client.get("/openapi.json")
    assert document.status_code == 200, document.text[:300]
    paths = document.json()["paths"]
    post = paths["/api/v1/uploads"]["post"]
    assert {p["name"] for p in post["parameters"]} >= {
        "upload-length",
        "upload-metadata",
        "tus-resumable",
    }
    assert post["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/EntryOut"
    )
    patch = paths["/api/v1/uploads/{upload_id}"]["patch"]
    assert {p["name"] for p in patch["parameters"]} >= {
        "upload-offset",
        "upload-checksum",
        "repr-digest",
    }
    assert "/api/v1/uploads/batch" in paths
