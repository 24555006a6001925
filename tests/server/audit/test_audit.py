"""The audit trail: exactly one row per action with the right fields, the hash chain, and
``GET /api/v1/audit-events`` with filters, cursor and formats, scoped to the tenant."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from dropline.server.audit import trail
from dropline.server.http.routes import audit as audit_routes
from dropline.server.storage import schema
from tests.server import tus
from tests.support.live import LiveServer


def rows(live: LiveServer, after: int = 0) -> list[Any]:
    with live.app.state.db.read() as conn:  # type: ignore[attr-defined]
        return list(
            conn.execute(
                select(schema.audit_events)
                .where(schema.audit_events.c.seq > after)
                .order_by(schema.audit_events.c.seq)
            )
        )


def last_seq(live: LiveServer) -> int:
    existing = rows(live)
    return int(existing[-1].seq) if existing else 0


@pytest.fixture
def auditor(live_server: LiveServer) -> Iterator[httpx.Client]:
    live_server.identity.create_tenant("acme")
    live_server.identity.create_user("acme", "auditor@acme.example", "long enough pw", admin=True)
    _id, key = live_server.identity.create_api_key("acme", "auditor@acme.example", ("audit:read",))
    with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}) as c:
        yield c


def test_each_file_operation_writes_exactly_one_row(
    live_server: LiveServer, client: httpx.Client
) -> None:
    me = client.get("/api/v1/me").json()
    steps: list[tuple[str, str, Any]] = [
        ("file.created", "/docs", lambda: client.post("/api/v1/folders", json={"path": "/docs"})),
        ("file.created", "/docs/a.txt", lambda: tus.upload(client, "/docs/a.txt", b"one")),
        ("file.modified", "/docs/a.txt", lambda: tus.upload(client, "/docs/a.txt", b"two")),
    ]
    for action, resource, step in steps:
        before = last_seq(live_server)
        response = step()
        assert response.status_code in (200, 201), response.text
        new = rows(live_server, before)
        assert [(r.action, r.resource) for r in new] == [(action, resource)], action
        row = new[0]
        assert row.tenant_id == me["tenant"]["id"]
        assert row.actor == me["user"]["id"]
        assert row.credential_id == me["credential"]["id"]
        assert row.credential_kind == "api_key"
        assert row.source_ip == "127.0.0.1"
        assert row.outcome == "success"
        assert row.request_id == response.headers["x-request-id"]

    entry = client.get("/api/v1/metadata", params={"path": "/docs/a.txt"}).json()
    before = last_seq(live_server)
    r = client.get(f"/api/v1/files/{entry['id']}/content")
    assert r.content == b"two"
    assert [(x.action, x.resource) for x in rows(live_server, before)] == [
        ("file.download", "/docs/a.txt")
    ]

    before = last_seq(live_server)
    client.patch(f"/api/v1/files/{entry['id']}", json={"path": "/docs/b.txt"})
    moved = rows(live_server, before)
    assert [(x.action, x.resource) for x in moved] == [("file.moved", "/docs/b.txt")]
    assert json.loads(moved[0].detail)["old_path"] == "/docs/a.txt"

    before = last_seq(live_server)
    assert client.delete(f"/api/v1/files/{entry['id']}").status_code == 204
    assert [(x.action, x.resource) for x in rows(live_server, before)] == [
        ("file.deleted", "/docs/b.txt")
    ]

    # Reads that are not file operations write nothing.
    before = last_seq(live_server)
    client.get("/api/v1/files", params={"path": "/docs"})
    client.get("/api/v1/me")
    assert rows(live_server, before) == []


def test_a_failed_authentication_writes_one_row_and_one_event(live_server: LiveServer) -> None:
    r = httpx.get(live_server.url + "/api/v1/me", headers={"Authorization": "Bearer dlk_nope_nope"})
    assert r.status_code == 401
    new = rows(live_server)
    assert [(x.action, x.outcome, x.source_ip, x.request_id) for x in new] == [
        ("auth.failed", "failure", "127.0.0.1", r.headers["x-request-id"])
    ]
    with live_server.app.state.db.read() as conn:  # type: ignore[attr-defined]
        events = conn.execute(select(schema.events)).all()
    assert [(e.type, json.loads(e.payload)["audit_id"]) for e in events] == [
        ("auth.failed", new[0].id)
    ]
    # The presented credential never lands in the trail.
    assert "dlk_nope" not in json.dumps([dict(x._mapping) for x in new])


def test_every_response_carries_a_request_id(live_server: LiveServer) -> None:
    a = httpx.get(live_server.url + "/healthz").headers["x-request-id"]
    b = httpx.get(live_server.url + "/healthz").headers["x-request-id"]
    assert a != b and len(a) == 32


def test_the_chain_verifies_and_an_edited_row_is_detected(
    live_server: LiveServer, client: httpx.Client
) -> None:
    for i in range(3):
        tus.upload(client, f"/f{i}.txt", b"x")
    db = live_server.app.state.db  # type: ignore[attr-defined]
    report = trail.verify_chain(db)
    assert report.ok and report.rows >= 3
    target = rows(live_server)[1]
    with db.write() as conn:
        conn.execute(
            text("UPDATE audit_events SET actor = 'someone-else' WHERE seq = :s"), {"s": target.seq}
        )
    broken = trail.verify_chain(db)
    assert not broken.ok
    assert broken.first_bad_seq == target.seq
    cli = subprocess.run(
        [
            sys.executable,
            "-m",
            "dropline.server.cli",
            "audit",
            "verify",
            "--data-dir",
            str(live_server.settings.data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 2
    assert f"BROKEN at row {target.seq}" in cli.stderr


def test_a_deleted_row_is_detected(live_server: LiveServer, client: httpx.Client) -> None:
    for i in range(3):
        tus.upload(client, f"/f{i}.txt", b"x")
    db = live_server.app.state.db  # type: ignore[attr-defined]
    middle = rows(live_server)[1]
    with db.write() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE seq = :s"), {"s": middle.seq})
    report = trail.verify_chain(db)
    assert not report.ok and report.first_bad_seq == middle.seq + 1


def test_pruning_keeps_the_rest_of_the_chain_verifiable(
    live_server: LiveServer, client: httpx.Client
) -> None:
    for i in range(4):
        tus.upload(client, f"/f{i}.txt", b"x")
    db = live_server.app.state.db  # type: ignore[attr-defined]
    all_rows = rows(live_server)
    cutoff = all_rows[1].at + 0.000001
    # Prune as if "now" were a day after the second row: the first two go.
    assert trail.prune(db, 1, now=cutoff + 86400) == 2
    assert trail.verify_chain(db).ok
    tus.upload(client, "/after.txt", b"x")
    assert trail.verify_chain(db).ok


def test_audit_events_api_filters_pages_and_formats(
    live_server: LiveServer, auditor: httpx.Client
) -> None:
    with httpx.Client(
        base_url=live_server.url,
        headers={
            "Authorization": f"Bearer {live_server.new_key(tenant='acme', email='u@acme.example')}",
            "Tus-Resumable": "1.0.0",
        },
    ) as user:
        for i in range(5):
            tus.upload(user, f"/r/{i}.txt", b"x")
        user_id = user.get("/api/v1/me").json()["user"]["id"]

    page1 = auditor.get("/api/v1/audit-events", params={"action": "file.", "limit": 3}).json()
    assert [e["resource"] for e in page1["events"]] == ["/r", "/r/0.txt", "/r/1.txt"]
    page2 = auditor.get(
        "/api/v1/audit-events",
        params={"action": "file.", "limit": 3, "cursor": page1["next_cursor"]},
    ).json()
    assert [e["resource"] for e in page2["events"]] == ["/r/2.txt", "/r/3.txt", "/r/4.txt"]
    assert page2["next_cursor"] is None

    by_resource = auditor.get("/api/v1/audit-events", params={"resource": "/r/3"}).json()["events"]
    assert [e["resource"] for e in by_resource] == ["/r/3.txt"]
    by_actor = auditor.get("/api/v1/audit-events", params={"actor": user_id}).json()["events"]
    assert len(by_actor) == 6 and {e["actor"] for e in by_actor} == {user_id}
    t = by_actor[2]["at"]
    window = auditor.get("/api/v1/audit-events", params={"actor": user_id, "since": t}).json()
    assert len(window["events"]) == 4
    none = auditor.get("/api/v1/audit-events", params={"outcome": "denied"}).json()["events"]
    assert none == []

    nd = auditor.get(
        "/api/v1/audit-events",
        params={"actor": user_id},
        headers={"Accept": "application/x-ndjson"},
    )
    assert nd.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in nd.text.splitlines()]
    assert [x["resource"] for x in lines] == [e["resource"] for e in by_actor]

    as_csv = auditor.get("/api/v1/audit-events", params={"actor": user_id, "format": "csv"})
    assert as_csv.headers["content-type"].startswith("text/csv")
    table = list(csv.DictReader(io.StringIO(as_csv.text)))
    assert [r["resource"] for r in table] == [e["resource"] for e in by_actor]
    assert table[0]["request_id"] == by_actor[0]["request_id"]


def test_audit_events_are_scoped_to_the_callers_tenant(
    live_server: LiveServer, auditor: httpx.Client, mallory: httpx.Client
) -> None:
    tus.upload(mallory, "/globex-secret.txt", b"x")
    events = auditor.get("/api/v1/audit-events").json()["events"]
    assert all(e["resource"] != "/globex-secret.txt" for e in events)
    tenant = auditor.get("/api/v1/me").json()["tenant"]["id"]
    assert {e["tenant_id"] for e in events} <= {tenant}


def test_audit_events_need_audit_read(client: httpx.Client) -> None:
    r = client.get("/api/v1/audit-events")
    assert r.status_code == 403
    assert r.json()["type"].endswith("/insufficient-scope")


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"since": "2026-01-01T00:00:00"},
        {"cursor": "garbage"},
        {"format": "xml"},
        {"limit": "0"},
        {"outcome": "maybe"},
    ],
)
def test_bad_audit_queries_are_400(auditor: httpx.Client, params: dict[str, str]) -> None:
    r = auditor.get("/api/v1/audit-events", params=params)
    assert r.status_code == 400, params
    assert r.headers["content-type"].startswith("application/problem+json")


def test_csv_cells_cannot_become_formulas() -> None:
    row = {name: None for name in trail.PUBLIC_FIELDS}
    row.update(actor='=HYPERLINK("http://x")', resource="/ok.txt", action="-1+1", detail={})
    table = list(csv.DictReader(io.StringIO(audit_routes._csv([row]))))
    assert table[0]["actor"] == '\'=HYPERLINK("http://x")'
    assert table[0]["action"] == "'-1+1"
    assert table[0]["resource"] == "/ok.txt"
