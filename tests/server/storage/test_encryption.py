"""Encryption at rest: a tenant's blobs on disk hold no plaintext; downloads and Range
reads still work; tampering and a missing master key are caught."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from dropline.server.storage.encryption import MAGIC, EncryptionError, TenantKeys
from dropline.server.storage.integrity import BlobDamaged
from tests.server import tus
from tests.support.live import LiveServer

# Over two 1 MiB chunks, with a marker that must never appear on disk.
MARKER = b"CONFIDENTIAL-PAYROLL-2026"
CONTENT = (MARKER + bytes(range(256)) * 40) * 260


def blob_files(live: LiveServer) -> list[Path]:
    return [p for p in live.settings.blob_dir.rglob("*") if p.is_file()]


def enable_with_cli(live: LiveServer, tenant: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "dropline.server.cli",
            "encryption",
            "enable",
            "--tenant",
            tenant,
            "--data-dir",
            str(live.settings.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def sealed_client(live_server: LiveServer, client: httpx.Client) -> httpx.Client:
    done = enable_with_cli(live_server, "acme")
    assert done.returncode == 0, done.stderr
    return client


def test_blobs_on_disk_hold_no_plaintext(
    live_server: LiveServer, sealed_client: httpx.Client
) -> None:
    r = tus.upload(sealed_client, "/hr/payroll.csv", CONTENT)
    assert r.status_code == 201
    [blob] = blob_files(live_server)
    stored = blob.read_bytes()
    assert stored.startswith(MAGIC)
    assert MARKER not in stored
    assert CONTENT[1000:1100] not in stored
    entry_id = r.headers["dropline-entry-id"]
    full = sealed_client.get(f"/api/v1/files/{entry_id}/content")
    assert full.status_code == 200 and full.content == CONTENT
    assert sealed_client.get("/api/v1/metadata", params={"path": "/hr/payroll.csv"}).json()[
        "size"
    ] == len(CONTENT)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (0, 9),
        (1024 * 1024 - 5, 1024 * 1024 + 5),
        (len(CONTENT) - 7, len(CONTENT) - 1),
        (12345, 2_000_000),
    ],
)
def test_range_reads_work_across_chunks(
    live_server: LiveServer, sealed_client: httpx.Client, start: int, end: int
) -> None:
    entry_id = tus.upload(sealed_client, "/big.bin", CONTENT).headers["dropline-entry-id"]
    r = sealed_client.get(
        f"/api/v1/files/{entry_id}/content", headers={"Range": f"bytes={start}-{end}"}
    )
    assert r.status_code == 206
    assert r.content == CONTENT[start : end + 1]


def test_an_empty_file_round_trips(sealed_client: httpx.Client) -> None:
    r = tus.upload(sealed_client, "/empty.txt", b"")
    assert (
        sealed_client.get(f"/api/v1/files/{r.headers['dropline-entry-id']}/content").content == b""
    )


def test_tenants_without_encryption_are_untouched(
    live_server: LiveServer, sealed_client: httpx.Client, mallory: httpx.Client
) -> None:
    tus.upload(mallory, "/plain.txt", MARKER)
    [blob] = blob_files(live_server)
    assert blob.read_bytes() == MARKER


def test_a_tampered_blob_fails_to_open(
    live_server: LiveServer, sealed_client: httpx.Client
) -> None:
    tus.upload(sealed_client, "/a.bin", CONTENT)
    [blob] = blob_files(live_server)
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    store = live_server.app.state.blobs  # type: ignore[attr-defined]
    with pytest.raises(BlobDamaged), store.open(blob.name, 1024 * 1024) as fh:
        fh.read()


def test_a_truncated_blob_fails_to_open(
    live_server: LiveServer, sealed_client: httpx.Client
) -> None:
    tus.upload(sealed_client, "/a.bin", CONTENT)
    [blob] = blob_files(live_server)
    blob.write_bytes(blob.read_bytes()[: -(1024 * 1024 + 16)])  # drop the last whole chunk
    store = live_server.app.state.blobs  # type: ignore[attr-defined]
    with pytest.raises(BlobDamaged), store.open(blob.name) as fh:
        fh.read()


def test_the_master_key_is_a_private_file_and_required(
    live_server: LiveServer, sealed_client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    master = live_server.settings.data_dir / "keys" / "master.key"
    assert master.stat().st_mode & 0o777 == 0o600
    tus.upload(sealed_client, "/a.bin", CONTENT)
    tenant_id = live_server.identity.tenant_id("acme")
    monkeypatch.delenv("DROPLINE_MASTER_KEY", raising=False)
    elsewhere = live_server.settings.data_dir / "copy"
    elsewhere.mkdir()
    keys = TenantKeys(live_server.app.state.db, elsewhere)  # type: ignore[attr-defined]
    with pytest.raises(EncryptionError, match="no master key"):
        keys.key(tenant_id)


def test_the_master_key_can_come_from_the_environment(
    live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import base64

    monkeypatch.setenv("DROPLINE_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    keys = TenantKeys(live_server.app.state.db, live_server.settings.data_dir)  # type: ignore[attr-defined]
    live_server.identity.create_tenant("envco")
    assert keys.enable(live_server.identity.tenant_id("envco"))
    assert not (live_server.settings.data_dir / "keys" / "master.key").exists()
    assert len(keys.key(live_server.identity.tenant_id("envco")) or b"") == 32
