"""Concurrent uploads to one path: one winner per if_rev, and readers never see a torn file."""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.server import tus
from tests.support.live import LiveServer

WRITERS = 8


def race(live: LiveServer, path: str, if_rev: str) -> list[tuple[int, bytes]]:
    key = live.new_key()
    barrier = threading.Barrier(WRITERS)
    payloads = [os.urandom(200_000 + i) for i in range(WRITERS)]

    def one(data: bytes) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"}
        with httpx.Client(base_url=live.url, headers=headers, timeout=30) as c:
            location = tus.create(c, len(data), path=path, if_rev=if_rev).headers.get("location")
            barrier.wait()
            if location is None:
                return 412, data
            return tus.patch(c, location, 0, data).status_code, data

    with ThreadPoolExecutor(WRITERS) as pool:
        return list(pool.map(one, payloads))


def test_if_rev_none_race_has_exactly_one_winner(
    live_server: LiveServer, client: httpx.Client
) -> None:
    results = race(live_server, "/race/new.bin", "none")
    winners = [data for status, data in results if status == 204]
    assert len(winners) == 1
    assert sorted(status for status, _ in results) == [204] + [412] * (WRITERS - 1)
    meta = client.get("/api/v1/metadata", params={"path": "/race/new.bin"}).json()
    assert meta["sha256"] == hashlib.sha256(winners[0]).hexdigest()
    assert client.get(f"/api/v1/files/{meta['id']}/content").content == winners[0]


def test_same_base_rev_race_has_exactly_one_winner(
    live_server: LiveServer, client: httpx.Client
) -> None:
    base = tus.upload(client, "/race/edit.bin", b"base").headers["dropline-rev"]
    results = race(live_server, "/race/edit.bin", base)
    winners = [data for status, data in results if status == 204]
    assert len(winners) == 1
    meta = client.get("/api/v1/metadata", params={"path": "/race/edit.bin"}).json()
    assert client.get(f"/api/v1/files/{meta['id']}/content").content == winners[0]
    modified = [
        c for c in client.get("/api/v1/changes").json()["changes"] if c["action"] == "modified"
    ]
    assert len(modified) == 1


def test_readers_see_whole_versions_while_writers_overwrite(
    live_server: LiveServer, client: httpx.Client
) -> None:
    versions = [os.urandom(1_500_000) for _ in range(6)]
    known = {hashlib.sha256(v).hexdigest() for v in versions}
    entry_id = tus.upload(client, "/race/hot.bin", versions[0]).headers["dropline-entry-id"]
    stop = threading.Event()
    seen: list[str] = []
    problems: list[str] = []

    def reader() -> None:
        headers = {"Authorization": client.headers["Authorization"]}
        with httpx.Client(base_url=live_server.url, headers=headers, timeout=30) as c:
            while not stop.is_set() or not seen:
                r = c.get(f"/api/v1/files/{entry_id}/content")
                digest = hashlib.sha256(r.content).hexdigest()
                if digest not in known:
                    problems.append("torn read")
                if r.headers["repr-digest"] != tus_digest(r.content):
                    problems.append("digest header disagrees with the bytes")
                seen.append(digest)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for version in versions[1:]:
        assert tus.upload(client, "/race/hot.bin", version).status_code == 201
    stop.set()
    for t in threads:
        t.join(30)
    assert problems == []
    assert seen


def tus_digest(data: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"
