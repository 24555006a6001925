"""Helpers for the transfer, webhook and metrics tests: API clients with the scopes they
need, a file upload, and waiting for a transfer or a delivery to settle."""

from __future__ import annotations

from typing import Any

import httpx

from tests.server import tus
from tests.support.live import LiveServer
from tests.support.receiver import wait_until

OPS_SCOPES = ("files:read", "files:write", "transfers", "webhooks")
FINAL = {"completed", "failed", "cancelled", "expired"}


def ops_client(
    live: LiveServer,
    tenant: str = "acme",
    email: str = "alice@example.com",
    scopes: tuple[str, ...] = OPS_SCOPES,
) -> httpx.Client:
    key = live.new_key(tenant=tenant, email=email, scopes=scopes)
    return httpx.Client(
        base_url=live.url,
        headers={"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"},
        timeout=30,
    )


def upload(client: httpx.Client, path: str, data: bytes) -> dict[str, Any]:
    """Upload ``data`` to ``path`` in one request; returns the entry."""
    r = tus.upload(client, path, data)
    assert r.status_code in (200, 201, 204), r.text
    found = client.get("/api/v1/metadata", params={"path": path})
    assert found.status_code == 200, found.text
    entry: dict[str, Any] = found.json()
    return entry


def content(client: httpx.Client, path: str) -> bytes:
    entry_id = client.get("/api/v1/metadata", params={"path": path}).json()["id"]
    r = client.get(f"/api/v1/files/{entry_id}/content")
    assert r.status_code == 200, r.text
    return r.content


def start_transfer(
    client: httpx.Client, file_ids: list[str], destination: dict[str, Any], **headers: str
) -> dict[str, Any]:
    r = client.post(
        "/api/v1/transfers",
        json={"file_ids": file_ids, "destination": destination},
        headers=headers,
    )
    assert r.status_code == 202, r.text
    assert r.headers["location"] == f"/api/v1/transfers/{r.json()['id']}"
    doc: dict[str, Any] = r.json()
    return doc


def wait_transfer(
    client: httpx.Client, transfer_id: str, states: set[str] = FINAL, timeout: float = 30
) -> dict[str, Any]:
    def settled() -> dict[str, Any] | None:
        doc: dict[str, Any] = client.get(f"/api/v1/transfers/{transfer_id}").json()
        return doc if doc["state"] in states else None

    found: dict[str, Any] = wait_until(settled, timeout)
    return found


def deliveries(client: httpx.Client, webhook_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/api/v1/webhooks/{webhook_id}/deliveries")
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["deliveries"]
    return found


def create_webhook(
    client: httpx.Client, url: str, event_types: list[str], **fields: Any
) -> dict[str, Any]:
    r = client.post("/api/v1/webhooks", json={"url": url, "event_types": event_types, **fields})
    assert r.status_code == 201, r.text
    doc: dict[str, Any] = r.json()
    return doc
