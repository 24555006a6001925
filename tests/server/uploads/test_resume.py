"""Resuming uploads: a connection cut mid-PATCH, and a server killed mid-upload and restarted."""

from __future__ import annotations

import hashlib
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from dropline.server.identity.accounts import Identity
from dropline.server.settings import Settings
from dropline.server.storage.db import Database
from dropline.server.storage.migrations import migrate
from tests.server import tus
from tests.support.live import LiveServer, ServerProcess

MIB = 1024 * 1024


def cut_patch(
    url: str,
    key: str,
    location: str,
    offset: int,
    body: bytes,
    declared: int,
    staged: Path,
    wait_for: int,
    extra: str = "",
) -> None:
    """Send a PATCH announcing ``declared`` bytes, send only ``body``, then close the socket.

    Before closing, wait until the server has staged ``wait_for`` bytes, so the cut
    lands in the middle of a request the server is really processing.
    """
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port))
    try:
        head = (
            f"PATCH {location} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Bearer {key}\r\nTus-Resumable: 1.0.0\r\n"
            f"Upload-Offset: {offset}\r\nContent-Type: {tus.OCTETS}\r\n"
            f"Content-Length: {declared}\r\n{extra}\r\n"
        )
        sock.sendall(head.encode() + body)
        deadline = time.monotonic() + 30
        while not staged.exists() or staged.stat().st_size < wait_for:
            assert time.monotonic() < deadline, "the server never staged the first piece"
            time.sleep(0.01)
    finally:
        sock.close()


def key_of(client: httpx.Client) -> str:
    return client.headers["Authorization"].split(" ", 1)[1]


def test_cut_mid_patch_keeps_received_bytes_and_resumes(
    live_server: LiveServer, client: httpx.Client
) -> None:
    data = os.urandom(12 * MIB)
    r = tus.create(client, len(data), path="/cut/big.bin", sha256=hashlib.sha256(data).hexdigest())
    location = r.headers["location"]
    staged = live_server.settings.upload_dir / (location.rsplit("/", 1)[1] + ".part")
    cut_patch(
        live_server.url,
        key_of(client),
        location,
        0,
        data[: 6 * MIB],
        len(data),
        staged,
        wait_for=4 * MIB,
    )
    # HEAD waits for the cut request to settle, so this is the durable offset.
    offset = int(client.head(location).headers["upload-offset"])
    assert 4 * MIB <= offset <= 6 * MIB
    assert staged.read_bytes() == data[:offset]
    p = tus.patch(client, location, offset, data[offset:])
    assert p.status_code == 204, p.text
    meta = client.get("/api/v1/metadata", params={"path": "/cut/big.bin"}).json()
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()
    assert client.get(f"/api/v1/files/{meta['id']}/content").content == data


def test_cut_mid_patch_with_checksum_discards_the_partial_chunk(
    live_server: LiveServer, client: httpx.Client
) -> None:
    data = os.urandom(10 * MIB)
    location = tus.create(client, len(data), path="/cut/sum.bin").headers["location"]
    assert tus.patch(client, location, 0, data[:MIB]).status_code == 204
    staged = live_server.settings.upload_dir / (location.rsplit("/", 1)[1] + ".part")
    chunk = data[MIB:]
    cut_patch(
        live_server.url,
        key_of(client),
        location,
        MIB,
        chunk[: 6 * MIB],
        len(chunk),
        staged,
        wait_for=5 * MIB,
        extra=f"Upload-Checksum: {tus.checksum(chunk)}\r\n",
    )
    assert client.head(location).headers["upload-offset"] == str(MIB)
    assert staged.read_bytes() == data[:MIB]
    p = tus.patch(client, location, MIB, chunk, **{"Upload-Checksum": tus.checksum(chunk)})
    assert p.status_code == 204
    meta = client.get("/api/v1/metadata", params={"path": "/cut/sum.bin"}).json()
    assert meta["sha256"] == hashlib.sha256(data).hexdigest()


def test_upload_resumes_after_the_server_is_killed(tmp_path: Path) -> None:
    data_dir = tmp_path / "server"
    db = Database(Settings(data_dir=data_dir).database_url)
    data_dir.mkdir()
    migrate(db)
    identity = Identity(db)
    identity.create_tenant("acme")
    identity.create_user("acme", "alice@example.com", "pw")
    _key_id, key = identity.create_api_key("acme", "alice@example.com")
    db.dispose()
    data = os.urandom(3 * MIB + 5)
    headers = {"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"}
    server = ServerProcess(data_dir)
    try:
        url = server.start()
        with httpx.Client(base_url=url, headers=headers) as c:
            location = tus.create(
                c, len(data), path="/restart.bin", sha256=hashlib.sha256(data).hexdigest()
            ).headers["location"]
            assert tus.patch(c, location, 0, data[:MIB]).status_code == 204
        server.kill()
        # Bytes written but never recorded as received (a crash between the two) must
        # not leak into the file: the server cuts the staged file back to its offset.
        staged = data_dir / "uploads" / (location.rsplit("/", 1)[1] + ".part")
        with staged.open("ab") as f:
            f.write(b"garbage that was never acknowledged")
        server = ServerProcess(data_dir)
        url = server.start()
        with httpx.Client(base_url=url, headers=headers) as c:
            assert c.head(location).headers["upload-offset"] == str(MIB)
            p = tus.patch(c, location, MIB, data[MIB:])
            assert p.status_code == 204, p.text
            meta = c.get("/api/v1/metadata", params={"path": "/restart.bin"}).json()
            assert meta["sha256"] == hashlib.sha256(data).hexdigest()
            assert c.get(f"/api/v1/files/{meta['id']}/content").content == data
    finally:
        server.stop()
