"""``dropline-server sweep`` as an operator runs it, beside a running server: ``--dry-run``
lists what would go and the bytes and removes nothing, a real run removes exactly that
and never a live file, and mistakes are one line and a non-zero exit."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dropline.server.settings import Settings
from dropline.server.storage.blobs import LocalBlobStore, new_blob_id
from tests.server.conftest import api_client
from tests.server.tus import upload
from tests.support.live import LiveServer, running_server
from tests.support.server_cli import run

OLD = time.time() - 2 * 3600  # older than the default grace period of an hour


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with running_server(Settings(data_dir=tmp_path / "data", port=0)) as server:
        yield server


@pytest.fixture
def alice(live: LiveServer) -> Iterator[httpx.Client]:
    with api_client(live) as client:
        yield client


def stored_blob(live: LiveServer, data: bytes, mtime: float) -> Path:
    """A blob file no row names (a publish that never committed), aged to ``mtime``."""
    staged = live.settings.upload_dir / "staged"
    staged.write_bytes(data)
    blob_id = new_blob_id()
    LocalBlobStore(live.settings.blob_dir).put(blob_id, staged)
    path = live.settings.blob_dir / blob_id[:2] / blob_id
    os.utime(path, (mtime, mtime))
    return path


def age_everything(root: Path) -> None:
    """As if every file under ``root`` had been written two hours ago."""
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, (OLD, OLD))


def test_a_dry_run_lists_and_keeps_and_a_real_run_removes_only_the_unreferenced(
    live: LiveServer, alice: httpx.Client
) -> None:
    assert upload(alice, "/live.txt", b"a live file").status_code == 201
    age_everything(live.settings.blob_dir)  # old, but referenced: never swept
    orphan = stored_blob(live, b"x" * 4000, OLD)
    fresh = stored_blob(live, b"y" * 4000, time.time())  # in flight: within the grace
    data = live.settings.data_dir

    dry = run(data, "sweep", "--dry-run")
    assert dry.stdout.splitlines() == [f"blob\t{orphan.name}\t{4000 + 8 + 32}"]
    assert dry.stderr.strip() == "would remove 1 blob: 3.9 KiB (4040 bytes)"
    assert orphan.exists() and fresh.exists()

    as_json = json.loads(run(data, "sweep", "--dry-run", "--json").stdout)
    assert as_json["dry_run"] is True
    assert as_json["grace_seconds"] == 3600
    assert as_json["counts"] == {"blob": 1}
    assert as_json["items"] == [{"kind": "blob", "name": orphan.name, "bytes": 4040}]

    done = run(data, "sweep")
    assert done.stdout.splitlines() == [f"blob\t{orphan.name}\t4040"]
    assert done.stderr.strip() == "removed 1 blob: 3.9 KiB (4040 bytes)"
    assert not orphan.exists()
    assert fresh.exists()

    # With no grace at all, the in-flight blob goes too, and still no live file's.
    assert json.loads(run(data, "sweep", "--grace", "0", "--json").stdout)["counts"] == {"blob": 1}
    [entry] = alice.get("/api/v1/files", params={"path": "/"}).json()["entries"]
    assert alice.get(f"/api/v1/files/{entry['id']}/content").content == b"a live file"
    assert run(data, "sweep").stderr.strip() == "nothing to sweep (nothing removed)"


def test_mistakes_are_one_line_and_a_non_zero_exit(tmp_path: Path) -> None:
    missing = run(tmp_path / "nowhere", "sweep", "--dry-run", ok=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines() == [
        f"dropline-server: no Dropline data directory at {tmp_path / 'nowhere'} (set --data-dir)"
    ]
    assert not (tmp_path / "nowhere").exists()  # nothing made on the way

    wrong = run(tmp_path, "sweep", "--grace", "soon", ok=False)
    assert wrong.returncode == 2
    assert "'soon' is not a duration" in wrong.stderr
    assert "Traceback" not in wrong.stderr + missing.stderr


def test_help_reads_like_a_manual_page(tmp_path: Path) -> None:
    helped = run(tmp_path, "sweep", "--help")
    for heading in ("--dry-run", "--grace DURATION", "exit status:", "examples:", "environment:"):
        assert heading in helped.stdout
    assert "grace period" in helped.stdout
