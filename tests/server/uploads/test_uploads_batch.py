"""POST /api/v1/uploads/batch against the real server: many small files in one request,
each checked like a tus upload, the good ones published together, the bad ones alone."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

import dropline.server.uploads.batch
from dropline.server.audit.events import events_after
from dropline.server.guard import policy
from dropline.server.storage import schema
from tests.server import tus
from tests.server.conftest import api_client
from tests.support.docs import doc_block, example_env, run_shell
from tests.support.live import LiveServer
from tests.support.s3 import stored_blob_ids

BATCH = "/api/v1/uploads/batch"
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 200


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def spec(path: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"path": path, "sha256": sha(data), **extra}


def batch(
    client: httpx.Client, items: list[tuple[dict[str, Any], bytes]], **manifest: Any
) -> httpx.Response:
    doc = {"files": [s for s, _ in items], **manifest}
    parts: list[tuple[str, tuple[str | None, bytes | str, str]]] = [
        ("manifest", (None, json.dumps(doc), "application/json"))
    ]
    parts += [
        ("file", (f"f{i}", data, "application/octet-stream")) for i, (_s, data) in enumerate(items)
    ]
    return client.post(BATCH, files=parts)


def raw_batch(client: httpx.Client, body: bytes, boundary: str = "XyZ") -> httpx.Response:
    return client.post(
        BATCH, content=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"}
    )


def part(name: str, data: bytes, boundary: str = "XyZ") -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
        + data
        + b"\r\n"
    )


def entry(client: httpx.Client, path: str) -> httpx.Response:
    return client.get("/api/v1/metadata", params={"path": path})


def content(client: httpx.Client, path: str) -> bytes:
    return client.get(f"/api/v1/files/{entry(client, path).json()['id']}/content").content


def results(r: httpx.Response) -> list[dict[str, Any]]:
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["succeeded"] + doc["failed"] == len(doc["results"])
    assert [x["index"] for x in doc["results"]] == list(range(len(doc["results"])))
    out: list[dict[str, Any]] = doc["results"]
    return out


def slugs(r: httpx.Response) -> list[str]:
    return [
        "ok" if x["status"] == 201 else x["problem"]["type"].rsplit("/", 1)[1] for x in results(r)
    ]


def rows(live: LiveServer, table: Any) -> list[Any]:
    with live.app.state.db.read() as conn:  # type: ignore[attr-defined]
        return list(conn.execute(select(table)).all())


def outbox(live: LiveServer) -> list[dict[str, Any]]:
    with live.app.state.db.read() as conn:  # type: ignore[attr-defined]
        return events_after(conn, limit=10_000)


def leftovers(live: LiveServer) -> list[Path]:
    return [p for p in live.settings.upload_dir.rglob("*") if p.is_file()]


def blobs(live: LiveServer) -> list[str]:
    """The ids of the blobs the server's store holds (on disk or in a bucket)."""
    return stored_blob_ids(live.settings.blob_url)


# -- success ---------------------------------------------------------------------------


def test_a_batch_publishes_every_file_with_its_rows(
    client: httpx.Client, live_server: LiveServer
) -> None:
    datas = [os.urandom(4096) for _ in range(5)]
    items = [
        (spec(f"/batch/d{i % 2}/f{i}.bin", d, mtime=1_700_000_000 + i), d)
        for i, d in enumerate(datas)
    ]
    r = batch(client, items)
    got = results(r)
    assert [x["status"] for x in got] == [201] * 5
    assert r.json()["succeeded"] == 5
    for (s, data), x in zip(items, got, strict=True):
        assert x["path"] == s["path"]
        assert x["entry"] == entry(client, s["path"]).json()
        assert x["entry"]["sha256"] == sha(data) and x["entry"]["size"] == 4096
        assert x["entry"]["mtime"] == s["mtime"]
        assert content(client, s["path"]) == data
    # The change feed: the folders the batch needed, then each file, in manifest order.
    feed = client.get("/api/v1/changes").json()["changes"]
    assert [(c["action"], c["entry"]["path"]) for c in feed] == [
        ("created", "/batch"),
        ("created", "/batch/d0"),
        ("created", "/batch/d0/f0.bin"),
        ("created", "/batch/d1"),
        ("created", "/batch/d1/f1.bin"),
        ("created", "/batch/d0/f2.bin"),
        ("created", "/batch/d1/f3.bin"),
        ("created", "/batch/d0/f4.bin"),
    ]
    # An audit row and a file.uploaded event for every file, carrying this request's id.
    audits = [a for a in rows(live_server, schema.audit_events) if a.action == "file.created"]
    files_audited = [a for a in audits if json.loads(a.detail)["type"] == "file"]
    assert sorted(a.resource for a in files_audited) == sorted(s["path"] for s, _ in items)
    assert {a.request_id for a in files_audited} == {r.headers["x-request-id"]}
    uploaded = [
        e["payload"]["entry"]["path"] for e in outbox(live_server) if e["type"] == "file.uploaded"
    ]
    assert uploaded == [s["path"] for s, _ in items]
    assert leftovers(live_server) == []


def test_a_batch_lands_in_one_blob_directory(client: httpx.Client, live_server: LiveServer) -> None:
    items = [
        (spec(f"/shard/f{i}.bin", d), d) for i, d in enumerate(os.urandom(100) for _ in range(40))
    ]
    assert slugs(batch(client, items)) == ["ok"] * 40
    # One shard (a directory on disk: one directory fsync for all).
    assert len({blob_id[:2] for blob_id in blobs(live_server)}) == 1


def test_a_batch_replaces_files_like_an_upload_does(client: httpx.Client) -> None:
    first = tus.upload(client, "/same/a.txt", b"one")
    r = batch(client, [(spec("/same/a.txt", b"two"), b"two"), (spec("/same/empty", b""), b"")])
    a, empty = results(r)
    assert a["entry"]["id"] == first.headers["dropline-entry-id"]
    assert a["entry"]["rev"] != first.headers["dropline-rev"]
    assert content(client, "/same/a.txt") == b"two"
    assert empty["entry"]["size"] == 0
    feed = client.get("/api/v1/changes").json()["changes"]
    assert [c["action"] for c in feed if c["entry"]["path"] == "/same/a.txt"] == [
        "created",
        "modified",
    ]


# -- one bad file fails alone ----------------------------------------------------------


def test_mixed_good_and_bad_files_fail_one_by_one(
    client: httpx.Client, live_server: LiveServer
) -> None:
    good = b"good bytes"
    items = [
        (spec("/mixed/ok1.txt", good), good),
        ({"path": "/mixed/lie.txt", "sha256": sha(b"something else")}, b"the truth"),
        ({"path": "/mixed/nohash.txt"}, b"x"),
        ({"path": "/mixed/shorthash.txt", "sha256": "abc"}, b"x"),
        (spec("/mixed/extra.txt", b"x", colour="red"), b"x"),
        (spec("/mixed/ok2.txt", good, mtime=-5), good),
        (spec("/mixed/ok1.txt", good), good),  # the same path twice in one batch
        (spec("/mixed/ok3.txt", good, if_rev="not a rev!"), good),
        (spec("/mixed/ok4.txt", good), good),
    ]
    assert slugs(batch(client, items)) == [
        "ok",
        "integrity",
        "validation",
        "validation",
        "validation",
        "validation",
        "validation",
        "validation",
        "ok",
    ]
    listed = client.get("/api/v1/files", params={"path": "/mixed"}).json()["entries"]
    assert [e["name"] for e in listed] == ["ok1.txt", "ok4.txt"]
    # upload.failed only for the file whose bytes arrived and failed their check.
    failed = [e["payload"] for e in outbox(live_server) if e["type"] == "upload.failed"]
    assert [(f["path"], f["code"]) for f in failed] == [("/mixed/lie.txt", "integrity")]
    assert leftovers(live_server) == []
    assert len(blobs(live_server)) == 2


@pytest.mark.parametrize(
    "hostile",
    [
        "relative.txt",
        "/a/../etc/passwd",
        "/a/./b.txt",
        "/a//b.txt",
        "/trailing/",
        "/nul\x00.txt",
        "/ctrl\x07.txt",
        "/back\\slash.txt",
        "/" + "n" * 256,
        "/",
        "",
    ],
)
def test_hostile_names_are_refused_and_change_nothing(
    client: httpx.Client, live_server: LiveServer, hostile: str
) -> None:
    data = b"hostile"
    r = batch(client, [(spec(hostile, data), data), (spec("/fine.txt", data), data)])
    assert slugs(r) == ["invalid-name", "ok"]
    assert [c["entry"]["path"] for c in client.get("/api/v1/changes").json()["changes"]] == [
        "/fine.txt"
    ]
    assert leftovers(live_server) == []


def test_names_are_nfc_normalised(client: httpx.Client) -> None:
    decomposed = "/cafe\u0301.txt"
    r = batch(client, [(spec(decomposed, b"c"), b"c")])
    [x] = results(r)
    assert x["path"] == decomposed  # as given, for the caller to match
    assert x["entry"]["path"] == "/caf\u00e9.txt"


def test_if_rev_guards_each_file(client: httpx.Client, live_server: LiveServer) -> None:
    old = tus.upload(client, "/rev/kept.txt", b"old").headers["dropline-rev"]
    tus.upload(client, "/rev/taken.txt", b"taken")
    client.post("/api/v1/folders", json={"path": "/rev/folder"})
    tus.upload(client, "/rev/file", b"a file where a folder would go")
    new = b"new"
    r = batch(
        client,
        [
            (spec("/rev/kept.txt", new, if_rev=old), new),
            (spec("/rev/taken.txt", new, if_rev="none"), new),
            (spec("/rev/kept.txt", new, if_rev=old), new),  # the same path twice: refused
            (spec("/rev/fresh.txt", new, if_rev="none"), new),
            (spec("/rev/missing.txt", new, if_rev=old), new),
            (spec("/rev/folder", new), new),
            (spec("/rev/file/below.txt", new), new),
        ],
    )
    assert slugs(r) == [
        "ok",
        "precondition-failed",
        "validation",
        "ok",
        "precondition-failed",
        "already-exists",
        "conflict",
    ]
    assert content(client, "/rev/kept.txt") == new
    assert content(client, "/rev/taken.txt") == b"taken"
    assert entry(client, "/rev/missing.txt").status_code == 404
    failed = [e["payload"]["code"] for e in outbox(live_server) if e["type"] == "upload.failed"]
    assert sorted(failed) == [
        "already-exists",
        "conflict",
        "precondition-failed",
        "precondition-failed",
    ]
    assert len(blobs(live_server)) == 3 + 2  # three single uploads, two batch files


def test_a_refusal_inside_the_transaction_rolls_back_only_that_file(
    client: httpx.Client, live_server: LiveServer
) -> None:
    tenant_id = live_server.identity.tenant_id("acme")
    with live_server.app.state.db.write() as conn:  # type: ignore[attr-defined]
        policy.save_rules(
            conn, tenant_id, None, policy.parse_rules({"content_must_match_extension": True})
        )
    r = batch(
        client,
        [
            (spec("/docs/real.pdf", PDF), PDF),
            (spec("/docs/fake.pdf", EXE), EXE),  # a program dressed as a PDF
            (spec("/docs/notes.txt", b"notes"), b"notes"),
        ],
    )
    assert slugs(r) == ["ok", "policy-denied", "ok"]
    assert results(r)[1]["problem"]["rule"] == "content_must_match_extension"
    feed = client.get("/api/v1/changes").json()["changes"]
    assert [c["entry"]["path"] for c in feed] == ["/docs", "/docs/real.pdf", "/docs/notes.txt"]
    assert entry(client, "/docs/fake.pdf").status_code == 404
    audit = [(a.action, a.resource) for a in rows(live_server, schema.audit_events)]
    assert ("policy.denied", "/docs/fake.pdf") in audit
    assert ("file.created", "/docs/fake.pdf") not in audit
    uploaded = [
        e["payload"]["entry"]["path"] for e in outbox(live_server) if e["type"] == "file.uploaded"
    ]
    assert uploaded == ["/docs/real.pdf", "/docs/notes.txt"]
    assert len(blobs(live_server)) == 2
    assert leftovers(live_server) == []


def test_policy_checked_before_anything_is_stored(
    client: httpx.Client, live_server: LiveServer
) -> None:
    tenant_id = live_server.identity.tenant_id("acme")
    with live_server.app.state.db.write() as conn:  # type: ignore[attr-defined]
        policy.save_rules(
            conn,
            tenant_id,
            None,
            policy.parse_rules({"blocked_extensions": [".exe"], "max_file_size": 10}),
        )
    r = batch(
        client,
        [
            (spec("/p/tool.exe", b"MZ"), b"MZ"),
            (spec("/p/big.txt", b"x" * 11), b"x" * 11),
            (spec("/p/small.txt", b"x" * 10), b"x" * 10),
        ],
    )
    assert slugs(r) == ["policy-denied", "policy-denied", "ok"]
    assert [x["problem"]["rule"] for x in results(r)[:2]] == ["blocked_extensions", "max_file_size"]
    assert len(blobs(live_server)) == 1


# -- the batch as a whole ---------------------------------------------------------------


def assert_refused(r: httpx.Response, status: int, slug: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["type"].endswith("/" + slug), r.json()


def test_malformed_batches_publish_nothing(client: httpx.Client, live_server: LiveServer) -> None:
    data = b"data"
    manifest = json.dumps({"files": [spec("/m/a.txt", data)]}).encode()
    end = b"--XyZ--\r\n"
    cases = [
        (
            client.post(BATCH, content=b"x", headers={"Content-Type": "application/json"}),
            415,
            "unsupported-media-type",
        ),
        (
            client.post(BATCH, content=b"x", headers={"Content-Type": "multipart/form-data"}),
            400,
            "bad-request",
        ),
        (
            raw_batch(client, part("manifest", b"{not json") + part("file", data) + end),
            400,
            "bad-request",
        ),
        (raw_batch(client, part("manifest", b'{"files": []}') + end), 400, "validation"),
        (raw_batch(client, part("manifest", b'["a"]') + end), 400, "validation"),
        (
            raw_batch(client, part("file", data) + part("manifest", manifest) + end),
            400,
            "validation",
        ),
        (raw_batch(client, part("manifest", manifest) + end), 400, "validation"),
        (
            raw_batch(client, part("manifest", manifest) + part("file", data) * 2 + end),
            400,
            "validation",
        ),
        (
            raw_batch(client, part("manifest", manifest) + part("other", data) + end),
            400,
            "validation",
        ),
        (raw_batch(client, part("manifest", manifest) + part("file", data)), 400, "bad-request"),
        (raw_batch(client, b"no multipart framing at all"), 400, "bad-request"),
    ]
    for r, status, slug in cases:
        assert_refused(r, status, slug)
    assert client.get("/api/v1/changes").json()["changes"] == []
    assert leftovers(live_server) == []
    assert blobs(live_server) == []


def test_limits_refuse_the_whole_batch(
    client: httpx.Client, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = b"1"
    too_many = [
        (spec(f"/lim/{i}.txt", one), one)
        for i in range(dropline.server.uploads.batch.MAX_FILES + 1)
    ]
    assert_refused(batch(client, too_many), 413, "too-large")
    # Refused from its Content-Length alone, before any of the body is read.
    key = client.headers["Authorization"].split(" ", 1)[1]
    head = (
        f"POST {BATCH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\n"
        f"Content-Length: {dropline.server.uploads.batch.MAX_BODY + 1}\r\n\r\n"
    )
    port = int(live_server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + b"--XyZ\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    monkeypatch.setattr(dropline.server.uploads.batch, "MAX_BYTES", 10_000)
    big = [(spec(f"/lim/b{i}.bin", d), d) for i, d in enumerate(os.urandom(4000) for _ in range(3))]
    assert_refused(batch(client, big), 413, "too-large")
    assert slugs(batch(client, big[:2])) == ["ok", "ok"]
    monkeypatch.setattr(dropline.server.uploads.batch, "MAX_MANIFEST_BYTES", 100)
    assert_refused(batch(client, big[2:]), 413, "too-large")
    assert [c["entry"]["path"] for c in client.get("/api/v1/changes").json()["changes"]] == [
        "/lim",
        "/lim/b0.bin",
        "/lim/b1.bin",
    ]
    assert leftovers(live_server) == []


def test_a_batch_cut_off_midway_keeps_nothing(
    client: httpx.Client, live_server: LiveServer
) -> None:
    data = os.urandom(300_000)
    manifest = json.dumps({"files": [spec("/cut/a.bin", data), spec("/cut/b.bin", data)]})
    body = part("manifest", manifest.encode()) + part("file", data) + part("file", data)

    def cut_short() -> Any:
        yield body[: len(body) // 2]
        raise httpx.WriteError("cut")  # the client goes away halfway

    with pytest.raises(httpx.HTTPError):
        client.post(
            BATCH,
            content=cut_short(),
            headers={
                "Content-Type": "multipart/form-data; boundary=XyZ",
                "Content-Length": str(len(body) + 9),
            },
        )
    assert entry(client, "/cut/a.bin").status_code == 404
    # The server notices the cut when it next reads; give it a moment to clean up.
    for _ in range(100):
        if not leftovers(live_server):
            break
        time.sleep(0.05)
    assert leftovers(live_server) == []
    assert blobs(live_server) == []


def test_leftovers_of_a_stopped_server_are_swept_once_old(live_server: LiveServer) -> None:
    staged = live_server.settings.upload_dir
    old, fresh = staged / "0123-0.batch", staged / "4567-0.batch"
    old.write_bytes(b"left by a crash")
    fresh.write_bytes(b"a batch in flight")
    two_hours_ago = time.time() - 7200
    os.utime(old, (two_hours_ago, two_hours_ago))
    uploads = live_server.app.state.uploads  # type: ignore[attr-defined]
    # (The server's own sweep, starting up, may get there first: only the end matters.)
    asyncio.run(uploads.cleanup_expired())
    assert leftovers(live_server) == [fresh]


# -- who may -----------------------------------------------------------------------------


def test_tenants_never_see_each_others_batches(
    client: httpx.Client, mallory: httpx.Client, live_server: LiveServer
) -> None:
    mine = tus.upload(client, "/shared/name.txt", b"alice's")
    rev = mine.headers["dropline-rev"]
    theirs = b"mallory's"
    r = batch(
        mallory,
        [
            (spec("/shared/name.txt", theirs, if_rev=rev), theirs),  # Alice's rev means nothing
            (spec("/shared/other.txt", theirs), theirs),
        ],
    )
    assert slugs(r) == ["precondition-failed", "ok"]
    assert content(client, "/shared/name.txt") == b"alice's"
    assert entry(client, "/shared/other.txt").status_code == 404
    assert [
        e["name"]
        for e in mallory.get("/api/v1/files", params={"path": "/shared"}).json()["entries"]
    ] == ["other.txt"]
    with live_server.app.state.db.read() as conn:  # type: ignore[attr-defined]
        alice_tenant = live_server.identity.tenant_id("acme")
        theirs_uploaded = events_after(conn, tenant_id=alice_tenant)
    assert all(
        e["payload"].get("entry", {}).get("path") != "/shared/other.txt" for e in theirs_uploaded
    )


def test_a_batch_needs_a_credential_with_files_write(live_server: LiveServer) -> None:
    data = b"d"
    items = [(spec("/w.txt", data), data)]
    with httpx.Client(base_url=live_server.url) as anonymous:
        assert_refused(batch(anonymous, items), 401, "unauthenticated")
    key = live_server.new_key(email="reader@example.com", scopes=("files:read",))
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}
    ) as reader:
        assert_refused(batch(reader, items), 403, "insufficient-scope")
    with api_client(live_server) as writer:
        assert slugs(batch(writer, items)) == ["ok"]


# -- the documented example ----------------------------------------------------------------


def test_the_documented_curl_example_works_as_written(
    live_server: LiveServer, api_key: str, client: httpx.Client, tmp_path: Path
) -> None:
    env = example_env(live_server.url, api_key)
    run = run_shell(doc_block("batch-example"), tmp_path, env, timeout=60)
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    assert [x["status"] for x in answer["results"]] == [201, 201, 422]
    assert content(client, "/batch-example/a.txt") == (tmp_path / "a.txt").read_bytes()
    assert content(client, "/batch-example/b.txt") == (tmp_path / "b.txt").read_bytes()
