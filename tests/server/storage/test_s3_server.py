"""The whole server with its blobs in S3 (moto_server, through the same boto3 client as in
production): tus uploads and Range downloads, encryption at rest (the bucket only ever
holds ciphertext), the sweeper, and a store that is down or misnamed."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dropline.server.settings import Settings
from dropline.server.storage.blob_url import parse_blob_url
from dropline.server.storage.blobs import new_blob_id
from dropline.server.storage.encryption import MAGIC
from dropline.server.storage.s3_blobs import S3BlobStore
from tests.server import tus
from tests.support.live import LiveServer, ServerProcess, running_server
from tests.support.s3 import s3_env, shared_moto
from tests.support.server_cli import run_here

__all__ = ["s3_env"]  # the fixture, used by name

MIB = 1024 * 1024
MARKER = b"CONFIDENTIAL-PAYROLL-2026"


def bucket_objects(env: dict[str, str]) -> dict[str, bytes]:
    client = shared_moto().client()
    bucket = parse_blob_url(env["DROPLINE_BLOB_URL"]).bucket
    listed = client.list_objects_v2(Bucket=bucket).get("Contents", ())
    return {
        item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        for item in listed
    }


def local_blob_files(data_dir: Path) -> list[Path]:
    return [p for p in (data_dir / "blobs").rglob("*") if p.is_file()]


@pytest.fixture
def s3_live(s3_env: dict[str, str], tmp_path: Path) -> Iterator[LiveServer]:
    """An in-process server whose blobs are in the test's bucket (the environment is set)."""
    with running_server(Settings(data_dir=tmp_path / "server-data", port=0)) as live:
        yield live


def enable_encryption(data_dir: Path, tenant: str) -> None:
    """``dropline-server encryption enable``, as an operator runs it."""
    command = ["encryption", "enable", "--tenant", tenant, "--data-dir", str(data_dir)]
    done = subprocess.run(
        [sys.executable, "-m", "dropline.server.cli", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


def client_of(live: LiveServer) -> httpx.Client:
    return httpx.Client(
        base_url=live.url,
        headers={"Authorization": f"Bearer {live.new_key()}", "Tus-Resumable": "1.0.0"},
        timeout=60,
    )


def test_a_server_process_keeps_tus_uploads_in_the_bucket_and_serves_ranges(
    s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "node"
    monkeypatch.setenv("DROPLINE_PASSWORD", "long enough pw")
    run_here(data_dir, "tenants", "create", "acme")
    run_here(data_dir, "users", "create", "--tenant", "acme", "--email", "a@example.com")
    key = run_here(
        data_dir, "api-keys", "create", "--tenant", "acme", "--user", "a@example.com"
    ).strip()
    server = ServerProcess(data_dir, extra_env=s3_env)
    content = os.urandom(3 * MIB + 4321)
    digest = hashlib.sha256(content).hexdigest()
    try:
        url = server.start()
        with httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"},
            timeout=60,
        ) as client:
            created = tus.create(client, len(content), path="/reports/big.bin", sha256=digest)
            assert created.status_code == 201, created.text
            location = created.headers["Location"]
            step = MIB + 17
            for offset in range(0, len(content), step):
                piece = content[offset : offset + step]
                done = tus.patch(
                    client, location, offset, piece, **{"Upload-Checksum": tus.checksum(piece)}
                )
                assert done.status_code == 204, done.text
            entry = client.get("/api/v1/metadata", params={"path": "/reports/big.bin"}).json()
            assert entry["sha256"] == digest and entry["size"] == len(content)

            whole = client.get(f"/api/v1/files/{entry['id']}/content")
            assert whole.status_code == 200
            assert hashlib.sha256(whole.content).hexdigest() == digest
            start, end = MIB - 3, 2 * MIB + 100
            part = client.get(
                f"/api/v1/files/{entry['id']}/content", headers={"Range": f"bytes={start}-{end}"}
            )
            assert part.status_code == 206
            assert part.content == content[start : end + 1]
    finally:
        server.stop()

    stored = bucket_objects(s3_env)
    [blob_key] = [k for k in stored if k.startswith("data/blobs/")]
    assert stored[blob_key] == content
    assert f"data/checksums/{blob_key.split('/', 2)[2]}" in stored
    assert local_blob_files(data_dir) == []  # nothing on the node's disk


def test_a_sealed_tenant_leaves_only_ciphertext_in_the_bucket(
    s3_env: dict[str, str], s3_live: LiveServer
) -> None:
    s3_live.identity.create_tenant("acme")
    enable_encryption(s3_live.settings.data_dir, "acme")
    content = (MARKER + bytes(range(256)) * 40) * 260  # over two 1 MiB chunks
    with client_of(s3_live) as client:
        r = tus.upload(client, "/hr/payroll.csv", content)
        assert r.status_code == 201, r.text
        entry_id = r.headers["dropline-entry-id"]
        [stored] = [v for k, v in bucket_objects(s3_env).items() if k.startswith("data/blobs/")]
        assert stored.startswith(MAGIC)
        assert MARKER not in stored and content[1000:1100] not in stored
        whole = client.get(f"/api/v1/files/{entry_id}/content")
        assert whole.status_code == 200 and whole.content == content
        start, end = MIB - 5, MIB + 5
        part = client.get(
            f"/api/v1/files/{entry_id}/content", headers={"Range": f"bytes={start}-{end}"}
        )
        assert part.status_code == 206 and part.content == content[start : end + 1]
        meta = client.get("/api/v1/metadata", params={"path": "/hr/payroll.csv"}).json()
        assert meta["size"] == len(content)


def test_the_sweeper_removes_an_orphan_object_once_old(
    s3_env: dict[str, str], s3_live: LiveServer, tmp_path: Path
) -> None:
    with client_of(s3_live) as client:
        kept = tus.upload(client, "/kept.txt", b"kept")
        assert kept.status_code == 201
    store = S3BlobStore(parse_blob_url(s3_env["DROPLINE_BLOB_URL"]).bucket, "data")
    staged = tmp_path / "orphan.staged"
    staged.write_bytes(b"o" * 5000)
    orphan = new_blob_id()
    store.put(orphan, staged)
    sweeper = s3_live.app.state.sweeper  # type: ignore[attr-defined]
    now = time.time()
    assert [i for i in sweeper.run(now).items if i.kind == "blob"] == []  # in flight

    report = sweeper.run(now + s3_live.settings.sweep_grace_seconds + 1)
    assert {(i.kind, i.name, i.size) for i in report.items if i.kind == "blob"} == {
        ("blob", orphan, 5000 + 8 + 32)
    }
    left = [k for k in bucket_objects(s3_env) if k.startswith("data/blobs/")]
    assert len(left) == 1 and orphan not in left[0]  # the live file's blob stays
    with client_of(s3_live) as client:
        entry = client.get("/api/v1/metadata", params={"path": "/kept.txt"}).json()
        assert client.get(f"/api/v1/files/{entry['id']}/content").content == b"kept"


def test_a_missing_bucket_is_a_503_problem_and_nothing_is_published(
    s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DROPLINE_BLOB_URL", "s3://no-such-bucket-anywhere/data")
    settings = Settings(data_dir=tmp_path / "server-data", port=0)
    with running_server(settings) as live, client_of(live) as client:
        r = tus.upload(client, "/lost.txt", b"hello")
        assert r.status_code == 503, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["type"].endswith("/unavailable")
        assert s3_env["AWS_SECRET_ACCESS_KEY"] not in r.text
        listing = client.get("/api/v1/files", params={"path": "/"}).json()
        assert all(e["name"] != "lost.txt" for e in listing["entries"])


def test_serve_refuses_a_bad_blob_url_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dropline.server.cli",
            "serve",
            "--data-dir",
            str(tmp_path / "data"),
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "DROPLINE_BLOB_URL": "s3://Bad_Bucket/x"},
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "DROPLINE_BLOB_URL='s3://Bad_Bucket/x' is not usable" in done.stderr
    assert "not a valid bucket name" in done.stderr


def test_two_nodes_sharing_a_database_and_a_bucket_serve_each_others_files(
    s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nodes with data directories of their own: what one publishes (sealed, under the
    master key every node is given), the other serves, Range included."""
    monkeypatch.setenv("DROPLINE_DATABASE_URL", f"sqlite:///{tmp_path / 'shared.db'}")
    monkeypatch.setenv("DROPLINE_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    content = os.urandom(2 * MIB + 99)
    with (
        running_server(Settings(data_dir=tmp_path / "node1", port=0)) as one,
        running_server(Settings(data_dir=tmp_path / "node2", port=0)) as two,
    ):
        one.identity.create_tenant("acme")
        enable_encryption(tmp_path / "node1", "acme")
        key = one.new_key()
        headers = {"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"}
        with (
            httpx.Client(base_url=one.url, headers=headers, timeout=60) as first,
            httpx.Client(base_url=two.url, headers=headers, timeout=60) as second,
        ):
            r = tus.upload(first, "/shared.bin", content)
            assert r.status_code == 201, r.text
            entry_id = r.headers["dropline-entry-id"]
            whole = second.get(f"/api/v1/files/{entry_id}/content")
            assert whole.status_code == 200 and whole.content == content
            part = second.get(
                f"/api/v1/files/{entry_id}/content", headers={"Range": "bytes=1048570-1048590"}
            )
            assert part.status_code == 206 and part.content == content[1048570:1048591]
    [stored] = [v for k, v in bucket_objects(s3_env).items() if k.startswith("data/blobs/")]
    assert stored.startswith(MAGIC) and content[:4096] not in stored
    assert local_blob_files(tmp_path / "node1") == local_blob_files(tmp_path / "node2") == []


def test_an_upload_refused_while_the_store_is_away_resumes_once_it_is_back(
    s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A PATCH whose bytes the object store cannot keep (the bucket is not there yet) is
    a 503 that leaves the upload where it was; the client's retry of the same chunk, once
    the store is back, goes on, and the last one publishes."""
    bucket = f"late-{os.urandom(6).hex()}"
    monkeypatch.setenv("DROPLINE_BLOB_URL", f"s3://{bucket}/data")
    content = os.urandom(300_000)
    first, last = content[:200_000], content[200_000:]
    settings = Settings(data_dir=tmp_path / "server-data", port=0)
    with running_server(settings) as live, client_of(live) as client:
        created = tus.create(client, len(content), path="/late.bin", sha256=tus.sha256(content))
        location = created.headers["Location"]
        refused = tus.patch(client, location, 0, first)
        assert refused.status_code == 503, refused.text
        assert refused.json()["type"].endswith("/unavailable")
        assert refused.headers["Retry-After"] == "30"
        assert client.head(location).headers["Upload-Offset"] == "0"

        shared_moto().client().create_bucket(Bucket=bucket)  # the store is back
        assert tus.patch(client, location, 0, first).status_code == 204
        done = tus.patch(client, location, len(first), last)
        assert done.status_code == 204, done.text
        entry = client.get("/api/v1/metadata", params={"path": "/late.bin"}).json()
        assert client.get(f"/api/v1/files/{entry['id']}/content").content == content
