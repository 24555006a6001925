"""The admin API: who may use it, and users, API keys, clients and certificates through it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import insert, select

from dropline.server.storage import schema
from tests.support.live import LiveServer

_open: list[httpx.Client] = []


def client_for(live: LiveServer, key: str) -> httpx.Client:
    client = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {key}"})
    _open.append(client)
    return client


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _open:
        _open.pop().close()


@pytest.fixture
def admin(live_server: LiveServer) -> httpx.Client:
    live_server.identity.create_tenant("acme")
    live_server.identity.create_user(
        "acme", "root@acme.example", "correct horse battery", admin=True
    )
    _id, key = live_server.identity.create_api_key(
        "acme", "root@acme.example", ("admin", "audit:read", "files:read")
    )
    return client_for(live_server, key)


def make_super(live: LiveServer, email: str, tenant: str = "acme") -> None:
    user_id = live.identity.user_id(live.identity.tenant_id(tenant), email)
    with live.app.state.db.write() as conn:  # type: ignore[attr-defined]
        conn.execute(insert(schema.super_admins).values(user_id=user_id, created_at=time.time()))


def test_admin_routes_need_the_admin_scope_and_an_admin_user(
    live_server: LiveServer, admin: httpx.Client
) -> None:
    plain = client_for(live_server, live_server.new_key(tenant="acme", email="pat@acme.example"))
    r = plain.get("/api/v1/admin/users")
    assert r.status_code == 403 and r.json()["type"].endswith("/insufficient-scope")
    # An admin-scoped key of a user who is no longer an admin stops working at once.
    _id, key = live_server.identity.create_api_key("acme", "root@acme.example", ("admin",))
    users = admin.get("/api/v1/admin/users").json()["users"]
    root = next(u for u in users if u["email"] == "root@acme.example")
    other_admin = admin.post(
        "/api/v1/admin/users",
        json={"email": "ops@acme.example", "password": "long enough", "admin": True},
    ).json()
    _id2, ops_key = live_server.identity.create_api_key("acme", "ops@acme.example", ("admin",))
    ops = client_for(live_server, ops_key)
    assert ops.patch(f"/api/v1/admin/users/{root['id']}", json={"admin": False}).status_code == 200
    r = client_for(live_server, key).get("/api/v1/admin/users")
    assert r.status_code == 403 and "not an administrator" in r.json()["detail"]
    assert other_admin["is_admin"] is True


def test_tenants_are_for_the_super_admin_only(live_server: LiveServer, admin: httpx.Client) -> None:
    assert admin.get("/api/v1/admin/tenants").status_code == 403
    assert admin.post("/api/v1/admin/tenants", json={"name": "initech"}).status_code == 403
    make_super(live_server, "root@acme.example")
    created = admin.post("/api/v1/admin/tenants", json={"name": "initech"})
    assert created.status_code == 201
    names = [t["name"] for t in admin.get("/api/v1/admin/tenants").json()["tenants"]]
    assert names == ["acme", "initech"]
    assert admin.post("/api/v1/admin/tenants", json={"name": "initech"}).status_code == 400


def test_user_lifecycle(live_server: LiveServer, admin: httpx.Client) -> None:
    r = admin.post(
        "/api/v1/admin/users", json={"email": "New@Acme.example", "password": "long enough"}
    )
    assert r.status_code == 201
    user = r.json()
    assert user["email"] == "new@acme.example" and user["is_admin"] is False
    assert admin.get(f"/api/v1/admin/users/{user['id']}").json() == user
    dup = admin.post(
        "/api/v1/admin/users", json={"email": "new@acme.example", "password": "long enough"}
    )
    assert dup.status_code == 400 and "already exists" in dup.json()["detail"]
    short = admin.post("/api/v1/admin/users", json={"email": "x@acme.example", "password": "short"})
    assert short.status_code == 400
    disabled = admin.patch(f"/api/v1/admin/users/{user['id']}", json={"active": False}).json()
    assert disabled["is_active"] is False


def test_disabling_a_user_stops_their_keys(live_server: LiveServer, admin: httpx.Client) -> None:
    key = live_server.new_key(tenant="acme", email="leaver@acme.example")
    me = client_for(live_server, key)
    assert me.get("/api/v1/me").status_code == 200
    user_id = me.get("/api/v1/me").json()["user"]["id"]
    admin.patch(f"/api/v1/admin/users/{user_id}", json={"active": False})
    assert me.get("/api/v1/me").status_code == 401


def key_body(user_id: str, **extra: Any) -> dict[str, Any]:
    return {"user_id": user_id, "scopes": ["files:read"], **extra}


def test_api_key_create_list_rotate_revoke(live_server: LiveServer, admin: httpx.Client) -> None:
    user = admin.post(
        "/api/v1/admin/users", json={"email": "svc@acme.example", "password": "long enough"}
    ).json()
    created = admin.post("/api/v1/admin/api-keys", json=key_body(user["id"], name="nightly"))
    assert created.status_code == 201
    first = created.json()
    assert first["key"].startswith(first["prefix"])
    # Default lifetime: 90 days.
    assert abs(first["expires_at"] - first["created_at"] - 90 * 86400) < 5
    old = client_for(live_server, first["key"])
    assert old.get("/api/v1/me").status_code == 200
    listed = admin.get("/api/v1/admin/api-keys", params={"user_id": user["id"]}).json()["api_keys"]
    assert [k["id"] for k in listed] == [first["id"]]
    assert listed[0]["last_used_at"] is not None and "key" not in listed[0]

    rotated = admin.post(f"/api/v1/admin/api-keys/{first['id']}/rotate", json={}).json()
    assert rotated["id"] != first["id"] and rotated["name"] == "nightly"
    assert rotated["scopes"] == ["files:read"]
    new = client_for(live_server, rotated["key"])
    # Both work after a rotation: the old one lives until its own expiry.
    assert old.get("/api/v1/me").status_code == 200
    assert new.get("/api/v1/me").status_code == 200

    revoked = admin.delete(f"/api/v1/admin/api-keys/{first['id']}").json()
    assert revoked["state"] == "revoked"
    assert old.get("/api/v1/me").status_code == 401
    assert new.get("/api/v1/me").status_code == 200


def test_rotation_can_shorten_the_old_keys_life(
    live_server: LiveServer, admin: httpx.Client
) -> None:
    user = admin.post(
        "/api/v1/admin/users", json={"email": "svc2@acme.example", "password": "long enough"}
    ).json()
    first = admin.post("/api/v1/admin/api-keys", json=key_body(user["id"])).json()
    admin.post(f"/api/v1/admin/api-keys/{first['id']}/rotate", json={"old_expires_in": 0})
    assert client_for(live_server, first["key"]).get("/api/v1/me").status_code == 401


def test_admin_scopes_only_for_admin_users(live_server: LiveServer, admin: httpx.Client) -> None:
    user = admin.post(
        "/api/v1/admin/users", json={"email": "u@acme.example", "password": "long enough"}
    ).json()
    for tenant_wide in ("admin", "audit:read", "webhooks"):
        r = admin.post(
            "/api/v1/admin/api-keys", json={"user_id": user["id"], "scopes": [tenant_wide]}
        )
        assert r.status_code == 400 and "only for admin users" in r.json()["detail"]
    bad = admin.post("/api/v1/admin/api-keys", json={"user_id": user["id"], "scopes": ["root"]})
    assert bad.status_code == 400 and "unknown scope" in bad.json()["detail"]


def test_oauth_client_lifecycle(live_server: LiveServer, admin: httpx.Client) -> None:
    svc = admin.post(
        "/api/v1/admin/users", json={"email": "robot@acme.example", "password": "long enough"}
    ).json()
    r = admin.post(
        "/api/v1/admin/clients",
        json={
            "name": "ERP",
            "grant_types": ["client_credentials"],
            "scopes": ["files:read"],
            "service_user_id": svc["id"],
        },
    )
    assert r.status_code == 201, r.text
    client = r.json()
    token = httpx.post(
        live_server.url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert token.status_code == 200
    access = token.json()["access_token"]
    new_secret = admin.post(f"/api/v1/admin/clients/{client['client_id']}/secret").json()
    assert new_secret["client_secret"] != client["client_secret"]
    old = httpx.post(
        live_server.url + "/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client["client_id"], client["client_secret"]),
    )
    assert old.status_code == 401
    listed = admin.get("/api/v1/admin/clients").json()["clients"]
    assert [c["client_id"] for c in listed] == [client["client_id"]]
    assert "client_secret" not in listed[0]
    assert admin.delete(f"/api/v1/admin/clients/{client['client_id']}").status_code == 204
    assert client_for(live_server, access).get("/api/v1/me").status_code == 401


def test_client_registration_is_validated(admin: httpx.Client) -> None:
    cases = [
        {"name": "x", "grant_types": ["password"], "scopes": ["files:read"]},
        {"name": "x", "grant_types": ["authorization_code"], "scopes": ["files:read"]},
        {
            "name": "x",
            "grant_types": ["authorization_code"],
            "scopes": ["files:read"],
            "redirect_uris": ["http://portal.example/cb"],
        },
        {"name": "x", "grant_types": ["client_credentials"], "scopes": ["files:read"]},
    ]
    for body in cases:
        r = admin.post("/api/v1/admin/clients", json=body)
        assert r.status_code == 400, body
    assert admin.get("/api/v1/admin/clients").json()["clients"] == []


def test_admin_operations_are_audited(live_server: LiveServer, admin: httpx.Client) -> None:
    user = admin.post(
        "/api/v1/admin/users", json={"email": "aud@acme.example", "password": "long enough"}
    ).json()
    key = admin.post("/api/v1/admin/api-keys", json=key_body(user["id"])).json()
    admin.delete(f"/api/v1/admin/api-keys/{key['id']}")
    with live_server.app.state.db.read() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(
            select(schema.audit_events)
            .where(schema.audit_events.c.action.like("admin.%"))
            .order_by(schema.audit_events.c.seq)
        ).all()
    assert [(r.action, r.resource) for r in rows] == [
        ("admin.user.create", f"user:{user['id']}"),
        ("admin.api_key.create", f"api_key:{key['id']}"),
        ("admin.api_key.revoke", f"api_key:{key['id']}"),
    ]
    assert all(
        r.request_id and r.source_ip == "127.0.0.1" and r.credential_kind == "api_key" for r in rows
    )
    # The key itself never reaches the audit trail.
    assert all(key["key"] not in (r.detail + (r.resource or "")) for r in rows)
