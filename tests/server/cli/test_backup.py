"""``backup`` and ``restore`` with a real ``serve``: an online backup taken during uploads
restores every file, key and audit row into a fresh data directory; a live, non-empty or
damaged target is refused, and so is a second ``serve`` on a data directory in use."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.server import tus
from tests.support.live import ServerProcess
from tests.support.server_cli import run, run_here

ENCRYPTED_MAGIC = b"DLBLOB1\x00"


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("dropline-server: ")
    return line


def key_for(data: Path, tenant: str, email: str) -> str:
    run_here(data, "tenants", "create", tenant)
    run_here(data, "users", "create", "--tenant", tenant, "--email", email, "--no-password")
    return run_here(data, "api-keys", "create", "--tenant", tenant, "--user", email).strip()


def tenants(data: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(data / "dropline.db")) as db:
        return [name for (name,) in db.execute("SELECT name FROM tenants ORDER BY name")]


def client(url: str, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"},
        timeout=30,
    )


def read_back(c: httpx.Client, path: str) -> str | None:
    """The SHA-256 of the file at ``path`` as served, checked against its metadata."""
    meta = c.get("/api/v1/metadata", params={"path": path})
    if meta.status_code == 404:
        return None
    assert meta.status_code == 200, meta.text
    body = c.get(f"/api/v1/files/{meta.json()['id']}/content").content
    assert hashlib.sha256(body).hexdigest() == meta.json()["sha256"]
    return str(meta.json()["sha256"])


@dataclass
class Site:
    """A data directory with two tenants (globex encrypts at rest) and their API keys."""

    data: Path
    acme: str
    globex: str


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Site:
    """Built once; each test gets a copy."""
    data = tmp_path_factory.mktemp("template") / "data"
    acme = key_for(data, "acme", "alice@acme.example")
    globex = key_for(data, "globex", "gina@globex.example")
    run_here(data, "encryption", "enable", "--tenant", "globex")
    return Site(data, acme, globex)


@pytest.fixture
def site(template: Site, tmp_path: Path) -> Site:
    shutil.copytree(template.data, tmp_path / "live")
    return Site(tmp_path / "live", template.acme, template.globex)


@pytest.fixture
def served(site: Site) -> Iterator[ServerProcess]:
    server = ServerProcess(site.data)
    server.start()
    yield server
    server.stop()


class Uploader(threading.Thread):
    """Keeps uploading new files to acme's /during until told to stop."""

    def __init__(self, url: str, key: str) -> None:
        super().__init__(daemon=True)
        self.url, self.key = url, key
        self.sent: list[tuple[str, str]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with client(self.url, self.key) as c:
                while not self.stop.is_set():
                    path = f"/during/{len(self.sent)}.bin"
                    data = os.urandom(20_000 + len(self.sent) * 997)
                    r = tus.upload(c, path, data)
                    assert r.status_code == 201, r.text
                    self.sent.append((path, tus.sha256(data)))
        except BaseException as exc:  # reported by the test, not lost in the thread
            self.error = exc


def test_an_online_backup_restores_every_file_key_and_audit_row(
    site: Site, served: ServerProcess, tmp_path: Path
) -> None:
    files: dict[tuple[str, str], str] = {}
    with client(served.url, site.acme) as acme, client(served.url, site.globex) as globex:
        for tenant, c in (("acme", acme), ("globex", globex)):
            for name, size in (("empty.txt", 0), ("small.txt", 1_000), ("big.bin", 3_500_000)):
                data = os.urandom(size)
                assert tus.upload(c, f"/docs/{name}", data).status_code == 201
                files[(tenant, f"/docs/{name}")] = tus.sha256(data)
        # An upload half sent when the backup is taken: it resumes after the restore.
        half = os.urandom(2_000_000)
        created = tus.create(acme, len(half), path="/docs/half.bin", sha256=tus.sha256(half))
        location = created.headers["Location"]
        assert tus.patch(acme, location, 0, half[:1_000_000]).status_code == 204

    uploader = Uploader(served.url, site.acme)
    uploader.start()
    while len(uploader.sent) < 3 and uploader.error is None:
        uploader.stop.wait(0.05)
    sent_before = list(uploader.sent)
    backup = tmp_path / "backup"
    made = run(site.data, "backup", str(backup))
    uploader.stop.set()
    uploader.join(30)
    assert uploader.error is None, uploader.error
    assert len(uploader.sent) > len(sent_before), "no upload ran while the backup did"
    assert "backup of" in made.stderr and "1 uploads in progress" in made.stderr

    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["version"] and manifest["created_at"]
    assert manifest["counts"]["keys"] >= 3  # a signing key, the CSRF secret, the master key
    db = backup / "dropline.db"
    assert manifest["database_sha256"] == hashlib.sha256(db.read_bytes()).hexdigest()
    blobs = [p for p in (backup / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == manifest["counts"]["blobs"] >= 6 + len(sent_before)
    # globex's blobs went into the backup as they are stored: sealed.
    assert sum(p.read_bytes().startswith(ENCRYPTED_MAGIC) for p in blobs) == 3
    assert (backup / "keys" / "master.key").stat().st_mode & 0o777 == 0o600

    # Restoring over the data directory the server is running on is refused.
    refused = one_line_error(run(site.data, "restore", str(backup), "--force", ok=False))
    assert served.proc is not None and f"(process {served.proc.pid})" in refused
    served.stop()

    fresh = tmp_path / "restored"
    restored = run(fresh, "restore", str(backup))
    assert "restored the backup of" in restored.stderr
    again = ServerProcess(fresh)
    again.start()
    try:
        with client(again.url, site.acme) as acme, client(again.url, site.globex) as globex:
            by_tenant = {"acme": acme, "globex": globex}
            for (tenant, path), sha in files.items():
                assert read_back(by_tenant[tenant], path) == sha, (tenant, path)
            for path, sha in sent_before:
                assert read_back(acme, path) == sha, path
            # Files that arrived during the backup are there whole, or not at all.
            assert all(read_back(acme, path) in (None, sha) for path, sha in uploader.sent)
            # The half-sent upload goes on from where the backup saw it.
            assert int(acme.head(location).headers["Upload-Offset"]) == 1_000_000
            assert tus.patch(acme, location, 1_000_000, half[1_000_000:]).status_code == 204
            assert read_back(acme, "/docs/half.bin") == tus.sha256(half)
            assert globex.get("/api/v1/me").json()["tenant"]["name"] == "globex"
    finally:
        again.stop()
    assert "audit chain intact" in run(fresh, "audit", "verify").stderr


def test_a_second_serve_on_a_served_data_directory_is_refused(
    site: Site, served: ServerProcess
) -> None:
    command = ["serve", "--port", "0", "--data-dir", str(site.data)]
    second = subprocess.run(
        [sys.executable, "-m", "dropline.server.cli", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert served.proc is not None
    assert one_line_error(second) == (
        f"dropline-server: the data directory {site.data} is in use by dropline-server serve "
        f"(process {served.proc.pid}); stop it first"
    )


@pytest.fixture
def backup(site: Site, tmp_path: Path) -> Path:
    """A backup of the site taken with no server running."""
    dest = tmp_path / "backup"
    run(site.data, "backup", str(dest))
    return dest


def test_restore_wants_force_for_a_non_empty_data_directory(backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "other"
    run_here(target, "tenants", "create", "initech")
    (target / "notes.txt").write_text("the operator's own file")
    line = one_line_error(run(target, "restore", str(backup), ok=False))
    assert f"{target} is not empty" in line and "--force" in line
    assert tenants(target) == ["initech"]

    run(target, "restore", str(backup), "--force")
    assert tenants(target) == ["acme", "globex"]
    # Only the server's own state is replaced.
    assert (target / "notes.txt").read_text() == "the operator's own file"
    assert not (target / ".restore").exists()


def test_a_damaged_backup_is_refused_and_changes_nothing(backup: Path, tmp_path: Path) -> None:
    target = tmp_path / "other"
    run_here(target, "tenants", "create", "initech")
    key = next((backup / "keys").iterdir())
    key.write_bytes(key.read_bytes()[:-1] + b"!")
    line = one_line_error(run(target, "restore", str(backup), "--force", ok=False))
    assert line == f"dropline-server: {key} does not match the manifest's SHA-256"
    assert tenants(target) == ["initech"]
    assert not (target / ".restore").exists()

    (backup / "dropline.db").write_bytes(b"not a database")
    line = one_line_error(run(target, "restore", str(backup), "--force", ok=False))
    assert "dropline.db is 14 bytes; the manifest says" in line


def test_a_backup_from_a_newer_dropline_is_not_restored(backup: Path, tmp_path: Path) -> None:
    manifest = json.loads((backup / "manifest.json").read_text())
    manifest["migrations"].append("999_from_the_future")
    (backup / "manifest.json").write_text(json.dumps(manifest))
    line = one_line_error(run(tmp_path / "new", "restore", str(backup), ok=False))
    assert line == (
        "dropline-server: this data directory was written by a newer Dropline "
        "(migration 999_from_the_future); install that version or newer"
    )


def test_backup_wants_a_new_or_empty_destination(site: Site, tmp_path: Path) -> None:
    dest = tmp_path / "taken"
    dest.mkdir()
    (dest / "old.tar").write_bytes(b"x")
    line = one_line_error(run(site.data, "backup", str(dest), ok=False))
    assert line == f"dropline-server: {dest} already exists and is not an empty directory"
    missing = one_line_error(run(tmp_path / "nothing", "backup", str(tmp_path / "b"), ok=False))
    assert missing == f"dropline-server: no Dropline database in {tmp_path / 'nothing'}"
