"""``dropline-server import``: a single node's data directory, made by a real server and
backed up, moves into a throwaway PostgreSQL database and moto's S3 server; a node on
them serves every file, key, token, version, trash item, webhook and audit row of
before, and the change feed goes on. A non-empty target, a damaged backup and a wrong
master key are refused and leave the target empty."""

from __future__ import annotations

import base64
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from dropline.server.identity.accounts import Identity
from dropline.server.storage.db import Database
from dropline.server.storage.migrations import migrate
from tests.server import tus
from tests.server.cli.test_backup import ENCRYPTED_MAGIC, client, one_line_error, read_back
from tests.support.browser import pkce_tokens
from tests.support.live import ServerProcess
from tests.support.postgres import PostgresCluster
from tests.support.s3 import shared_moto
from tests.support.server_cli import run_here

PASSWORD = "correct horse battery staple"
OPERATIONS = Path(__file__).resolve().parents[3] / "docs" / "operations.md"
ADMIN_SCOPES = ("files:read", "files:write", "webhooks", "audit:read")


@dataclass
class OldSite:
    """A backed-up single node: what it held, to be found again after the move."""

    backup: Path
    port: int
    keys: dict[str, str]
    files: dict[tuple[str, str], str]
    token: str
    last_seq: int
    audit_ids: set[str]
    webhook_id: str
    trashed: str
    versioned: str
    half_upload: str


def _key(data: Path, tenant: str, email: str) -> str:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DROPLINE_PASSWORD", PASSWORD)
        run_here(data, "tenants", "create", tenant)
        run_here(data, "users", "create", "--tenant", tenant, "--email", email, "--admin")
    args = ("api-keys", "create", "--tenant", tenant, "--user", email, "--scopes", *ADMIN_SCOPES)
    return run_here(data, *args).strip()


def _fill(url: str, keys: dict[str, str]) -> dict[str, Any]:
    """Files in folders for both tenants, a second version, a trashed file, a webhook and a
    half-sent upload; returns what the checks need."""
    files: dict[tuple[str, str], str] = {}
    found: dict[str, Any] = {}
    for tenant, key in keys.items():
        with client(url, key) as c:
            for path, size in (("/docs/empty.txt", 0), ("/docs/q3/report.pdf", 2_500_000)):
                data = os.urandom(size)
                assert tus.upload(c, path, data).status_code == 201
                files[(tenant, path)] = tus.sha256(data)
            # The same name again: a second version, the first kept as a revision.
            for n in (1, 2):
                data = f"{tenant} notes, version {n}\n".encode() * 1000
                assert tus.upload(c, "/notes.txt", data).status_code == 201
            files[(tenant, "/notes.txt")] = tus.sha256(data)
    with client(url, keys["acme"]) as acme:
        assert tus.upload(acme, "/old/gone.txt", b"to the trash").status_code == 201
        gone = acme.get("/api/v1/metadata", params={"path": "/old/gone.txt"}).json()["id"]
        assert acme.delete(f"/api/v1/files/{gone}").status_code in (200, 204)
        hook = acme.post(
            "/api/v1/webhooks",
            json={"url": "http://127.0.0.1:9/hook", "event_types": ["file.uploaded"]},
        )
        assert hook.status_code == 201, hook.text
        half = os.urandom(300_000)
        created = tus.create(acme, len(half), path="/docs/half.bin", sha256=tus.sha256(half))
        assert tus.patch(acme, created.headers["Location"], 0, half[:100_000]).status_code == 204
        changes = acme.get("/api/v1/changes", params={"limit": 1000}).json()["changes"]
        audit = acme.get("/api/v1/audit-events", params={"limit": 500}).json()["events"]
        versioned = acme.get("/api/v1/metadata", params={"path": "/notes.txt"}).json()["id"]
        found.update(
            files=files,
            last_seq=max(int(c["seq"]) for c in changes),
            audit_ids={e["id"] for e in audit},
            webhook_id=hook.json()["id"],
            trashed=gone,
            versioned=versioned,
            half_upload=created.headers["Location"],
        )
    return found


@pytest.fixture(scope="module")
def old_site(tmp_path_factory: pytest.TempPathFactory) -> OldSite:
    """A single node on SQLite, filled through its API, stopped and backed up."""
    base = tmp_path_factory.mktemp("single-node")
    data = base / "data"
    keys = {"acme": _key(data, "acme", "alice@acme.example")}
    keys["globex"] = _key(data, "globex", "gina@globex.example")
    run_here(data, "encryption", "enable", "--tenant", "globex")
    node = ServerProcess(data, extra_env={"DROPLINE_ALLOW_PRIVATE_TARGETS": "1"})
    node.start(timeout=60)
    try:
        found = _fill(node.url, keys)
        token = pkce_tokens(node.url, "alice@acme.example", password=PASSWORD)["access_token"]
    finally:
        node.stop()
    backup = base / "backup"
    run_here(data, "backup", str(backup))
    return OldSite(backup=backup, port=node.port, keys=keys, token=token, **found)


@dataclass
class Target:
    """An empty PostgreSQL database, an empty bucket, and the settings naming them."""

    url: str
    bucket: str
    env: dict[str, str] = field(default_factory=dict)

    def objects(self) -> list[str]:
        listed = shared_moto().client().list_objects_v2(Bucket=self.bucket)
        return [item["Key"] for item in listed.get("Contents", ())]

    def tenants(self) -> list[str]:
        with psycopg.connect(self.url.replace("postgresql+psycopg", "postgresql")) as conn:
            exists = conn.execute("SELECT to_regclass('tenants')").fetchone()
            if exists is None or exists[0] is None:
                return []
            return [name for (name,) in conn.execute("SELECT name FROM tenants ORDER BY name")]


@contextlib.contextmanager
def empty_target(cluster: PostgresCluster, home: Path, master_key: Path) -> Iterator[Target]:
    moto = shared_moto()
    bucket = moto.new_bucket()
    with cluster.fresh_database() as url:
        env = {
            **moto.env(bucket, home=home),
            "DROPLINE_DATABASE_URL": url,
            "DROPLINE_MASTER_KEY_FILE": str(master_key),
        }
        yield Target(url, bucket, env)


def key_file(path: Path, raw: bytes) -> Path:
    path.write_bytes(base64.b64encode(raw))
    path.chmod(0o600)
    return path


def cli(target: Target, data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``dropline-server ARGS`` as an operator runs it, with the target's settings."""
    env = {**os.environ, **target.env}
    env.pop("DROPLINE_MASTER_KEY", None)
    return subprocess.run(
        [sys.executable, "-m", "dropline.server.cli", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=180,
        env=env,
    )


def import_(backup: Path, target: Target, data: Path) -> subprocess.CompletedProcess[str]:
    return cli(target, data, "import", str(backup))


def documented_steps() -> list[str]:
    """The ``dropline-server`` commands of docs/operations.md's move, in their order."""
    text = OPERATIONS.read_text(encoding="utf-8")
    block = text.split("<!-- move-to-nodes:start -->", 1)[1].split("<!-- move-to-nodes:end -->")[0]
    return [
        line.split("dropline-server ", 1)[1].split()[0]
        for line in block.splitlines()
        if "dropline-server " in line
        and not line.lstrip().startswith("#")
        and "systemctl" not in line
    ]


def last_line_error(done: subprocess.CompletedProcess[str]) -> str:
    """A failure found part-way: progress lines, then the one error line."""
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    *progress, line = done.stderr.strip().splitlines()
    assert not any(p.startswith("dropline-server: ") for p in progress), done.stderr
    return line


@dataclass
class Moved:
    old: OldSite
    target: Target
    node: ServerProcess
    output: str


@pytest.fixture(scope="module")
def moved(
    old_site: OldSite, postgres_cluster: PostgresCluster, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Moved]:
    """The backup imported once, and a node on PostgreSQL + S3 serving it at the old
    node's address (the issuer of the tokens it signed)."""
    home = tmp_path_factory.mktemp("nodes")
    master = home / "master.key"
    shutil.copyfile(old_site.backup / "keys" / "master.key", master)
    master.chmod(0o600)
    with empty_target(postgres_cluster, home, master) as target:
        # The documented steps after the backup (old_site took it), in their order.
        steps = documented_steps()
        assert steps == ["backup", "migrate", "import"]
        for step in steps[1:]:
            args = [str(old_site.backup)] if step == "import" else []
            done = cli(target, home / "import-data", step, *args)
            assert done.returncode == 0, (step, done.stderr)
        node = ServerProcess(home / "node-1", port=old_site.port, extra_env=target.env)
        node.start(timeout=60)
        try:
            yield Moved(old_site, target, node, done.stderr)
        finally:
            node.stop()


def test_the_import_says_what_it_moved_and_left(moved: Moved) -> None:
    out = moved.output
    assert "imported the backup of" in out and "2 tenants" in out
    assert "1 uploads in progress were not moved; their clients start them again" in out
    assert "blobs: " in out and "Traceback" not in out
    assert moved.target.env["DROPLINE_DATABASE_URL"] not in out  # no URL, no password


def test_every_file_is_served_with_its_bytes_and_sha256(moved: Moved) -> None:
    old = moved.old
    for (tenant, path), sha in old.files.items():
        with client(moved.node.url, old.keys[tenant]) as c:
            assert read_back(c, path) == sha, (tenant, path)


def test_encrypted_blobs_stay_sealed_in_the_bucket(moved: Moved) -> None:
    s3 = shared_moto().client()
    backed_up = {
        path.name: path for path in (moved.old.backup / "blobs").rglob("*") if path.is_file()
    }
    in_bucket = {key.rsplit("/", 1)[1]: key for key in moved.target.objects() if "/blobs/" in key}
    assert set(backed_up) <= set(in_bucket)
    sealed = set()
    for blob_id, path in backed_up.items():
        stored = s3.get_object(Bucket=moved.target.bucket, Key=in_bucket[blob_id])["Body"].read()
        assert stored == path.read_bytes(), blob_id  # as stored: never unsealed on the way
        if stored.startswith(ENCRYPTED_MAGIC):
            sealed.add(blob_id)
    # globex's four blobs (two files, two versions of one) sealed; acme's five in plain.
    assert len(sealed) == 4 and len(backed_up) == 9


def test_old_keys_tokens_versions_trash_webhooks_and_audit_carry_over(moved: Moved) -> None:
    old = moved.old
    with client(moved.node.url, old.keys["acme"]) as acme:
        revisions = acme.get(f"/api/v1/files/{old.versioned}/revisions").json()["revisions"]
        assert len(revisions) == 2
        assert [item["id"] for item in acme.get("/api/v1/trash").json()["items"]] == [old.trashed]
        hooks = acme.get("/api/v1/webhooks").json()["webhooks"]
        assert [hook["id"] for hook in hooks] == [old.webhook_id]
        audit = acme.get("/api/v1/audit-events", params={"limit": 500}).json()["events"]
        assert old.audit_ids <= {event["id"] for event in audit}
    # An access token the old node signed verifies: its signing keys are in the table.
    me = httpx.get(f"{moved.node.url}/api/v1/me", headers={"Authorization": f"Bearer {old.token}"})
    assert me.status_code == 200, me.text
    assert me.json()["tenant"]["name"] == "acme"


def test_uploads_in_progress_are_left_behind(moved: Moved) -> None:
    with client(moved.node.url, moved.old.keys["acme"]) as acme:
        assert acme.head(moved.old.half_upload).status_code == 404


def test_tenants_stay_apart(moved: Moved) -> None:
    old = moved.old
    with (
        client(moved.node.url, old.keys["acme"]) as acme,
        client(moved.node.url, old.keys["globex"]) as globex,
    ):
        theirs = globex.get("/api/v1/metadata", params={"path": "/notes.txt"}).json()["id"]
        ours = acme.get("/api/v1/metadata", params={"path": "/notes.txt"}).json()["id"]
        assert theirs != ours
        assert acme.get(f"/api/v1/files/{theirs}").status_code == 404
        assert acme.get(f"/api/v1/files/{theirs}/content").status_code == 404
        assert globex.get("/api/v1/trash").json()["items"] == []
        assert globex.get("/api/v1/webhooks").json()["webhooks"] == []


def test_the_change_feed_goes_on_above_the_old_numbers(moved: Moved) -> None:
    old = moved.old
    with client(moved.node.url, old.keys["acme"]) as acme:
        cursor = str(old.last_seq)
        assert acme.get("/api/v1/changes", params={"cursor": cursor}).json()["changes"] == []
        data = b"written after the move"
        assert tus.upload(acme, "/after/move.txt", data).status_code == 201
        assert tus.upload(acme, "/notes.txt", data).status_code == 201  # a new revision row
        new = acme.get("/api/v1/changes", params={"cursor": cursor}).json()["changes"]
        assert [c["entry"]["path"] for c in new][-2:] == ["/after/move.txt", "/notes.txt"]
        assert all(int(c["seq"]) > old.last_seq for c in new)
        assert read_back(acme, "/after/move.txt") == tus.sha256(data)
        assert len(acme.get(f"/api/v1/files/{old.versioned}/revisions").json()["revisions"]) == 3


@pytest.fixture
def target(
    postgres_cluster: PostgresCluster, old_site: OldSite, tmp_path: Path
) -> Iterator[Target]:
    master = tmp_path / "master.key"
    shutil.copyfile(old_site.backup / "keys" / "master.key", master)
    master.chmod(0o600)
    with empty_target(postgres_cluster, tmp_path, master) as found:
        yield found


def test_a_target_holding_a_tenant_is_refused_and_kept(
    old_site: OldSite, target: Target, tmp_path: Path
) -> None:
    db = Database(target.url)
    try:
        migrate(db)
        Identity(db).create_tenant("initech")
    finally:
        db.dispose()
    line = one_line_error(import_(old_site.backup, target, tmp_path / "data"))
    assert line == (
        "dropline-server: the target database already holds tenants (initech): import goes "
        "into an empty database only; nothing was changed"
    )
    assert target.tenants() == ["initech"]
    assert target.objects() == []


def test_a_damaged_backup_is_refused_and_leaves_the_target_empty(
    old_site: OldSite, target: Target, tmp_path: Path
) -> None:
    damaged = tmp_path / "backup"
    shutil.copytree(old_site.backup, damaged)
    # The last blob with bytes to flip (an empty file's blob may sort after it): every
    # blob stored before it has to be taken out again.
    blobs = sorted((damaged / "blobs").rglob("*"))
    last = [path for path in blobs if path.is_file() and path.stat().st_size > 0][-1]
    raw = bytearray(last.read_bytes())
    raw[-1] ^= 0xFF
    last.write_bytes(bytes(raw))
    line = last_line_error(import_(damaged, target, tmp_path / "data"))
    assert line == f"dropline-server: {last} does not match the manifest's SHA-256"
    assert target.tenants() == []
    assert target.objects() == []


def test_a_wrong_or_missing_master_key_is_refused(
    old_site: OldSite, target: Target, tmp_path: Path
) -> None:
    key_file(Path(target.env["DROPLINE_MASTER_KEY_FILE"]), os.urandom(32))
    line = one_line_error(import_(old_site.backup, target, tmp_path / "data"))
    assert line == (
        "dropline-server: the master key given is not the one the backup's data was sealed "
        "with: point DROPLINE_MASTER_KEY_FILE at the backup's keys/master.key (or a copy of it)"
    )
    del target.env["DROPLINE_MASTER_KEY_FILE"]
    line = one_line_error(import_(old_site.backup, target, tmp_path / "data"))
    assert "the backup holds data encrypted at rest" in line
    assert str(old_site.backup / "keys" / "master.key") in line
    assert target.tenants() == []
    assert target.objects() == []


def test_import_wants_the_nodes_database_and_bucket(
    old_site: OldSite, target: Target, tmp_path: Path
) -> None:
    no_bucket = Target(target.url, target.bucket, {**target.env, "DROPLINE_BLOB_URL": ""})
    line = one_line_error(import_(old_site.backup, no_bucket, tmp_path / "data"))
    assert line.startswith("dropline-server: set DROPLINE_BLOB_URL to the blob store every node")
    no_database = Target(target.url, target.bucket, {**target.env, "DROPLINE_DATABASE_URL": ""})
    line = one_line_error(import_(old_site.backup, no_database, tmp_path / "data"))
    assert "import moves a backup into the nodes' PostgreSQL database" in line
    assert target.tenants() == []
    assert target.objects() == []
    assert not (tmp_path / "data" / "blobs").exists()
