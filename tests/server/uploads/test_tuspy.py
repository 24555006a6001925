"""A plain tus client (tuspy) uploads with checksums on; the file lands with its sha256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
from tusclient import client as tus_client

from tests.support.live import LiveServer


def test_tuspy_upload_with_checksum_lands_with_the_right_sha256(
    live_server: LiveServer, client: httpx.Client, tmp_path: Path
) -> None:
    data = os.urandom(700_000)
    source = tmp_path / "report.pdf"
    source.write_bytes(data)
    key = client.headers["Authorization"].split(" ", 1)[1]
    tus = tus_client.TusClient(
        live_server.url + "/api/v1/uploads", headers={"Authorization": f"Bearer {key}"}
    )
    # An open stream rather than a path: tuspy never closes files it opened itself.
    with source.open("rb") as stream:
        uploader = tus.uploader(
            file_stream=stream,
            chunk_size=256 * 1024,
            metadata={"filename": "report.pdf", "parent_path": "/from-tuspy"},
            upload_checksum=True,  # tuspy sends SHA-1 per chunk
        )
        uploader.upload()
    meta = client.get("/api/v1/metadata", params={"path": "/from-tuspy/report.pdf"})
    assert meta.status_code == 200
    assert meta.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert meta.json()["size"] == len(data)
    downloaded = client.get(f"/api/v1/files/{meta.json()['id']}/content").content
    assert downloaded == data
