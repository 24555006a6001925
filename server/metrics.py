"""Prometheus metrics: one registry per app, the counters every room updates, and
collectors that read transfer and delivery states from the database at scrape time
(so the numbers are right after a restart)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from dropline.server.storage import schema
from dropline.server.storage.db import Database

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TRANSFER_STATES = ("queued", "running", "completed", "failed", "cancelled", "expired")
DELIVERY_STATES = ("pending", "succeeded", "failed", "cancelled")
NODE_NAME_VARIABLE = "DROPLINE_NODE_NAME"

# Long-polls and big uploads take minutes; the top buckets keep them apart from hangs.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def node_name(port: int | None) -> str:
    """How this node names itself in ``dropline_node_info``: ``DROPLINE_NODE_NAME`` when
    set, else its host name and the port it serves on (two nodes on one machine differ
    by port). Read at scrape time, as the database and blob URLs are read."""
    named = os.environ.get(NODE_NAME_VARIABLE, "").strip()
    if named:
        return named
    host = socket.gethostname()
    return f"{host}:{port}" if port else host


class _StateCollector(Collector):
    """Current transfer and webhook-delivery counts by state, read when scraped."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def collect(self) -> Iterator[GaugeMetricFamily]:
        transfers = GaugeMetricFamily("dropline_transfers", "Transfers by state", labels=["state"])
        deliveries = GaugeMetricFamily(
            "dropline_webhook_deliveries", "Webhook deliveries by state", labels=["state"]
        )
        t, d = schema.transfers, schema.webhook_deliveries
        with self.db.read() as conn:
            by_transfer = {
                str(state): int(n)
                for state, n in conn.execute(select(t.c.state, func.count()).group_by(t.c.state))
            }
            by_delivery = {
                str(state): int(n)
                for state, n in conn.execute(select(d.c.state, func.count()).group_by(d.c.state))
            }
        for state in TRANSFER_STATES:
            transfers.add_metric([state], float(by_transfer.get(state, 0)))
        for state in DELIVERY_STATES:
            deliveries.add_metric([state], float(by_delivery.get(state, 0)))
        yield transfers
        yield deliveries

    def describe(self) -> Iterator[GaugeMetricFamily]:
        # Describing without a query keeps registration free of database access.
        yield GaugeMetricFamily("dropline_transfers", "Transfers by state", labels=["state"])
        yield GaugeMetricFamily(
            "dropline_webhook_deliveries", "Webhook deliveries by state", labels=["state"]
        )


class Metrics:
    """Every series the server exposes, in a registry of its own (several apps may live
    in one process, as in the tests; the global registry would clash)."""

    def __init__(self, db: Database | None = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "dropline_http_requests",
            "HTTP requests answered, by route template",
            ["method", "route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "dropline_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.upload_bytes = Counter(
            "dropline_upload_bytes", "Request body bytes received by upload routes", registry=r
        )
        self.download_bytes = Counter(
            "dropline_download_bytes",
            "File content bytes sent (downloads and share links)",
            registry=r,
        )
        self.longpolls = Gauge(
            "dropline_longpolls_active", "Change-feed long-polls waiting now", registry=r
        )
        self.webhook_outcomes = Counter(
            "dropline_webhook_delivery_attempts",
            "Webhook delivery attempts by outcome (success, retry, failed, disabled)",
            ["outcome"],
            registry=r,
        )
        self.webhook_latency = Histogram(
            "dropline_webhook_delivery_duration_seconds",
            "Time from sending a webhook to its answer",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )
        self.transfers_finished = Counter(
            "dropline_transfers_finished",
            "Transfers that reached a final state, by kind and state",
            ["kind", "state"],
            registry=r,
        )
        # Counters are this process's own: several nodes are scraped one by one, and this
        # says which node a scrape came from (a scrape through the balancer hits any).
        self.node_info = Gauge(
            "dropline_node_info",
            "Always 1; node names this node (DROPLINE_NODE_NAME, or host name:port)",
            ["node"],
            registry=r,
        )
        self._node = ""
        if db is not None:
            r.register(_StateCollector(db))

    def identify(self, port: int | None) -> None:
        """Name this node in ``dropline_node_info``; ``port`` is the one the scrape came in on."""
        name = node_name(port)
        if name != self._node:
            self.node_info.clear()
            self.node_info.labels(name).set(1)
            self._node = name

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


__all__ = ["CONTENT_TYPE", "NODE_NAME_VARIABLE", "Metrics", "node_name"]
