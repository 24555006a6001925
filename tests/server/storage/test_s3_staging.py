"""tus uploads in progress kept in the object store (uploads.shared_staging): with two
nodes sharing one database and one bucket, each PATCH may go to either node and the
upload completes with the right SHA-256; parts are sealed for tenants with encryption at
rest, go when the upload is published or terminated, and a PATCH racing another node's
is refused."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dropline.server.settings import Settings
from dropline.server.storage import schema
from dropline.server.storage.blob_url import parse_blob_url
from dropline.server.storage.encryption import MAGIC
from tests.server import tus
from tests.support.live import LiveServer, running_server
from tests.support.s3 import s3_env, shared_moto

__all__ = ["s3_env"]  # the fixture, used by name

MIB = 1024 * 1024
MARKER = b"QUARTERLY-FIGURES-DO-NOT-LEAK"


@dataclass
class Nodes:
    one: LiveServer
    two: LiveServer
    env: dict[str, str]
    key: str

    def client(self, node: LiveServer) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}", "Tus-Resumable": "1.0.0"}
        return httpx.Client(base_url=node.url, headers=headers, timeout=60)

    def objects(self, under: str) -> dict[str, bytes]:
        client = shared_moto().client()
        bucket = parse_blob_url(self.env["DROPLINE_BLOB_URL"]).bucket
        listed = client.list_objects_v2(Bucket=bucket, Prefix=under).get("Contents", ())
        return {
            item["Key"]: client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
            for item in listed
        }

    def part_rows(self) -> list[tuple[str, int, int]]:
        with self.one.app.state.db.read() as conn:  # type: ignore[attr-defined]
            rows = conn.execute(
                select(
                    schema.upload_parts.c.upload_id,
                    schema.upload_parts.c.offset,
                    schema.upload_parts.c.length,
                ).order_by(schema.upload_parts.c.offset)
            ).all()
        return [(r.upload_id, int(r.offset), int(r.length)) for r in rows]


def enable_encryption(data_dir: Path, tenant: str) -> None:
    command = ["encryption", "enable", "--tenant", tenant, "--data-dir", str(data_dir)]
    done = subprocess.run(
        [sys.executable, "-m", "dropline.server.cli", *command],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture
def nodes(
    s3_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Nodes]:
    """Two nodes with data directories (and upload folders) of their own, one database,
    one bucket, one master key; tenant acme seals its data."""
    monkeypatch.setenv("DROPLINE_DATABASE_URL", f"sqlite:///{tmp_path / 'shared.db'}")
    monkeypatch.setenv("DROPLINE_MASTER_KEY", base64.b64encode(os.urandom(32)).decode())
    with (
        running_server(Settings(data_dir=tmp_path / "node1", port=0)) as one,
        running_server(Settings(data_dir=tmp_path / "node2", port=0)) as two,
    ):
        one.identity.create_tenant("acme")
        enable_encryption(tmp_path / "node1", "acme")
        yield Nodes(one, two, s3_env, one.new_key())


def test_every_patch_on_another_node_completes_with_the_right_sha256(nodes: Nodes) -> None:
    content = (MARKER + os.urandom(4000)) * 800  # about 3.2 MiB
    digest = hashlib.sha256(content).hexdigest()
    step = 700_001
    with nodes.client(nodes.one) as first, nodes.client(nodes.two) as second:
        created = tus.create(first, len(content), path="/roaming.bin", sha256=digest)
        assert created.status_code == 201, created.text
        location = created.headers["Location"]
        clients = [second, first]
        offsets = list(range(0, len(content), step))
        for index, offset in enumerate(offsets):
            client = clients[index % 2]
            # The other node knows where the upload is.
            other = clients[(index + 1) % 2]
            assert other.head(location).headers["Upload-Offset"] == str(offset)
            piece = content[offset : offset + step]
            done = tus.patch(
                client, location, offset, piece, **{"Upload-Checksum": tus.checksum(piece)}
            )
            assert done.status_code == 204, done.text
            if index == 1:
                # Mid-way: the parts are in the bucket, sealed; the database lists them.
                parts = nodes.objects("data/staging/blobs/")
                assert len(parts) == 2
                for stored in parts.values():
                    assert stored.startswith(MAGIC) and MARKER not in stored
                upload_id = location.rsplit("/", 1)[1]
                assert nodes.part_rows() == [(upload_id, 0, step), (upload_id, step, step)]
        entry = second.get("/api/v1/metadata", params={"path": "/roaming.bin"}).json()
        assert entry["sha256"] == digest and entry["size"] == len(content)
        whole = first.get(f"/api/v1/files/{entry['id']}/content")
        assert hashlib.sha256(whole.content).hexdigest() == digest
    # Published: the parts are gone; the blob is sealed in the bucket.
    assert nodes.objects("data/staging/") == {}
    assert nodes.part_rows() == []
    [blob] = nodes.objects("data/blobs/").values()
    assert blob.startswith(MAGIC) and MARKER not in blob


def parts_read(node: LiveServer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The ids of the parts ``node`` reads back from the bucket, in order, from now on."""
    store = node.app.state.uploads.shared.parts  # type: ignore[attr-defined]
    read: list[str] = []
    original = store.open

    def open_and_note(blob_id: str, *args: Any, **kwargs: Any) -> Any:
        read.append(blob_id)
        return original(blob_id, *args, **kwargs)

    monkeypatch.setattr(store, "open", open_and_note)
    return read


def test_a_node_fetches_only_the_parts_other_nodes_added_since_its_own(
    nodes: Nodes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round robin: each PATCH lands on the node that did not take the one before, which
    reads back that one part and not the whole upload again (quadratic in the parts)."""
    content = os.urandom(6 * 200_000)
    read_by = {"one": parts_read(nodes.one, monkeypatch), "two": parts_read(nodes.two, monkeypatch)}
    with nodes.client(nodes.one) as first, nodes.client(nodes.two) as second:
        location = tus.create(first, len(content), path="/round.bin").headers["Location"]
        turns = [("one", first), ("two", second)] * 3
        for index, (_name, client) in enumerate(turns):
            offset = index * 200_000
            piece = content[offset : offset + 200_000]
            assert tus.patch(client, location, offset, piece).status_code == 204
        entry = first.get("/api/v1/metadata", params={"path": "/round.bin"}).json()
    assert entry["sha256"] == hashlib.sha256(content).hexdigest()
    # PATCHes 2 to 6 each read the one part the other node stored just before.
    assert len(read_by["two"]) == 3 and len(read_by["one"]) == 2
    assert len(set(read_by["one"] + read_by["two"])) == 5


def test_a_patch_at_an_offset_another_node_already_took_is_refused(nodes: Nodes) -> None:
    content = os.urandom(300_000)
    with nodes.client(nodes.one) as first, nodes.client(nodes.two) as second:
        location = tus.create(first, len(content), path="/race.bin").headers["Location"]
        assert tus.patch(first, location, 0, content[:100_000]).status_code == 204
        stale = tus.patch(second, location, 0, content[:100_000])
        assert stale.status_code == 409
        assert stale.headers["Upload-Offset"] == "100000"
        # Node 1 still holds the upload in memory; node 2 moves it on; node 1 catches up.
        assert tus.patch(second, location, 100_000, content[100_000:200_000]).status_code == 204
        assert tus.patch(first, location, 200_000, content[200_000:]).status_code == 204
        entry = first.get("/api/v1/metadata", params={"path": "/race.bin"}).json()
        assert entry["sha256"] == hashlib.sha256(content).hexdigest()


def test_two_nodes_racing_for_one_offset_record_it_once(nodes: Nodes) -> None:
    """Both nodes take a PATCH at offset 0 (each had the upload in step, at 0): the part
    recorded first wins; the other is refused and its part dropped."""
    staging_one = nodes.one.app.state.uploads.shared  # type: ignore[attr-defined]
    with nodes.client(nodes.one) as first:
        location = tus.create(first, 10, path="/both.bin").headers["Location"]
    upload_id = location.rsplit("/", 1)[1]
    staged = nodes.one.settings.upload_dir / "race.part"
    staged.write_bytes(b"0123456789")
    winner = staging_one.save(staged, 0, 5)
    loser = staging_one.save(staged, 0, 4)
    expires = time.time() + 3600
    assert staging_one.record(upload_id, 0, 5, winner, expires) is True
    assert staging_one.record(upload_id, 0, 4, loser, expires) is False
    assert nodes.part_rows() == [(upload_id, 0, 5)]
    assert len(nodes.objects("data/staging/blobs/")) == 1  # the loser's part was dropped


def test_terminating_on_the_other_node_drops_the_parts(nodes: Nodes) -> None:
    with nodes.client(nodes.one) as first, nodes.client(nodes.two) as second:
        location = tus.create(first, 2 * MIB, path="/dropped.bin").headers["Location"]
        assert tus.patch(first, location, 0, os.urandom(MIB)).status_code == 204
        assert len(nodes.objects("data/staging/blobs/")) == 1
        assert second.delete(location).status_code == 204
        assert first.head(location).status_code == 404
    assert nodes.objects("data/staging/") == {}
    assert nodes.part_rows() == []


def test_the_sweeper_drops_parts_no_upload_names(nodes: Nodes) -> None:
    with nodes.client(nodes.one) as first:
        location = tus.create(first, 2 * MIB, path="/left.bin").headers["Location"]
        assert tus.patch(first, location, 0, os.urandom(1000)).status_code == 204
    staging = nodes.one.app.state.uploads.shared  # type: ignore[attr-defined]
    staged = nodes.one.settings.upload_dir / "stray.part"
    staged.write_bytes(b"never recorded")
    stray = staging.save(staged, 0, 14)  # a node stopped before recording it
    sweeper = nodes.one.app.state.sweeper  # type: ignore[attr-defined]
    later = time.time() + nodes.one.settings.sweep_grace_seconds + 1
    report = sweeper.run(later)
    assert {i.name for i in report.items if i.kind == "upload-part"} == {stray}
    assert len(nodes.part_rows()) == 1  # the live upload's part stays
    assert len(nodes.objects("data/staging/blobs/")) == 1
