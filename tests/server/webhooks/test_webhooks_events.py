"""The events behind webhooks, end to end: file changes, failed uploads and policy
denials reach a subscribed receiver, signed, each with the event's own data."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from dropline.server.guard import policy
from dropline.server.settings import Settings
from tests.server import tus
from tests.server.ops_helpers import (
    create_webhook,
    ops_client,
    start_transfer,
    upload,
    wait_transfer,
)
from tests.support.live import LiveServer, running_server
from tests.support.receiver import Receiver

FILE_EVENTS = ["file.uploaded", "file.moved", "file.deleted", "upload.failed"]


def received(receiver: Receiver, secret: str, count: int) -> list[dict[str, Any]]:
    payloads = []
    for request in receiver.wait_count(count):
        payload = Webhook(secret).verify(request.body, request.headers)
        assert isinstance(payload, dict)
        payloads.append(payload)
    return payloads


def test_upload_move_and_delete_are_delivered_in_order(
    alice: httpx.Client, receiver: Receiver
) -> None:
    hook = create_webhook(alice, receiver.url, FILE_EVENTS)
    alice.post("/api/v1/folders", json={"path": "/empty"})  # a folder is no upload
    entry = upload(alice, "/in/data.csv", b"1,2,3")
    moved = alice.patch(f"/api/v1/files/{entry['id']}", json={"path": "/done/data.csv"})
    assert moved.status_code == 200
    assert alice.delete(f"/api/v1/files/{entry['id']}").status_code == 204
    payloads = received(receiver, hook["secret"], 3)
    assert [p["type"] for p in payloads] == ["file.uploaded", "file.moved", "file.deleted"]
    uploaded, move, deleted = (p["data"] for p in payloads)
    assert uploaded["entry"]["path"] == "/in/data.csv"
    assert uploaded["entry"]["sha256"] == tus.sha256(b"1,2,3")
    assert uploaded["user_id"] == deleted["user_id"]
    assert move["old_path"] == "/in/data.csv"
    assert move["entry"]["path"] == "/done/data.csv"
    assert deleted["entry"]["id"] == entry["id"]


def test_a_rejected_upload_is_delivered_as_upload_failed(
    alice: httpx.Client, receiver: Receiver
) -> None:
    hook = create_webhook(alice, receiver.url, ["upload.failed", "file.uploaded"])
    r = tus.upload(alice, "/bad.bin", b"real bytes", sha256="0" * 64)
    assert r.status_code == 422
    [payload] = received(receiver, hook["secret"], 1)
    assert payload["type"] == "upload.failed"
    assert payload["data"]["path"] == "/bad.bin"
    assert payload["data"]["code"] == "integrity"


def test_a_policy_denial_is_delivered_as_policy_violated(
    ops_server: LiveServer, alice: httpx.Client, receiver: Receiver
) -> None:
    hook = create_webhook(alice, receiver.url, ["policy.violated"])
    entry = upload(alice, "/tools/setup.exe", b"MZ fake")
    tenant_id = alice.get("/api/v1/me").json()["tenant"]["id"]
    db = ops_server.app.state.db  # type: ignore[attr-defined]
    with db.write() as conn:
        policy.save_rules(
            conn, tenant_id, None, policy.parse_rules({"blocked_extensions": [".exe"]})
        )
    r = alice.post(
        "/api/v1/transfers",
        json={"file_ids": [entry["id"]], "destination": {"type": "folder", "path": "/copies"}},
    )
    assert r.status_code == 403
    assert r.json()["type"].endswith("/policy-denied")
    assert alice.get("/api/v1/transfers").json()["transfers"] == []
    [payload] = received(receiver, hook["secret"], 1)
    assert payload["type"] == "policy.violated"
    assert payload["data"]["rule"] == "blocked_extensions"
    assert payload["data"]["resource"] == "/copies/setup.exe"


def test_file_events_go_out_without_waiting_for_a_poll(
    ops_settings: Settings, receiver: Receiver
) -> None:
    # Workers that never poll on their own: only being woken can send the delivery.
    settings = replace(ops_settings, worker_poll_seconds=3600)
    with running_server(settings) as live, ops_client(live) as alice:
        hook = create_webhook(alice, receiver.url, ["file.uploaded"])
        upload(alice, "/now.txt", b"now")
        [payload] = received(receiver, hook["secret"], 1)
        assert payload["data"]["entry"]["path"] == "/now.txt"


def test_a_policy_that_refuses_a_copy_while_it_runs_fails_the_transfer(
    ops_server: LiveServer, alice: httpx.Client, receiver: Receiver
) -> None:
    hook = create_webhook(alice, receiver.url, ["policy.violated", "transfer.failed"])
    png = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
    entry = upload(alice, "/pictures/chart.pdf", png)
    tenant_id = alice.get("/api/v1/me").json()["tenant"]["id"]
    db = ops_server.app.state.db  # type: ignore[attr-defined]
    with db.write() as conn:
        rules = policy.parse_rules({"content_must_match_extension": True})
        policy.save_rules(conn, tenant_id, None, rules)
    # Accepted (the extension is fine); the content is checked when the copy lands.
    started = start_transfer(alice, [entry["id"]], {"type": "folder", "path": "/copies"})
    done = wait_transfer(alice, started["id"])
    assert done["state"] == "failed"
    assert done["error"]["code"] == "policy-denied"
    assert alice.get("/api/v1/metadata", params={"path": "/copies/chart.pdf"}).status_code == 404
    payloads = received(receiver, hook["secret"], 2)
    assert sorted(p["type"] for p in payloads) == ["policy.violated", "transfer.failed"]
    violated = next(p for p in payloads if p["type"] == "policy.violated")
    assert violated["data"]["rule"] == "content_must_match_extension"
    assert violated["data"]["request_id"] == f"transfer:{started['id']}"
