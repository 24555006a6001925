"""The master key on a shared PostgreSQL database: given to every node (a 0600 key file
or the setting), never made by a node; a node with the wrong key, or with none once
data is encrypted, refuses to start and says why; nodes read each other's sealed files."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from dropline.server.storage import schema
from dropline.server.storage.db import Database
from dropline.server.storage.encryption import MAGIC
from tests.server.ops_helpers import content, upload
from tests.support.nodes import migrated_with_key, running_nodes

ADMIN = [sys.executable, "-m", "dropline.server.cli"]
SCOPES = ("files:read", "files:write")


def new_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


def key_file(path: Path, key: str, mode: int = 0o600) -> Path:
    path.write_text(key + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


def admin(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ADMIN, *args], capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )


def serve_refused(data_dir: Path, env: dict[str, str]) -> str:
    """Start ``serve`` expecting a refusal; its message."""
    done = admin(["serve", "--data-dir", str(data_dir), "--port", "0"], env)
    assert done.returncode == 1, done.stderr
    assert "listening on" not in done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def enable_encryption(tmp_path: Path, env: dict[str, str]) -> None:
    done = admin(
        ["encryption", "enable", "--tenant", "acme", "--data-dir", str(tmp_path / "admin")], env
    )
    assert done.returncode == 0, done.stderr


def encrypted_tenants(database_url: str) -> int:
    db = Database(database_url)
    try:
        with db.read() as conn:
            return len(conn.execute(select(schema.tenant_keys.c.tenant_id)).all())
    finally:
        db.dispose()


def test_a_node_with_the_wrong_key_or_none_refuses_to_start(
    tmp_path: Path, postgres_url: str
) -> None:
    migrated_with_key(postgres_url, SCOPES)
    base = {"DROPLINE_DATABASE_URL": postgres_url, "DROPLINE_MASTER_KEY_FILE": ""}
    # With no key given, encryption cannot be turned on: no node-local key is made.
    refused = admin(
        ["encryption", "enable", "--tenant", "acme", "--data-dir", str(tmp_path / "admin")],
        {**base, "DROPLINE_MASTER_KEY": ""},
    )
    assert refused.returncode == 1
    assert "no master key" in refused.stderr
    assert encrypted_tenants(postgres_url) == 0
    assert not (tmp_path / "admin" / "keys" / "master.key").exists()

    right = {**base, "DROPLINE_MASTER_KEY": new_key()}
    enable_encryption(tmp_path, right)
    assert encrypted_tenants(postgres_url) == 1

    wrong = serve_refused(tmp_path / "node-w", {**base, "DROPLINE_MASTER_KEY": new_key()})
    assert "master key is not the one" in wrong
    missing = serve_refused(tmp_path / "node-n", {**base, "DROPLINE_MASTER_KEY": ""})
    assert "no master key" in missing
    assert not (tmp_path / "node-n" / "keys" / "master.key").exists()
    # The right key still starts (the refusals changed nothing).
    with running_nodes(tmp_path, postgres_url, 1, right) as (node,):
        assert httpx.get(f"{node.url}/readyz").status_code == 200


def test_a_key_file_readable_by_others_is_refused(tmp_path: Path, postgres_url: str) -> None:
    migrated_with_key(postgres_url, SCOPES)
    loose = key_file(tmp_path / "master.key", new_key(), mode=0o644)
    env = {
        "DROPLINE_DATABASE_URL": postgres_url,
        "DROPLINE_MASTER_KEY": "",
        "DROPLINE_MASTER_KEY_FILE": str(loose),
    }
    message = serve_refused(tmp_path / "node", env)
    assert "chmod 600" in message
    assert str(loose) in message


def test_nodes_given_one_key_file_read_each_others_sealed_files(
    tmp_path: Path, postgres_url: str
) -> None:
    api_key = migrated_with_key(postgres_url, SCOPES)
    secret = key_file(tmp_path / "master.key", new_key())
    env = {"DROPLINE_MASTER_KEY": "", "DROPLINE_MASTER_KEY_FILE": str(secret)}
    enable_encryption(tmp_path, {"DROPLINE_DATABASE_URL": postgres_url, **env})
    body = os.urandom(300_000) + b"only sealed on disk"
    headers = {"Authorization": f"Bearer {api_key}", "Tus-Resumable": "1.0.0"}
    with (
        running_nodes(tmp_path, postgres_url, 2, env) as (one, two),
        httpx.Client(base_url=one.url, headers=headers, timeout=60) as first,
        httpx.Client(base_url=two.url, headers=headers, timeout=60) as second,
    ):
        upload(first, "/sealed.bin", body)
        assert content(second, "/sealed.bin") == body
        upload(second, "/back.bin", body[::-1])
        assert content(first, "/back.bin") == body[::-1]
    stored = [p for p in (tmp_path / "blobs").rglob("*") if p.is_file()]
    assert stored
    for path in stored:
        raw = path.read_bytes()
        assert raw.startswith(MAGIC)
        assert b"only sealed on disk" not in raw


@pytest.mark.parametrize("value", ["not base64!", base64.b64encode(b"short").decode()])
def test_a_malformed_key_setting_is_refused(tmp_path: Path, postgres_url: str, value: str) -> None:
    migrated_with_key(postgres_url, SCOPES)
    env = {
        "DROPLINE_DATABASE_URL": postgres_url,
        "DROPLINE_MASTER_KEY_FILE": "",
        "DROPLINE_MASTER_KEY": value,
    }
    assert "base64 of 32 bytes" in serve_refused(tmp_path / "node", env)
