"""Three real ``dropline-server serve`` nodes on one PostgreSQL database with blobs and
uploads in progress in one bucket of moto's S3 server, behind Debian's nginx running
docs/nginx-nodes.conf (round robin, no stickiness)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from tests.server.nodes.front import running_nginx
from tests.support.live import ServerProcess
from tests.support.nodes import migrated_with_key, running_nodes
from tests.support.postgres import PostgresCluster
from tests.support.s3 import shared_moto

SCOPES = ("files:read", "files:write")


@dataclass
class Cluster:
    nodes: list[ServerProcess]
    front: str  # nginx's URL
    key: str  # alice's API key (acme)

    def client(self, url: str) -> httpx.Client:
        """alice's client of ``url`` (a node's, or nginx's)."""
        return httpx.Client(
            base_url=url,
            headers={"Authorization": f"Bearer {self.key}", "Tus-Resumable": "1.0.0"},
            timeout=60,
        )

    def longpolls_held(self, url: str) -> float:
        """What ``dropline_longpolls_active`` says on the node at ``url``."""
        text = httpx.get(url + "/metrics", timeout=10).text
        for line in text.splitlines():
            if line.startswith("dropline_longpolls_active "):
                return float(line.split()[1])
        raise AssertionError("no dropline_longpolls_active in /metrics")


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, postgres_cluster: PostgresCluster
) -> Iterator[Cluster]:
    base = tmp_path_factory.mktemp("nodes")
    moto = shared_moto()
    s3 = moto.env(moto.new_bucket(), home=base)
    # The nodes trust nginx, as docs/operations.md asks of them.
    env = {**s3, "DROPLINE_TRUSTED_PROXIES": "127.0.0.1/32"}
    with postgres_cluster.fresh_database() as url:
        key = migrated_with_key(url, SCOPES)
        with (
            running_nodes(base, url, 3, env) as nodes,
            running_nginx(base / "nginx", [node.port for node in nodes]) as front,
        ):
            yield Cluster(nodes, front, key)


__all__ = ["Cluster", "cluster"]
