"""Three server nodes on one PostgreSQL database, every one running the webhook
dispatcher: 50 events made through all three are delivered exactly once each."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.server.ops_helpers import OPS_SCOPES, create_webhook, upload
from tests.support.nodes import migrated_with_key, running_nodes
from tests.support.receiver import Receiver


def test_fifty_events_are_delivered_once_each_with_every_node_dispatching(
    tmp_path: Path, postgres_url: str, receiver: Receiver
) -> None:
    key = migrated_with_key(postgres_url, OPS_SCOPES)
    env = {"DROPLINE_ALLOW_PRIVATE_TARGETS": "1", "DROPLINE_WORKER_POLL_SECONDS": "0.05"}
    with running_nodes(tmp_path, postgres_url, 3, env) as nodes:
        clients = [
            httpx.Client(
                base_url=node.url,
                headers={"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"},
                timeout=30,
            )
            for node in nodes
        ]
        try:
            create_webhook(clients[0], receiver.url + "/hook", ["file.uploaded"])
            for n in range(50):  # round robin over the nodes, as a load balancer would
                upload(clients[n % 3], f"/in/file-{n:02}.txt", f"file {n}".encode())
            receiver.wait_count(50, timeout=60)
            time.sleep(1.5)  # a second sending of any message would show by now
        finally:
            for client in clients:
                client.close()
    ids = Counter(r.headers["webhook-id"] for r in receiver.requests)
    assert len(receiver.requests) == 50
    assert max(ids.values()) == 1
    paths = {json.loads(r.body)["data"]["entry"]["path"] for r in receiver.requests}
    assert paths == {f"/in/file-{n:02}.txt" for n in range(50)}
