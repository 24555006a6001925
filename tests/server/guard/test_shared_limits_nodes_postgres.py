"""A rate limit holds across nodes: requests spread over two server nodes on one
PostgreSQL database draw on one bucket per credential, not one per node."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.nodes import migrated_with_key, running_nodes


def test_a_credentials_limit_holds_across_two_nodes(tmp_path: Path, postgres_url: str) -> None:
    key = migrated_with_key(postgres_url, ("files:read",))
    env = {
        "DROPLINE_RATE_LIMIT_PER_CREDENTIAL": "20/hour",
        "DROPLINE_RATE_LIMIT_PER_ENDPOINT": "1000/second",
        "DROPLINE_RATE_LIMIT_PER_IP": "1000/second",
    }
    with running_nodes(tmp_path, postgres_url, 2, env) as nodes:
        clients = [
            httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {key}"})
            for node in nodes
        ]
        try:
            # Round robin, as a load balancer without stickiness sends them.
            answers = [clients[n % 2].get("/api/v1/me") for n in range(40)]
        finally:
            for client in clients:
                client.close()
    statuses = [answer.status_code for answer in answers]
    # In memory, each node would have let 20 through: 40 in all.
    assert statuses.count(200) == 20, statuses
    assert statuses.count(429) == 20
    assert statuses[:20] == [200] * 20
    refused = answers[-1]
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert int(refused.headers["retry-after"]) > 60
