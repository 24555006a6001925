"""A damaged blob (a bit flipped on disk) is never served as if it were the file: damage in
the chunk a download starts in is a 500 ``content-damaged`` before any byte; damage
further on cuts the stream short; either way a ``blob.damaged`` audit row names the
blob and the file. Sealed blobs of encrypted tenants are caught the same way, and by
their authentication when the sums are gone."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dropline.server.storage import schema
from dropline.server.storage.backup import take_backup
from dropline.server.storage.blobs import LocalBlobStore, new_blob_id
from dropline.server.storage.integrity import BlobDamaged
from dropline.server.storage.restore import restore_backup
from tests.server.conftest import api_client
from tests.server.tus import upload
from tests.support.live import LiveServer

MiB = 1024 * 1024
DAMAGED = "https://dropline.dev/problems/content-damaged"
DATA = os.urandom(3 * MiB + 12345)


def put_file(client: httpx.Client, path: str, data: bytes = DATA) -> dict[str, Any]:
    answer = upload(client, path, data)
    assert answer.status_code == 201, answer.text
    entries: list[dict[str, Any]] = client.get("/api/v1/files", params={"path": "/"}).json()[
        "entries"
    ]
    [entry] = [e for e in entries if e["path"] == path]
    return entry


def blob_of(live: LiveServer, entry_id: str) -> tuple[str, Path]:
    with live.app.state.db.read() as conn:  # type: ignore[attr-defined]
        blob_id = conn.execute(
            select(schema.entries.c.blob_id).where(schema.entries.c.id == entry_id)
        ).scalar_one()
    return blob_id, live.settings.blob_dir / blob_id[:2] / blob_id


def flip_bit(path: Path, at: int) -> None:
    with path.open("r+b") as fh:
        fh.seek(at)
        byte = fh.read(1)
        fh.seek(at)
        fh.write(bytes([byte[0] ^ 0x04]))


def damage_rows(live: LiveServer) -> list[dict[str, Any]]:
    a = schema.audit_events
    with live.app.state.db.read() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(select(a).where(a.c.action == "blob.damaged")).all()
    return [{**row._mapping, "detail": json.loads(row.detail)} for row in rows]


@pytest.fixture
def alice(live_server: LiveServer) -> Iterator[httpx.Client]:
    with api_client(live_server) as client:
        yield client


def test_damage_where_the_download_starts_is_an_error_and_an_audit_row(
    live_server: LiveServer, alice: httpx.Client
) -> None:
    entry = put_file(alice, "/report.bin")
    blob_id, path = blob_of(live_server, entry["id"])
    flip_bit(path, 100)

    answer = alice.get(f"/api/v1/files/{entry['id']}/content")
    assert answer.status_code == 500
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["type"] == DAMAGED
    assert DATA[:1000] not in answer.content  # not one byte of the file went out

    [row] = damage_rows(live_server)
    assert row["resource"] == blob_id
    assert row["outcome"] == "failure"
    assert row["tenant_id"] == live_server.identity.tenant_id("acme")
    assert row["detail"]["blob_id"] == blob_id
    assert row["detail"]["file_ids"] == [entry["id"]]
    assert "chunk 0" in row["detail"]["reason"]

    # A client retrying at once gets the same answer but adds no second row.
    assert alice.get(f"/api/v1/files/{entry['id']}/content").status_code == 500
    assert len(damage_rows(live_server)) == 1


def test_damage_in_the_first_piece_read_is_an_error_before_any_byte(
    live_server: LiveServer, alice: httpx.Client
) -> None:
    # Damage past the first chunk but within the first piece the server reads: before,
    # the answer started (200) and was cut before its first byte, so a client resumed
    # from the same offset forever, taking it for the network (damaged-blob in the fault
    # campaign: the agent went offline and online again and never raised an issue).
    entry = put_file(alice, "/report.bin")
    _blob_id, path = blob_of(live_server, entry["id"])
    flip_bit(path, 2 * MiB + 77)  # in the third chunk of the first 4 MiB piece

    answer = alice.get(f"/api/v1/files/{entry['id']}/content")
    assert answer.status_code == 500
    assert answer.json()["type"] == DAMAGED
    assert DATA[:1000] not in answer.content
    assert len(damage_rows(live_server)) == 1


def test_damage_further_on_cuts_the_stream_and_ranges_before_it_still_work(
    live_server: LiveServer, alice: httpx.Client
) -> None:
    data = os.urandom(6 * MiB + 12345)
    entry = put_file(alice, "/big.bin", data)
    _blob_id, path = blob_of(live_server, entry["id"])
    flip_bit(path, 5 * MiB + 77)  # in the sixth chunk: the second piece the server reads
    url = f"/api/v1/files/{entry['id']}/content"

    received = bytearray()
    with pytest.raises(httpx.RemoteProtocolError), alice.stream("GET", url) as answer:
        assert answer.status_code == 200
        for piece in answer.iter_bytes():
            received += piece
    # What arrived is the file's true beginning, and the damaged chunk never did.
    assert len(received) <= 5 * MiB
    assert bytes(received) == data[: len(received)]
    assert len(damage_rows(live_server)) == 1

    before = alice.get(url, headers={"Range": f"bytes=0-{5 * MiB - 1}"})
    assert before.status_code == 206
    assert before.content == data[: 5 * MiB]
    inside = alice.get(url, headers={"Range": f"bytes={5 * MiB + 10}-{5 * MiB + 20}"})
    assert inside.status_code == 500
    assert inside.json()["type"] == DAMAGED
    # A client resuming where the cut stream stopped is told, not cut again.
    resumed = alice.get(url, headers={"Range": f"bytes={len(received)}-"})
    assert resumed.status_code == 500
    assert resumed.json()["type"] == DAMAGED


def test_a_damaged_sealed_blob_is_caught_by_its_sums_and_by_its_authentication(
    live_server: LiveServer, alice: httpx.Client
) -> None:
    live_server.app.state.blobs.keys.enable(live_server.identity.tenant_id("acme"))  # type: ignore[attr-defined]
    first = put_file(alice, "/sealed-1.bin")
    second = put_file(alice, "/sealed-2.bin")
    for entry in (first, second):
        _blob_id, path = blob_of(live_server, entry["id"])
        flip_bit(path, 4096)
    # The second one's sums are gone (a blob stored before sums existed): the AES-GCM
    # tag of its chunk still refuses it.
    second_blob, _path = blob_of(live_server, second["id"])
    (live_server.settings.data_dir / "checksums" / second_blob[:2] / second_blob).unlink()

    for entry in (first, second):
        answer = alice.get(f"/api/v1/files/{entry['id']}/content")
        assert answer.status_code == 500
        assert answer.json()["type"] == DAMAGED
    reasons = {
        row["detail"]["file_ids"][0]: row["detail"]["reason"] for row in damage_rows(live_server)
    }
    # The header's chunk is checked by its sums when the blob is opened; the rest is
    # authenticated by AES-GCM alone.
    assert "SHA-256" in reasons[first["id"]]
    assert "authentication" in reasons[second["id"]]


def test_a_sealed_blob_is_read_without_a_second_check_by_its_sums(
    live_server: LiveServer, alice: httpx.Client
) -> None:
    live_server.app.state.blobs.keys.enable(live_server.identity.tenant_id("acme"))  # type: ignore[attr-defined]
    sealed = put_file(alice, "/sealed.bin")
    sealed_blob, _path = blob_of(live_server, sealed["id"])
    # Damaged sums past the header's chunk, intact blob: the blob is served (its chunks
    # authenticate), which shows those sums are not read at all.
    flip_bit(live_server.settings.data_dir / "checksums" / sealed_blob[:2] / sealed_blob, 8 + 32)
    answer = alice.get(f"/api/v1/files/{sealed['id']}/content")
    assert answer.status_code == 200
    assert answer.content == DATA
    ranged = alice.get(
        f"/api/v1/files/{sealed['id']}/content", headers={"Range": f"bytes={2 * MiB + 7}-"}
    )
    assert ranged.status_code == 206
    assert ranged.content == DATA[2 * MiB + 7 :]
    assert damage_rows(live_server) == []

    # A damaged header (its tenant reference) is still damage: the sums of the header's
    # chunk are checked when the blob is opened.
    second = put_file(alice, "/sealed-2.bin")
    _blob_id, path = blob_of(live_server, second["id"])
    flip_bit(path, 10)
    answer = alice.get(f"/api/v1/files/{second['id']}/content")
    assert answer.status_code == 500
    assert answer.json()["type"] == DAMAGED


def test_a_damaged_blob_is_reported_to_each_tenant_using_it_and_no_other(
    live_server: LiveServer, alice: httpx.Client
) -> None:
    with api_client(live_server, tenant="globex", email="mallory@example.com") as mallory:
        put_file(mallory, "/theirs.bin", os.urandom(1000))
    entry = put_file(alice, "/mine.bin")
    _blob_id, path = blob_of(live_server, entry["id"])
    flip_bit(path, 5)
    assert alice.get(f"/api/v1/files/{entry['id']}/content").status_code == 500
    [row] = damage_rows(live_server)
    assert row["tenant_id"] == live_server.identity.tenant_id("acme")


def test_the_store_checks_size_and_every_chunk_and_serves_blobs_without_sums(
    tmp_path: Path,
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    staged = tmp_path / "staged"
    staged.write_bytes(DATA)
    blob_id = new_blob_id()
    store.put(blob_id, staged)
    path = tmp_path / "blobs" / blob_id[:2] / blob_id
    with store.open(blob_id, 5) as fh:
        assert fh.read() == DATA[5:]

    with path.open("ab") as fh:
        fh.write(b"x")  # one byte more: the size no longer fits the sums
    with pytest.raises(BlobDamaged) as extended:
        store.open(blob_id)
    assert "size" in extended.value.reason

    path.write_bytes(DATA)
    flip_bit(path, 3 * MiB + 1)  # the last, short chunk
    with store.open(blob_id) as fh:
        assert fh.read(3 * MiB) == DATA[: 3 * MiB]
        with pytest.raises(BlobDamaged) as flipped:
            fh.read()
    assert "chunk 3" in flipped.value.reason

    (tmp_path / "checksums" / blob_id[:2] / blob_id).unlink()
    with store.open(blob_id) as fh:  # no sums to check against: served as stored
        assert len(fh.read()) == len(DATA)

    store.delete(blob_id)
    assert list(store.stored()) == []


def test_a_backup_keeps_the_sums_so_restored_blobs_are_still_checked(
    live_server: LiveServer, alice: httpx.Client, tmp_path: Path
) -> None:
    entry = put_file(alice, "/kept.bin")
    blob_id, _path = blob_of(live_server, entry["id"])
    take_backup(live_server.settings.data_dir, tmp_path / "backup", lambda _line: None)
    restored = tmp_path / "restored"
    restore_backup(tmp_path / "backup", restored, force=False, say=lambda _line: None)

    store = LocalBlobStore(restored / "blobs")
    with store.open(blob_id) as fh:
        assert fh.read() == DATA
    flip_bit(restored / "blobs" / blob_id[:2] / blob_id, 10)
    with pytest.raises(BlobDamaged):
        store.open(blob_id)
