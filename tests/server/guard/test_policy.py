"""Each policy rule against the real server: refused with a 403 naming the rule, nothing
changed, one audit row and one ``policy.violated`` event."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dropline.server.guard import policy
from dropline.server.storage import schema
from tests.server import tus
from tests.support.live import LiveServer

PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"
EXE = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + b"\x00" * 200


def set_policy(
    live: LiveServer, rules: dict[str, Any] | None, user_email: str | None = None
) -> None:
    tenant_id = live.identity.tenant_id("acme")
    user_id = live.identity.user_id(tenant_id, user_email) if user_email else None
    with live.app.state.db.write() as conn:  # type: ignore[attr-defined]
        policy.save_rules(conn, tenant_id, user_id, policy.parse_rules(rules) if rules else None)


def denials(live: LiveServer) -> list[tuple[str, str, str]]:
    with live.app.state.db.read() as conn:  # type: ignore[attr-defined]
        rows = conn.execute(
            select(schema.audit_events).where(schema.audit_events.c.action == "policy.denied")
        ).all()
        events = conn.execute(
            select(schema.events).where(schema.events.c.type == "policy.violated")
        ).all()
    assert len(events) == len(rows)
    for event, row in zip(events, rows, strict=True):
        assert json.loads(event.payload)["audit_id"] == row.id
    return [(r.outcome, json.loads(r.detail)["rule"], r.resource) for r in rows]


def assert_denied(r: httpx.Response, rule: str) -> None:
    assert r.status_code == 403, r.text
    body = r.json()
    assert body["type"].endswith("/policy-denied")
    assert body["rule"] == rule
    assert body["detail"]


def test_source_addresses_outside_the_allowed_networks_are_refused(
    live_server: LiveServer, client: httpx.Client
) -> None:
    set_policy(live_server, {"allowed_cidrs": ["10.0.0.0/8", "192.168.0.0/16"]})
    r = client.get("/api/v1/me")
    assert_denied(r, "allowed_cidrs")
    assert "127.0.0.1" in r.json()["detail"]
    assert denials(live_server) == [("denied", "allowed_cidrs", "/api/v1/me")]
    set_policy(live_server, {"allowed_cidrs": ["127.0.0.0/8"]})
    assert client.get("/api/v1/me").status_code == 200


def _hours_around(now: datetime, inside: bool) -> dict[str, Any]:
    start = now - timedelta(hours=1) if inside else now + timedelta(hours=3)
    end = now + timedelta(hours=1) if inside else now + timedelta(hours=4)
    if start.date() != end.date() or (inside and start.date() != now.date()):
        # Keep the window inside one day so the test means the same at any hour.
        start, end = (now.replace(hour=0, minute=0), now.replace(hour=23, minute=59))
        if not inside:
            return {
                "start": "00:00",
                "end": "24:00",
                "timezone": "UTC",
                "days": [d for d in policy.DAYS if d != policy.DAYS[now.weekday()]],
            }
    return {"start": start.strftime("%H:%M"), "end": end.strftime("%H:%M"), "timezone": "UTC"}


def test_requests_outside_the_allowed_hours_are_refused(
    live_server: LiveServer, client: httpx.Client
) -> None:
    now = datetime.now(UTC)
    set_policy(live_server, {"allowed_hours": _hours_around(now, inside=False)})
    assert_denied(client.get("/api/v1/me"), "allowed_hours")
    set_policy(live_server, {"allowed_hours": _hours_around(now, inside=True)})
    assert client.get("/api/v1/me").status_code == 200


def test_allowed_hours_use_the_policy_time_zone() -> None:
    rules = policy.parse_rules(
        {
            "allowed_hours": {
                "start": "09:00",
                "end": "17:00",
                "timezone": "Asia/Tokyo",
                "days": ["mon", "tue", "wed", "thu", "fri"],
            }
        }
    )
    # Monday 2026-03-02 01:00 UTC is 10:00 in Tokyo: inside.
    policy.check_request(rules, "127.0.0.1", datetime(2026, 3, 2, 1, 0, tzinfo=UTC).timestamp())
    # Monday 10:00 UTC is 19:00 in Tokyo: outside.
    with pytest.raises(policy.PolicyDenied):
        policy.check_request(
            rules, "127.0.0.1", datetime(2026, 3, 2, 10, 0, tzinfo=UTC).timestamp()
        )
    # Saturday in Tokyo: outside.
    with pytest.raises(policy.PolicyDenied):
        policy.check_request(rules, "127.0.0.1", datetime(2026, 3, 7, 1, 0, tzinfo=UTC).timestamp())


def test_files_over_the_size_limit_are_refused(
    live_server: LiveServer, client: httpx.Client
) -> None:
    set_policy(live_server, {"max_file_size": 10})
    assert_denied(tus.upload(client, "/big.bin", b"x" * 11), "max_file_size")
    assert client.get("/api/v1/metadata", params={"path": "/big.bin"}).status_code == 404
    assert tus.upload(client, "/ok.bin", b"x" * 10).status_code == 201
    assert denials(live_server) == [("denied", "max_file_size", "/big.bin")]


def test_blocked_extensions_are_refused_whatever_the_case(
    live_server: LiveServer, client: httpx.Client
) -> None:
    set_policy(live_server, {"blocked_extensions": ["exe", ".BAT"]})
    assert_denied(tus.upload(client, "/tools/setup.EXE", b"data"), "blocked_extensions")
    assert_denied(tus.upload(client, "/run.bat", b"data"), "blocked_extensions")
    assert tus.upload(client, "/notes.txt", b"data").status_code == 201
    # Renaming into a blocked extension is an upload of that name in all but bytes.
    entry = client.get("/api/v1/metadata", params={"path": "/notes.txt"}).json()
    r = client.patch(f"/api/v1/files/{entry['id']}", json={"path": "/notes.exe"})
    assert_denied(r, "blocked_extensions")
    assert client.get(f"/api/v1/files/{entry['id']}").json()["path"] == "/notes.txt"


def test_the_storage_quota_counts_every_file_once(
    live_server: LiveServer, client: httpx.Client
) -> None:
    set_policy(live_server, {"storage_quota": 100, "max_versions": 1})
    assert tus.upload(client, "/a.bin", b"a" * 60).status_code == 201
    assert_denied(tus.upload(client, "/b.bin", b"b" * 60), "storage_quota")
    # Keeping no earlier version, replacing a file counts its new size instead of the old.
    assert tus.upload(client, "/a.bin", b"c" * 90).status_code == 201
    assert client.get("/api/v1/metadata", params={"path": "/b.bin"}).status_code == 404


def test_the_storage_quota_counts_the_versions_retention_keeps(
    live_server: LiveServer, client: httpx.Client
) -> None:
    set_policy(live_server, {"storage_quota": 100})
    assert tus.upload(client, "/a.bin", b"a" * 60).status_code == 201
    # The 60 bytes stay as an earlier version: 60 + 50 is over the quota.
    assert_denied(tus.upload(client, "/a.bin", b"c" * 50), "storage_quota")
    assert tus.upload(client, "/a.bin", b"c" * 40).status_code == 201
    assert client.get("/api/v1/me").json()["storage"]["versions"] == 60


def test_content_that_contradicts_its_extension_is_refused(
    live_server: LiveServer, client: httpx.Client
) -> None:
    set_policy(live_server, {"content_must_match_extension": True})
    r = tus.upload(client, "/invoices/march.pdf", EXE)
    assert_denied(r, "content_must_match_extension")
    assert ".exe" in r.json()["detail"]
    assert client.get("/api/v1/metadata", params={"path": "/invoices/march.pdf"}).status_code == 404
    assert tus.upload(client, "/invoices/april.pdf", PDF).status_code == 201
    # Content no signature describes (plain text) is not a contradiction.
    assert tus.upload(client, "/invoices/readme.pdf", b"just some words").status_code == 201
    assert denials(live_server) == [
        ("denied", "content_must_match_extension", "/invoices/march.pdf")
    ]


def test_the_same_content_passes_without_the_rule(
    live_server: LiveServer, client: httpx.Client
) -> None:
    assert tus.upload(client, "/invoices/march.pdf", EXE).status_code == 201
    assert denials(live_server) == []


def test_a_restricted_folder_needs_the_scope_it_names(
    live_server: LiveServer, client: httpx.Client
) -> None:
    assert tus.upload(client, "/inbox/contract.txt", b"terms").status_code == 201
    set_policy(
        live_server,
        {"folders": [{"path": "/restricted", "tags": ["restricted"], "require_scope": "admin"}]},
    )
    assert_denied(tus.upload(client, "/restricted/plan.txt", b"x"), "folders")
    assert_denied(client.post("/api/v1/folders", json={"path": "/restricted/sub"}), "folders")
    entry = client.get("/api/v1/metadata", params={"path": "/inbox/contract.txt"}).json()
    moved = client.patch(f"/api/v1/files/{entry['id']}", json={"path": "/restricted/contract.txt"})
    assert_denied(moved, "folders")
    assert client.get("/api/v1/metadata", params={"path": "/inbox/contract.txt"}).status_code == 200
    # A similar name is not inside the folder.
    assert tus.upload(client, "/restricted-archive/a.txt", b"x").status_code == 201


def test_a_folder_requiring_mtls_refuses_a_bearer_credential(
    live_server: LiveServer, client: httpx.Client
) -> None:
    set_policy(live_server, {"folders": [{"path": "/secure", "require_mtls": True}]})
    r = tus.upload(client, "/secure/a.txt", b"x")
    assert_denied(r, "folders")
    assert "client certificate" in r.json()["detail"]


def test_a_user_policy_replaces_the_tenant_rule_for_that_user(
    live_server: LiveServer, client: httpx.Client, bob: httpx.Client
) -> None:
    set_policy(live_server, {"blocked_extensions": [".zip"]})
    set_policy(live_server, {"blocked_extensions": []}, user_email="bob@example.com")
    assert_denied(tus.upload(client, "/a.zip", b"x"), "blocked_extensions")
    assert tus.upload(bob, "/a.zip", b"x").status_code == 201


@pytest.mark.parametrize(
    "doc",
    [
        {"max_file_size": -1},
        {"unknown_rule": True},
        {"allowed_cidrs": ["10.0.0.300/8"]},
        {"allowed_hours": {"start": "25:00", "end": "26:00"}},
        {"allowed_hours": {"start": "09:00", "end": "17:00", "timezone": "Mars/Olympus"}},
        {"folders": [{"path": "relative"}]},
    ],
)
def test_an_invalid_policy_is_refused_and_changes_nothing(
    live_server: LiveServer, doc: dict[str, Any]
) -> None:
    live_server.identity.create_tenant("acme")
    live_server.identity.create_user("acme", "root@acme.example", "long enough", admin=True)
    _id, key = live_server.identity.create_api_key("acme", "root@acme.example", ("admin",))
    with httpx.Client(
        base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}
    ) as admin:
        assert admin.put("/api/v1/admin/policy", json={"max_file_size": 5}).status_code == 200
        r = admin.put("/api/v1/admin/policy", json=doc)
        assert r.status_code == 400, doc
        assert r.json()["detail"]
        assert admin.get("/api/v1/admin/policy").json()["rules"] == {"max_file_size": 5}


def test_me_shows_the_effective_policy(live_server: LiveServer, client: httpx.Client) -> None:
    assert client.get("/api/v1/me").json()["policy"] == {}
    set_policy(live_server, {"max_file_size": 100, "blocked_extensions": [".exe"]})
    set_policy(live_server, {"max_file_size": 500}, user_email="alice@example.com")
    assert client.get("/api/v1/me").json()["policy"] == {
        "max_file_size": 500,
        "blocked_extensions": [".exe"],
    }
