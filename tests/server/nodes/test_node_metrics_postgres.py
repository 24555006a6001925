"""Metrics per node: each node's ``/metrics`` counts the requests it answered itself and
names the node (``dropline_node_info``), so several nodes are scraped one by one; a
scrape through nginx reaches whichever node is next."""

from __future__ import annotations

import socket

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.server.nodes.conftest import Cluster

ROUTE = "/api/v1/changes/latest-cursor"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    r = httpx.get(url + "/metrics", timeout=10)
    assert r.status_code == 200, r.text
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def answered(samples: Samples) -> float:
    """``GET ROUTE`` requests answered 200, as one node counted them."""
    labels = frozenset({"method": "GET", "route": ROUTE, "status": "200"}.items())
    return samples.get(("dropline_http_requests_total", labels), 0.0)


def node_names(samples: Samples) -> list[str]:
    return [
        dict(labels)["node"]
        for (name, labels), value in samples.items()
        if name == "dropline_node_info" and value == 1
    ]


def test_requests_to_node_2_move_node_2s_counters_and_no_other_nodes(cluster: Cluster) -> None:
    before = [answered(scrape(node.url)) for node in cluster.nodes]
    with cluster.client(cluster.nodes[1].url) as node2:
        for _ in range(5):
            assert node2.get(ROUTE).status_code == 200
    after = [answered(scrape(node.url)) for node in cluster.nodes]
    assert [a - b for a, b in zip(after, before, strict=True)] == [0, 5, 0]


def test_each_node_names_itself_by_host_and_port(cluster: Cluster) -> None:
    host = socket.gethostname()
    for node in cluster.nodes:
        assert node_names(scrape(node.url)) == [f"{host}:{node.port}"]


def test_scrapes_through_nginx_reach_every_node_in_turn(cluster: Cluster) -> None:
    # Why the docs say to scrape each node: the balancer's /metrics is any node's.
    seen = {name for _ in cluster.nodes for name in node_names(scrape(cluster.front))}
    host = socket.gethostname()
    assert seen == {f"{host}:{node.port}" for node in cluster.nodes}


def test_a_node_given_a_name_is_scraped_under_that_name(cluster: Cluster) -> None:
    node = cluster.nodes[2]
    plain = node.extra_env  # shared with the other nodes: replaced, never changed
    node.extra_env = {**plain, "DROPLINE_NODE_NAME": "files-3.internal"}
    node.stop()
    try:
        node.start(timeout=60)
        assert node_names(scrape(node.url)) == ["files-3.internal"]
        # The others keep their own names.
        assert node_names(scrape(cluster.nodes[0].url)) == [
            f"{socket.gethostname()}:{cluster.nodes[0].port}"
        ]
    finally:
        node.stop()
        node.extra_env = plain
        node.start(timeout=60)
