"""Three nodes behind nginx on PostgreSQL and S3: a tus upload whose every PATCH lands on
another node, and long-polls held by one node woken by uploads through another."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from typing import Any

import httpx

from tests.server import tus
from tests.server.nodes.conftest import Cluster

CHUNK = 1024 * 1024 + 7  # odd, so no PATCH ends on a round boundary


class HeldLongPoll(threading.Thread):
    """alice's ``GET /api/v1/changes/wait`` in a thread; ``answered_at`` when it came back."""

    def __init__(self, cluster: Cluster, url: str, cursor: str, timeout: float = 60) -> None:
        super().__init__(daemon=True)
        self.cluster, self.url, self.cursor, self.timeout = cluster, url, cursor, timeout
        self.page: dict[str, Any] = {}
        self.status = 0
        self.answered_at = 0.0

    def run(self) -> None:
        with self.cluster.client(self.url) as c:
            r = c.get(
                "/api/v1/changes/wait", params={"cursor": self.cursor, "timeout": self.timeout}
            )
        self.answered_at = time.monotonic()
        self.status = r.status_code
        if r.status_code == 200:
            self.page = r.json()


def latest_cursor(cluster: Cluster, url: str) -> str:
    with cluster.client(url) as c:
        cursor: str = c.get("/api/v1/changes/latest-cursor").json()["cursor"]
    return cursor


def hold(cluster: Cluster, url: str, watched: list[str]) -> HeldLongPoll:
    """A long-poll through ``url``, started and waiting on one of the ``watched`` nodes."""
    before = sum(cluster.longpolls_held(node) for node in watched)
    held = HeldLongPoll(cluster, url, latest_cursor(cluster, url))
    held.start()
    deadline = time.monotonic() + 15
    while sum(cluster.longpolls_held(node) for node in watched) < before + 1:
        assert time.monotonic() < deadline, "the long-poll never reached a node"
        time.sleep(0.02)
    time.sleep(0.2)  # counted as it arrives: let it read the feed and go to sleep
    return held


def woken_by(held: HeldLongPoll, client: httpx.Client, path: str) -> float:
    """Upload ``path`` through ``client``; the seconds from its answer to the long-poll's."""
    r = tus.upload(client, path, b"wake up")
    assert r.status_code in (200, 201, 204), r.text
    written = time.monotonic()
    held.join(timeout=90)
    assert held.status == 200, f"the long-poll answered {held.status or 'nothing'}"
    assert [c["entry"]["path"] for c in held.page["changes"]] == [path]
    return held.answered_at - written


def test_a_tus_upload_whose_every_patch_lands_on_another_node_completes(
    cluster: Cluster,
) -> None:
    data = os.urandom(5 * CHUNK + 1234)
    nodes = [cluster.client(node.url) for node in cluster.nodes]
    try:
        r = tus.create(nodes[0], len(data), path="/nodes/big.bin", sha256=tus.sha256(data))
        assert r.status_code == 201, r.text
        location = r.headers["Location"]
        offset, patches = 0, 0
        while offset < len(data):
            part = data[offset : offset + CHUNK]
            # Node 2, 3, 1, 2, ...: never the node of the request before.
            node = nodes[(patches + 1) % len(nodes)]
            r = tus.patch(node, location, offset, part, **{"Upload-Checksum": tus.checksum(part)})
            assert r.status_code == 204, r.text
            offset = int(r.headers["Upload-Offset"])
            patches += 1
        assert offset == len(data) and patches == 6
        entry = nodes[2].get("/api/v1/metadata", params={"path": "/nodes/big.bin"}).json()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["size"] == len(data)
    finally:
        for client in nodes:
            client.close()
    with cluster.client(cluster.front) as front:
        body = front.get(f"/api/v1/files/{entry['id']}/content").content
    assert hashlib.sha256(body).hexdigest() == entry["sha256"]


def test_an_upload_through_node_1_wakes_a_long_poll_held_by_node_2(cluster: Cluster) -> None:
    node1, node2 = cluster.nodes[0].url, cluster.nodes[1].url
    held = hold(cluster, node2, [node2])
    with cluster.client(node1) as c:
        assert woken_by(held, c, "/nodes/direct.txt") < 1.0


def test_an_upload_through_nginx_wakes_a_long_poll_held_through_nginx(cluster: Cluster) -> None:
    held = hold(cluster, cluster.front, [node.url for node in cluster.nodes])
    # Round robin: the upload's requests go to the other nodes first.
    with cluster.client(cluster.front) as c:
        assert woken_by(held, c, "/nodes/via-nginx.txt") < 1.0


def test_a_long_poll_held_by_a_node_that_dies_goes_on_at_another(cluster: Cluster) -> None:
    urls = [node.url for node in cluster.nodes]
    held = hold(cluster, cluster.front, urls)
    [dying] = [node for node in cluster.nodes if cluster.longpolls_held(node.url) == 1]
    alive = [node.url for node in cluster.nodes if node is not dying]
    dying.kill()
    try:
        # nginx had no answer from it yet: it sends the same GET, cursor and all, to
        # another node, and the client never notices.
        deadline = time.monotonic() + 15
        while sum(cluster.longpolls_held(url) for url in alive) < 1:
            assert time.monotonic() < deadline, "nginx never passed the long-poll on"
            assert held.is_alive(), f"the long-poll answered {held.status}"
            time.sleep(0.02)
        time.sleep(0.2)
        with cluster.client(cluster.front) as c:
            assert woken_by(held, c, "/nodes/after-a-death.txt") < 1.0
    finally:
        dying.start(timeout=60)  # on its old port: back in nginx's rotation
