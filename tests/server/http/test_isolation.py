"""Tenant isolation: every /api/v1 route, walked from the app's own route table, with a
valid credential of tenant B (every scope, tenant admin) against tenant A's objects.

Each answer must be the 404 a made-up id gets, with the same body, and must
change nothing. A new route with a new kind of id fails here until the table
below says which of tenant A's objects it takes.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trustme
from fastapi.routing import APIRoute

from dropline.server.identity.accounts import ALL_SCOPES
from tests.server import tus
from tests.support.live import LiveServer

# Routes that are not per-tenant objects: bans belong to no tenant (super-admin only).
NOT_TENANT_OBJECTS = {"/api/v1/admin/bans/{ip}"}

# Minimal valid requests, so a refusal cannot come from validation instead of the lookup.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/api/v1/files/{entry_id}"): {"json": {"path": "/stolen.txt"}},
    ("PATCH", "/api/v1/admin/users/{user_id}"): {"json": {"active": False}},
    ("PUT", "/api/v1/admin/users/{user_id}/policy"): {"json": {"max_file_size": 1}},
    ("POST", "/api/v1/admin/api-keys/{key_id}/rotate"): {"json": {}},
    ("PATCH", "/api/v1/webhooks/{webhook_id}"): {"json": {"active": False}},
    ("POST", "/api/v1/webhooks/{webhook_id}/rotate-secret"): {"json": {}},
    ("POST", "/api/v1/files/{entry_id}/restore"): {"json": {"rev": "0123456789abcdef"}},
    ("POST", "/api/v1/trash/{item_id}/restore"): {"json": {}},
    ("PATCH", "/api/v1/uploads/{upload_id}"): {
        "content": b"x",
        "headers": {"Upload-Offset": "5", "Content-Type": "application/offset+octet-stream"},
    },
}


def api_routes(routes: list[Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    """(method, path) of every route, through included routers."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from api_routes(included.routes, prefix + route.include_context.prefix)
        elif isinstance(route, APIRoute) or hasattr(route, "methods"):
            for method in sorted(route.methods or ()):
                yield method, prefix + route.path


def admin_client(live: LiveServer, tenant: str, email: str) -> httpx.Client:
    try:
        live.identity.tenant_id(tenant)
    except ValueError:
        live.identity.create_tenant(tenant)
    live.identity.create_user(tenant, email, "long enough pw", admin=True)
    _id, key = live.identity.create_api_key(tenant, email, ALL_SCOPES)
    return httpx.Client(
        base_url=live.url,
        headers={"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"},
        timeout=30,
    )


@pytest.fixture
def tenants(ops_server: LiveServer) -> Iterator[tuple[httpx.Client, httpx.Client]]:
    # The operations server lets a webhook point at loopback, so tenant A can own one.
    with (
        admin_client(ops_server, "acme", "alice@acme.example") as a,
        admin_client(ops_server, "globex", "mallory@globex.example") as b,
    ):
        yield a, b


def objects_of(a: httpx.Client, live: LiveServer) -> dict[str, str]:
    """One of each kind of object tenant A owns, by the path parameter that names it."""
    file_id = tus.upload(a, "/private/secret.txt", b"secret").headers["dropline-entry-id"]
    binned = tus.upload(a, "/private/binned.txt", b"old").headers["dropline-entry-id"]
    assert a.delete(f"/api/v1/files/{binned}").status_code == 204
    upload = tus.create(a, 10, path="/private/pending.txt").headers["location"]
    tus.patch(a, upload, 0, b"12345")
    user = a.post(
        "/api/v1/admin/users", json={"email": "svc@acme.example", "password": "long enough pw"}
    ).json()
    key = a.post(
        "/api/v1/admin/api-keys", json={"user_id": user["id"], "scopes": ["files:read"]}
    ).json()
    client = a.post(
        "/api/v1/admin/clients",
        json={
            "name": "ERP",
            "grant_types": ["client_credentials"],
            "scopes": ["files:read"],
            "service_user_id": user["id"],
        },
    ).json()
    pem = trustme.CA().issue_cert("svc.acme.example").cert_chain_pems[0].bytes().decode()
    cert = a.post(
        "/api/v1/admin/client-certs", json={"user_id": user["id"], "certificate": pem}
    ).json()
    transfer = a.post(
        "/api/v1/transfers",
        json={"file_ids": [file_id], "destination": {"type": "folder", "path": "/copies"}},
    )
    hook = a.post(
        "/api/v1/webhooks",
        json={"url": "http://127.0.0.1:9/dropline", "event_types": ["file.uploaded"]},
    )
    ids = {
        "entry_id": file_id,
        "item_id": binned,
        "upload_id": upload.rsplit("/", 1)[1],
        "user_id": user["id"],
        "key_id": key["id"],
        "client_id": client["client_id"],
        "cert_id": cert["id"],
        "transfer_id": transfer.json()["id"],
    }
    assert transfer.status_code in (200, 201, 202), transfer.text
    assert hook.status_code == 201, hook.text
    ids["webhook_id"] = hook.json()["id"]
    ping = a.post(f"/api/v1/webhooks/{ids['webhook_id']}/ping")
    ids["delivery_id"] = (
        ping.json()["id"] if ping.status_code in (200, 201, 202) else str(uuid.uuid4())
    )
    return ids


def fill(path: str, values: dict[str, str]) -> str:
    out = path
    for name, value in values.items():
        out = out.replace("{" + name + "}", value)
    assert "{" not in out, f"no tenant-A object for {path}: add its parameter to objects_of()"
    return out


def comparable(r: httpx.Response) -> tuple[int, Any]:
    if r.request.method == "HEAD" or not r.content:
        return r.status_code, None
    body = r.json()
    body.pop("instance", None)  # the request path, which holds the id itself
    return r.status_code, body


def state_of(a: httpx.Client, owned: dict[str, str]) -> dict[str, Any]:
    """What tenant A sees of its objects, to show tenant B's requests changed none of them."""
    return {
        "file": a.get(f"/api/v1/files/{owned['entry_id']}").json(),
        "upload": a.head(f"/api/v1/uploads/{owned['upload_id']}").headers["upload-offset"],
        "policy": a.get(f"/api/v1/admin/users/{owned['user_id']}/policy").json(),
        "keys": a.get("/api/v1/admin/api-keys").json(),
        "clients": a.get("/api/v1/admin/clients").json(),
        "certs": a.get("/api/v1/admin/client-certs").json(),
        "hook": a.get(f"/api/v1/webhooks/{owned['webhook_id']}").json(),
        "revisions": a.get(f"/api/v1/files/{owned['entry_id']}/revisions").json(),
        "trash": a.get("/api/v1/trash").json(),
    }


def test_tenant_b_gets_404_for_every_object_of_tenant_a(
    ops_server: LiveServer, tenants: tuple[httpx.Client, httpx.Client]
) -> None:
    a, b = tenants
    owned = objects_of(a, ops_server)
    made_up = {
        name: str(uuid.uuid4()) if name != "upload_id" else uuid.uuid4().hex for name in owned
    }
    before = state_of(a, owned)
    walked = []
    for method, path in api_routes(ops_server.app.routes):  # type: ignore[attr-defined]
        if not path.startswith("/api/v1/") or "{" not in path or path in NOT_TENANT_OBJECTS:
            continue
        extra = BODIES.get((method, path), {})
        theirs = b.request(method, fill(path, owned), **extra)
        nobody = b.request(method, fill(path, made_up), **extra)
        assert theirs.status_code == 404, (method, path, theirs.status_code, theirs.text)
        assert comparable(theirs) == comparable(nobody), (method, path)
        walked.append((method, path))

    # The walk covered the kinds of object the API has.
    assert len(walked) >= 25
    for needle in (
        "/files/{entry_id}",
        "/uploads/{upload_id}",
        "/admin/api-keys/{key_id}",
        "/webhooks/{webhook_id}",
        "/transfers/{transfer_id}",
        "/trash/{item_id}",
    ):
        assert any(needle in p for _m, p in walked), needle

    after = state_of(a, owned)
    assert after == before


def test_tenant_b_lists_see_nothing_of_tenant_a(
    ops_server: LiveServer, tenants: tuple[httpx.Client, httpx.Client]
) -> None:
    a, b = tenants
    objects_of(a, ops_server)
    assert b.get("/api/v1/files", params={"path": "/"}).json()["entries"] == []
    assert b.get("/api/v1/metadata", params={"path": "/private/secret.txt"}).status_code == 404
    assert b.get("/api/v1/changes").json()["changes"] == []
    emails = [u["email"] for u in b.get("/api/v1/admin/users").json()["users"]]
    assert emails == ["mallory@globex.example"]
    assert [k["user_id"] for k in b.get("/api/v1/admin/api-keys").json()["api_keys"]] == [
        b.get("/api/v1/me").json()["user"]["id"]
    ]
    assert b.get("/api/v1/admin/clients").json()["clients"] == []
    assert b.get("/api/v1/admin/client-certs").json()["client_certs"] == []
    assert b.get("/api/v1/webhooks").json()["webhooks"] == []
    assert b.get("/api/v1/transfers").json()["transfers"] == []
    assert b.get("/api/v1/trash").json()["items"] == []
    assert b.get("/api/v1/me").json()["storage"]["used"] == 0
    events = b.get("/api/v1/audit-events").json()["events"]
    tenant_b = b.get("/api/v1/me").json()["tenant"]["id"]
    assert {e["tenant_id"] for e in events} <= {tenant_b}


def test_ids_are_unguessable_uuids(
    ops_server: LiveServer, tenants: tuple[httpx.Client, httpx.Client]
) -> None:
    a, _b = tenants
    owned = objects_of(a, ops_server)
    for name in ("entry_id", "user_id", "key_id", "cert_id", "transfer_id", "webhook_id"):
        assert uuid.UUID(owned[name]).version == 4, name
    assert len(owned["upload_id"]) == 32
