"""A full disk under the server: the upload, blob and checksum directories on a small
tmpfs (mounted with a size limit; the tests run as root, as CI does), filled up.

A PATCH that does not fit answers 507 ``insufficient-storage``; the offset stays before
the chunk, nothing is listed, and the same upload resumes and publishes once space is
freed. The same holds when the publish itself (sealing an encrypted blob) runs out."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from dropline.server.settings import Settings
from tests.server.conftest import api_client
from tests.server.tus import create, patch, sha256, upload
from tests.server.uploads.test_uploads_batch import batch, spec
from tests.support.live import LiveServer, running_server

MiB = 1024 * 1024
INSUFFICIENT = "https://dropline.dev/problems/insufficient-storage"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 24 MiB tmpfs, unmounted afterwards."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        unmount(mount)


def unmount(mount: Path) -> None:
    # A download's file may be closed a moment after its client has every byte (the
    # stream's generator ends with the next step of the server's loop): try a while,
    # then detach lazily so the mount goes when that last file closes.
    deadline = time.monotonic() + 5
    while subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            subprocess.run(["umount", "-l", str(mount)], check=True)
            return
        time.sleep(0.1)


@pytest.fixture
def full_server(tmp_path: Path, small_disk: Path) -> Iterator[LiveServer]:
    """A server whose file storage (uploads, blobs, checksums) is on the small disk; the
    database stays on the ordinary one."""
    data = tmp_path / "server-data"
    data.mkdir()
    for name in ("uploads", "blobs", "checksums"):
        (small_disk / name).mkdir()
        (data / name).symlink_to(small_disk / name)
    with running_server(Settings(data_dir=data, port=0)) as live:
        yield live


@pytest.fixture
def alice(full_server: LiveServer) -> Iterator[httpx.Client]:
    with api_client(full_server) as client:
        yield client


def fill(disk: Path, leave: int) -> Path:
    """Take all of ``disk``'s free space but ``leave`` bytes, with real pages."""
    stat = os.statvfs(disk)
    free = stat.f_bavail * stat.f_frsize
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, free - leave)
    finally:
        os.close(fd)
    return filler


def listed(client: httpx.Client) -> list[str]:
    answer = client.get("/api/v1/files", params={"path": "/"})
    answer.raise_for_status()
    return [e["path"] for e in answer.json()["entries"]]


def staged(live: LiveServer) -> dict[str, int]:
    return {p.name: p.stat().st_size for p in live.settings.upload_dir.iterdir()}


def head_offset(client: httpx.Client, location: str) -> int:
    answer = client.head(location)
    assert answer.status_code == 200
    return int(answer.headers["Upload-Offset"])


def test_a_chunk_that_does_not_fit_is_507_and_the_upload_resumes_after_space_is_freed(
    full_server: LiveServer, alice: httpx.Client, small_disk: Path
) -> None:
    data = os.urandom(6 * MiB)
    created = create(alice, len(data), path="/big.bin", sha256=sha256(data))
    assert created.status_code == 201
    location = created.headers["Location"]
    assert patch(alice, location, 0, data[: 2 * MiB]).status_code == 204

    filler = fill(small_disk, leave=1 * MiB)
    refused = patch(alice, location, 2 * MiB, data[2 * MiB :])
    assert refused.status_code == 507
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"] == INSUFFICIENT
    assert refused.headers["Tus-Resumable"] == "1.0.0"

    # The part of the chunk that was written is not counted and not kept.
    assert head_offset(alice, location) == 2 * MiB
    assert list(staged(full_server).values()) == [2 * MiB]
    assert listed(alice) == []

    filler.unlink()
    done = patch(alice, location, 2 * MiB, data[2 * MiB :])
    assert done.status_code == 204, done.text
    assert listed(alice) == ["/big.bin"]
    [entry] = alice.get("/api/v1/files", params={"path": "/"}).json()["entries"]
    assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    content = alice.get(f"/api/v1/files/{entry['id']}/content")
    assert content.status_code == 200
    assert hashlib.sha256(content.content).hexdigest() == entry["sha256"]


def test_a_publish_that_does_not_fit_is_507_and_the_last_chunk_is_sent_again(
    full_server: LiveServer, alice: httpx.Client, small_disk: Path
) -> None:
    # An encrypted tenant's publish writes a sealed copy of the whole file: on a disk
    # with room for the staged bytes but not for that copy, the publish is what fails.
    identity = full_server.identity
    full_server.app.state.blobs.keys.enable(identity.tenant_id("acme"))  # type: ignore[attr-defined]
    data = os.urandom(4 * MiB)
    created = create(alice, len(data), path="/sealed.bin", sha256=sha256(data))
    location = created.headers["Location"]
    assert patch(alice, location, 0, data[:MiB]).status_code == 204

    filler = fill(small_disk, leave=5 * MiB)
    refused = patch(alice, location, MiB, data[MiB:])
    assert refused.status_code == 507
    assert refused.json()["type"] == INSUFFICIENT

    # Back to where that PATCH started: its bytes freed, no half-sealed copy, no blob,
    # nothing listed.
    assert head_offset(alice, location) == MiB
    assert list(staged(full_server).values()) == [MiB]
    assert [p for p in full_server.settings.blob_dir.rglob("*") if p.is_file()] == []
    assert listed(alice) == []

    filler.unlink()
    done = patch(alice, location, MiB, data[MiB:])
    assert done.status_code == 204, done.text
    [entry] = alice.get("/api/v1/files", params={"path": "/"}).json()["entries"]
    content = alice.get(f"/api/v1/files/{entry['id']}/content")
    assert content.content == data


def test_a_small_upload_in_one_post_on_a_full_disk_is_507_and_leaves_nothing(
    full_server: LiveServer, alice: httpx.Client, small_disk: Path
) -> None:
    filler = fill(small_disk, leave=64 * 1024)
    data = os.urandom(512 * 1024)
    refused = upload(alice, "/small.bin", data)
    assert refused.status_code == 507
    assert refused.json()["type"] == INSUFFICIENT
    assert staged(full_server) == {}
    assert listed(alice) == []

    filler.unlink()
    assert upload(alice, "/small.bin", data).status_code == 201
    assert listed(alice) == ["/small.bin"]


def test_a_batch_on_a_full_disk_is_507_and_publishes_none_of_it(
    full_server: LiveServer, alice: httpx.Client, small_disk: Path
) -> None:
    files = [(f"/batch/{n}.txt", os.urandom(300 * 1024)) for n in range(4)]
    filler = fill(small_disk, leave=512 * 1024)
    refused = batch(alice, [(spec(path, data), data) for path, data in files])
    assert refused.status_code == 507
    assert refused.json()["type"] == INSUFFICIENT
    assert staged(full_server) == {}
    assert listed(alice) == []

    filler.unlink()
    again = batch(alice, [(spec(path, data), data) for path, data in files])
    assert again.status_code == 200, again.text
    assert listed(alice) == ["/batch"]
