"""The sweeper against the live server, with the clock moved: what nothing needs goes once
it is older than the grace period; live files, their versions, uploads in progress and
the versions a live share link serves never go; a dry run removes nothing."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dropline.server.files.sweeper import Sweeper, SweepReport
from dropline.server.storage.blobs import LocalBlobStore, new_blob_id
from tests.server.files.test_trash import blob_of
from tests.server.files.undo_support import (
    LINK_SCOPES,
    audit_rows,
    blob_exists,
    delete,
    module_server,
    new_user,
    put,
    trash,
)
from tests.server.ops_helpers import start_transfer, wait_transfer
from tests.server.tus import create, patch
from tests.support.live import LiveServer

HOUR = 3600.0
DAY = 86400.0


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    with module_server(tmp_path / "data") as server:
        yield server


@pytest.fixture
def alice(live: LiveServer) -> Iterator[httpx.Client]:
    with new_user(live, scopes=LINK_SCOPES) as client:
        yield client


def sweeper(live: LiveServer) -> Sweeper:
    found: Sweeper = live.app.state.sweeper  # type: ignore[attr-defined]
    return found


def names(report: SweepReport, kind: str) -> set[str]:
    return {item.name for item in report.items if item.kind == kind}


def orphan_blob(live: LiveServer, data: bytes) -> str:
    """A blob file no row names, as a publish leaves it just before its commit."""
    staged = live.settings.upload_dir / "orphan.staged"
    staged.write_bytes(data)
    blob_id = new_blob_id()
    LocalBlobStore(live.settings.blob_dir).put(blob_id, staged)
    return blob_id


def content(client: httpx.Client, entry: dict[str, Any]) -> bytes:
    answer = client.get(f"/api/v1/files/{entry['id']}/content")
    assert answer.status_code == 200, answer.text
    return answer.content


def test_an_unreferenced_blob_goes_only_after_the_grace_period(
    live: LiveServer, alice: httpx.Client
) -> None:
    kept = put(alice, "/kept.txt", b"version one")
    put(alice, "/kept.txt", b"version two")
    blob_id = orphan_blob(live, os.urandom(5000))
    leftover = live.settings.blob_dir / blob_id[:2] / f"{new_blob_id()}.tmp"
    leftover.write_bytes(b"half a copy")
    now = time.time()

    # In flight (just written): untouched, even by a real run.
    assert names(sweeper(live).run(now), "blob") == set()
    assert blob_exists(live, blob_id)

    later = now + HOUR + 1
    dry = sweeper(live).run(later, dry_run=True)
    assert names(dry, "blob") == {blob_id}
    assert dry.bytes == 5000 + 8 + 32 + len(b"half a copy")  # the blob, its sums, the leftover
    assert names(dry, "leftover") == {f"blobs/{blob_id[:2]}/{leftover.name}"}
    assert blob_exists(live, blob_id) and leftover.exists()

    done = sweeper(live).run(later)
    assert names(done, "blob") == {blob_id}
    assert not blob_exists(live, blob_id)
    assert not (live.settings.data_dir / "checksums" / blob_id[:2] / blob_id).exists()
    assert not leftover.exists()
    [row] = audit_rows(live, "sweep.run")
    assert row["detail"]["removed"] == {"blob": 1, "leftover": 1}

    # The file and both its versions are whole.
    assert content(alice, kept) == b"version two"
    revisions = alice.get(f"/api/v1/files/{kept['id']}/revisions").json()["revisions"]
    assert len(revisions) == 2
    first = alice.get(f"/api/v1/files/{kept['id']}/content", params={"rev": revisions[-1]["rev"]})
    assert first.content == b"version one"
    # A day on, the finished uploads' rows go (their expiry passed); no blob does.
    a_day_on = sweeper(live).run(later + DAY)
    assert {item.kind for item in a_day_on.items} == {"upload"}
    assert content(alice, kept) == b"version two"


def test_uploads_go_a_grace_period_after_they_expire_and_stray_staged_files_once_old(
    live: LiveServer, alice: httpx.Client
) -> None:
    created = create(alice, 10, path="/partial.bin")
    location = created.headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    assert patch(alice, location, 0, b"12345").status_code == 204
    stray = live.settings.upload_dir / f"{new_blob_id()}.part"
    stray.write_bytes(b"left by a server that stopped mid-request")
    now = time.time()
    expires_at = now + live.settings.upload_expiry_seconds

    assert sweeper(live).run(now + 60).items == ()  # the stray may be a POST in flight
    assert stray.exists()

    # The upload has expired, but only just: it stays; the stray is long abandoned.
    report = sweeper(live).run(expires_at + 60)
    assert names(report, "upload") == set()
    assert names(report, "staged-file") == {stray.name}
    assert not stray.exists()
    assert (live.settings.upload_dir / f"{upload_id}.part").exists()

    report = sweeper(live).run(expires_at + HOUR + 1)
    assert names(report, "upload") == {upload_id}
    assert [item.size for item in report.items] == [5]
    assert alice.head(location).status_code == 404
    assert not (live.settings.upload_dir / f"{upload_id}.part").exists()


def test_an_upload_in_progress_is_never_touched(live: LiveServer, alice: httpx.Client) -> None:
    created = create(alice, 10, path="/going.bin")
    location = created.headers["Location"]
    assert patch(alice, location, 0, b"12345").status_code == 204
    # Well within its expiry, however old its staged file looks.
    assert sweeper(live).run(time.time() + 2 * HOUR).items == ()
    assert patch(alice, location, 5, b"67890").status_code == 204
    [entry] = alice.get("/api/v1/files", params={"path": "/"}).json()["entries"]
    assert content(alice, entry) == b"1234567890"


def test_a_share_links_version_is_kept_until_the_link_ended_a_grace_period_ago(
    live: LiveServer, alice: httpx.Client
) -> None:
    entry = put(alice, "/shared.txt", b"shared version")
    link = start_transfer(alice, [entry["id"]], {"type": "link", "expires_in": DAY})
    done = wait_transfer(alice, link["id"])
    assert done["state"] == "completed"
    shared_blob = blob_of(live, entry["rev"])
    # The file is deleted and purged from the trash: only the link still needs its blob.
    delete(alice, entry)
    assert alice.delete(f"/api/v1/trash/{trash(alice)[0]['id']}").status_code == 204
    assert blob_exists(live, shared_blob)
    ends = done["result"]["expires_at"]

    assert sweeper(live).run(ends - 60).items == ()  # the link is live
    assert sweeper(live).run(ends + 60).items == ()  # ended, but within the grace period
    assert blob_exists(live, shared_blob)

    dry = sweeper(live).run(ends + HOUR + 1, dry_run=True)
    assert names(dry, "blob") == {shared_blob}
    assert len(names(dry, "kept-revision")) == 1
    assert blob_exists(live, shared_blob)
    assert wait_transfer(alice, link["id"])["state"] == "completed"

    report = sweeper(live).run(ends + HOUR + 1)
    assert names(report, "blob") == {shared_blob}
    assert len(names(report, "share-link")) == 1
    assert not blob_exists(live, shared_blob)
    assert alice.get(f"/api/v1/transfers/{link['id']}").json()["state"] == "expired"
