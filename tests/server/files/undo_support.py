"""Helpers for the version, trash and retention tests: one live server per test module,
a fresh user (own file space) per test, uploads, the change feed, audit rows and blobs."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from dropline.server.guard import policy
from dropline.server.settings import Settings
from dropline.server.storage import schema
from tests.server import tus
from tests.support.live import LiveServer, running_server
from tests.support.s3 import stored_blob_ids

_users = itertools.count(1)
FILE_SCOPES = ("files:read", "files:write")
ADMIN_SCOPES = ("files:read", "files:write", "admin")
LINK_SCOPES = ("files:read", "files:write", "transfers")


@contextmanager
def module_server(data_dir: Path) -> Iterator[LiveServer]:
    """The live server of one test module (transfer workers poll often, for share links)."""
    settings = replace(Settings(data_dir=data_dir, port=0), worker_poll_seconds=0.05)
    with running_server(settings) as live:
        yield live


def new_user(
    live: LiveServer,
    tenant: str = "acme",
    scopes: tuple[str, ...] = FILE_SCOPES,
    email: str | None = None,
    user_agent: str | None = None,
    admin: bool = False,
) -> httpx.Client:
    """A client of a new user (so a test starts with an empty space and trash)."""
    email = email or f"user{next(_users)}@{tenant}.example"
    if admin:
        ensure_tenant(live, tenant)
        live.identity.create_user(tenant, email, "correct horse battery staple", admin=True)
    key = live.new_key(tenant=tenant, email=email, scopes=scopes)
    headers = {"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"}
    if user_agent is not None:
        headers["User-Agent"] = user_agent
    return httpx.Client(base_url=live.url, headers=headers, timeout=30)


def email_of(client: httpx.Client) -> str:
    return str(client.get("/api/v1/me").json()["user"]["email"])


def user_id_of(client: httpx.Client) -> str:
    return str(client.get("/api/v1/me").json()["user"]["id"])


def put(client: httpx.Client, path: str, data: bytes) -> dict[str, Any]:
    """Upload ``data`` to ``path``; returns the entry."""
    r = tus.upload(client, path, data)
    assert r.status_code == 201, r.text
    found = client.get("/api/v1/metadata", params={"path": path})
    assert found.status_code == 200, found.text
    entry: dict[str, Any] = found.json()
    return entry


def folder(client: httpx.Client, path: str) -> dict[str, Any]:
    r = client.post("/api/v1/folders", json={"path": path})
    assert r.status_code in (200, 201), r.text
    entry: dict[str, Any] = r.json()
    return entry


def delete(client: httpx.Client, entry: dict[str, Any]) -> None:
    r = client.delete(f"/api/v1/files/{entry['id']}")
    assert r.status_code == 204, r.text


def cursor(client: httpx.Client) -> str:
    return str(client.get("/api/v1/changes/latest-cursor").json()["cursor"])


def changes_since(client: httpx.Client, since: str) -> list[tuple[str, str, str]]:
    """(action, path, type) of every change after ``since``."""
    page = client.get("/api/v1/changes", params={"cursor": since}).json()
    return [(c["action"], c["entry"]["path"], c["entry"]["type"]) for c in page["changes"]]


def trash(client: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    r = client.get("/api/v1/trash", params=params)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def audit_rows(live: LiveServer, action: str) -> list[dict[str, Any]]:
    with live.app.state.db.read() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(
            select(schema.audit_events)
            .where(schema.audit_events.c.action == action)
            .order_by(schema.audit_events.c.seq)
        ).all()
    return [{**row._mapping, "detail": json.loads(row.detail)} for row in rows]


def events(live: LiveServer, type_: str) -> list[dict[str, Any]]:
    with live.app.state.db.read() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(
            select(schema.events).where(schema.events.c.type == type_).order_by(schema.events.c.id)
        ).all()
    return [json.loads(row.payload) for row in rows]


def blob_ids(live: LiveServer, entry_id: str) -> set[str]:
    """The blobs of every revision of ``entry_id``."""
    with live.app.state.db.read() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(
            select(schema.revisions.c.blob_id).where(schema.revisions.c.entry_id == entry_id)
        ).all()
    return {row.blob_id for row in rows}


def blob_exists(live: LiveServer, blob_id: str) -> bool:
    return blob_id in stored_blob_ids(live.settings.blob_url)


def ensure_tenant(live: LiveServer, tenant: str) -> str:
    try:
        return live.identity.tenant_id(tenant)
    except ValueError:
        return live.identity.create_tenant(tenant)


def set_policy(live: LiveServer, tenant: str, rules: dict[str, Any] | None) -> None:
    """Replace the tenant's policy (None removes it); the tenant is made if new."""
    tenant_id = ensure_tenant(live, tenant)
    with live.app.state.db.write() as conn:  # type: ignore[attr-defined]
        policy.save_rules(conn, tenant_id, None, policy.parse_rules(rules) if rules else None)
