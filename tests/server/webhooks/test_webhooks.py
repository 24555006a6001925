"""Webhook subscriptions and deliveries against a real receiver on loopback; every
delivery is verified with the ``standardwebhooks`` library."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace

import httpx
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from dropline.server.settings import Settings
from tests.server.ops_helpers import create_webhook, deliveries, ops_client, upload
from tests.support.live import LiveServer, running_server
from tests.support.receiver import Received, Receiver, Reply, wait_until


def verified(secret: str, request: Received) -> dict[str, object]:
    """The payload, after the library accepts the signature and timestamp (else it raises)."""
    payload = Webhook(secret).verify(request.body, request.headers)
    assert isinstance(payload, dict)
    return payload


def test_secret_is_shown_at_creation_and_never_again(
    alice: httpx.Client, receiver: Receiver
) -> None:
    created = create_webhook(alice, receiver.url, ["file.uploaded"], description="ERP")
    assert created["secret"].startswith("whsec_")
    assert created["active"] is True
    assert created["event_types"] == ["file.uploaded"]
    one = alice.get(f"/api/v1/webhooks/{created['id']}").json()
    listed = alice.get("/api/v1/webhooks").json()["webhooks"]
    assert "secret" not in one
    assert created["secret"] not in json.dumps(listed)
    assert [w["id"] for w in listed] == [created["id"]]


def test_ping_arrives_signed_and_the_log_records_it(
    alice: httpx.Client, receiver: Receiver
) -> None:
    hook = create_webhook(alice, receiver.url, ["transfer.completed"])
    r = alice.post(f"/api/v1/webhooks/{hook['id']}/ping")
    assert r.status_code == 202
    request = receiver.wait_count(1)[0]
    payload = verified(hook["secret"], request)
    assert payload["type"] == "webhook.ping"
    assert payload["data"] == {"webhook_id": hook["id"]}
    assert request.headers["webhook-id"] == r.json()["id"]
    assert request.headers["content-type"] == "application/json"

    def logged() -> dict[str, object] | None:
        found = deliveries(alice, hook["id"])
        return found[0] if found and found[0]["state"] == "succeeded" else None

    entry = wait_until(logged)
    assert entry["last_status_code"] == 204
    assert isinstance(entry["last_latency_ms"], float)
    detail = alice.get(f"/api/v1/webhooks/{hook['id']}/deliveries/{entry['id']}").json()
    assert [a["outcome"] for a in detail["attempt_log"]] == ["success"]
    assert detail["payload"]["type"] == "webhook.ping"


def test_a_wrong_secret_does_not_verify(alice: httpx.Client, receiver: Receiver) -> None:
    hook = create_webhook(alice, receiver.url, ["file.deleted"])
    alice.post(f"/api/v1/webhooks/{hook['id']}/ping")
    request = receiver.wait_count(1)[0]
    other = create_webhook(alice, receiver.url, ["file.deleted"])
    with pytest.raises(WebhookVerificationError):
        Webhook(other["secret"]).verify(request.body, request.headers)


def test_failing_receiver_gets_retries_with_the_same_webhook_id(
    alice: httpx.Client, receiver: Receiver
) -> None:
    receiver.script = [Reply(500), Reply(503)]
    hook = create_webhook(alice, receiver.url, ["file.uploaded"])
    alice.post(f"/api/v1/webhooks/{hook['id']}/ping")
    got = receiver.wait_count(3)
    assert len({r.headers["webhook-id"] for r in got}) == 1
    for request in got:
        verified(hook["secret"], request)
    entry = wait_until(
        lambda: [d for d in deliveries(alice, hook["id"]) if d["state"] == "succeeded"]
    )
    detail = alice.get(f"/api/v1/webhooks/{hook['id']}/deliveries/{entry[0]['id']}").json()
    outcomes = [(a["outcome"], a["status_code"]) for a in detail["attempt_log"]]
    assert outcomes == [("retry", 500), ("retry", 503), ("success", 204)]


@pytest.fixture
def patient(ops_settings: Settings) -> Iterator[httpx.Client]:
    """A client of a server that retries every 0.2 s for 20 s: time enough for a receiver
    to come up on a busy machine."""
    with (
        running_server(replace(ops_settings, webhook_retry_schedule=(0.2,) * 100)) as live,
        ops_client(live) as client,
    ):
        yield client


def test_receiver_down_then_up_gets_the_delivery(patient: httpx.Client) -> None:
    alice = patient
    down = Receiver()
    down.reserve_port()  # nothing listens there yet: connections are refused
    hook = create_webhook(alice, down.url, ["file.uploaded"])
    queued = alice.post(f"/api/v1/webhooks/{hook['id']}/ping").json()

    def failed_twice() -> bool:
        found = deliveries(alice, hook["id"])
        return bool(found) and found[0]["attempts"] >= 2 and found[0]["state"] == "pending"

    wait_until(failed_twice)
    down.start()
    try:
        request = down.wait_count(1)[0]
        assert request.headers["webhook-id"] == queued["id"]
        verified(hook["secret"], request)
        done = wait_until(
            lambda: [d for d in deliveries(alice, hook["id"]) if d["state"] == "succeeded"]
        )
        assert done[0]["attempts"] >= 3
        detail = alice.get(f"/api/v1/webhooks/{hook['id']}/deliveries/{queued['id']}").json()
        first = detail["attempt_log"][0]
        assert first["outcome"] == "retry"
        assert first["status_code"] is None
        assert first["error"]
    finally:
        down.stop()


def test_retry_after_postpones_the_next_attempt(alice: httpx.Client, receiver: Receiver) -> None:
    receiver.script = [Reply(429, headers={"Retry-After": "30"})]
    hook = create_webhook(alice, receiver.url, ["file.uploaded"])
    alice.post(f"/api/v1/webhooks/{hook['id']}/ping")
    receiver.wait_count(1)

    def scheduled() -> dict[str, object] | None:
        found = deliveries(alice, hook["id"])
        return found[0] if found and found[0]["attempts"] == 1 else None

    entry = wait_until(scheduled)
    detail = alice.get(f"/api/v1/webhooks/{hook['id']}/deliveries/{entry['id']}").json()
    attempted_at = detail["attempt_log"][0]["at"]
    # The schedule says 0.2 s; the receiver asked for 30 s, and gets them.
    assert entry["state"] == "pending"
    assert entry["next_attempt_at"] - attempted_at >= 29.9
    assert len(receiver.requests) == 1


def test_schedule_spent_marks_the_delivery_failed(alice: httpx.Client, receiver: Receiver) -> None:
    receiver.default = Reply(500)
    hook = create_webhook(alice, receiver.url, ["file.uploaded"])
    alice.post(f"/api/v1/webhooks/{hook['id']}/ping")
    done = wait_until(lambda: [d for d in deliveries(alice, hook["id"]) if d["state"] == "failed"])
    # One first attempt plus one per delay of the (shortened) schedule.
    assert done[0]["attempts"] == 6
    assert len(receiver.requests) == 6
    assert alice.get(f"/api/v1/webhooks/{hook['id']}").json()["active"] is True


def test_410_disables_the_endpoint(alice: httpx.Client, receiver: Receiver) -> None:
    receiver.script = [Reply(410)]
    hook = create_webhook(alice, receiver.url, ["file.uploaded"])
    alice.post(f"/api/v1/webhooks/{hook['id']}/ping")
    receiver.wait_count(1)
    state = wait_until(
        lambda: (w := alice.get(f"/api/v1/webhooks/{hook['id']}").json())["active"] is False and w
    )
    assert "410" in state["disabled_reason"]
    assert [d["state"] for d in deliveries(alice, hook["id"])] == ["failed"]
    refused = alice.post(f"/api/v1/webhooks/{hook['id']}/ping")
    assert refused.status_code == 409
    again = alice.patch(f"/api/v1/webhooks/{hook['id']}", json={"active": True})
    assert again.json()["active"] is True
    assert again.json()["disabled_reason"] is None
    alice.post(f"/api/v1/webhooks/{hook['id']}/ping")
    assert len(receiver.wait_count(2)) == 2


def test_rotation_signs_with_both_secrets_during_the_overlap(
    alice: httpx.Client, receiver: Receiver
) -> None:
    hook = create_webhook(alice, receiver.url, ["file.uploaded"])
    old = hook["secret"]
    rotated = alice.post(
        f"/api/v1/webhooks/{hook['id']}/rotate-secret", json={"overlap_seconds": 3600}
    )
    assert rotated.status_code == 200
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert rotated.json()["previous_secret_expires_at"] is not None
    alice.post(f"/api/v1/webhooks/{hook['id']}/ping")
    during = receiver.wait_count(1)[0]
    assert len(during.headers["webhook-signature"].split()) == 2
    verified(old, during)
    verified(new, during)

    final = alice.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret", json={"overlap_seconds": 0})
    newest = final.json()["secret"]
    alice.post(f"/api/v1/webhooks/{hook['id']}/ping")
    after = receiver.wait_count(2)[1]
    verified(newest, after)
    for stale in (old, new):
        with pytest.raises(WebhookVerificationError):
            Webhook(stale).verify(after.body, after.headers)


def test_manual_redelivery_resends_the_same_message(
    alice: httpx.Client, receiver: Receiver
) -> None:
    hook = create_webhook(alice, receiver.url, ["file.uploaded"])
    ping = alice.post(f"/api/v1/webhooks/{hook['id']}/ping").json()
    first = receiver.wait_count(1)[0]
    wait_until(lambda: deliveries(alice, hook["id"])[0]["state"] == "succeeded")
    r = alice.post(f"/api/v1/webhooks/{hook['id']}/deliveries/{ping['id']}/redeliver")
    assert r.status_code == 202
    second = receiver.wait_count(2)[1]
    assert second.headers["webhook-id"] == first.headers["webhook-id"] == ping["id"]
    assert second.body == first.body
    verified(hook["secret"], second)


def test_events_reach_only_their_own_tenant_and_chosen_types(
    ops_server: LiveServer, receiver: Receiver
) -> None:
    acme = ops_client(ops_server)
    globex = ops_client(ops_server, tenant="globex", email="gina@globex.example")
    other = Receiver().start()
    try:
        acme_hook = create_webhook(acme, receiver.url, ["transfer.completed"])
        deletes_only = create_webhook(acme, receiver.url + "/deletes", ["file.deleted"])
        globex_hook = create_webhook(globex, other.url, ["transfer.completed"])
        entry = upload(acme, "/report.txt", b"quarterly numbers")
        r = acme.post(
            "/api/v1/transfers",
            json={"file_ids": [entry["id"]], "destination": {"type": "link"}},
        )
        assert r.status_code == 202
        request = receiver.wait_count(1)[0]
        payload = verified(acme_hook["secret"], request)
        assert payload["type"] == "transfer.completed"
        data = payload["data"]
        assert isinstance(data, dict)
        assert data["transfer_id"] == r.json()["id"]
        assert request.path == "/"
        assert deliveries(acme, deletes_only["id"]) == []
        assert other.requests == []
        assert deliveries(globex, globex_hook["id"]) == []
        # Each tenant sees only its own subscriptions.
        assert globex.get(f"/api/v1/webhooks/{acme_hook['id']}").status_code == 404
        assert [w["id"] for w in globex.get("/api/v1/webhooks").json()["webhooks"]] == [
            globex_hook["id"]
        ]
    finally:
        other.stop()
        acme.close()
        globex.close()


def test_webhooks_need_the_webhooks_scope(ops_server: LiveServer, receiver: Receiver) -> None:
    with ops_client(ops_server, scopes=("files:read", "files:write")) as plain:
        r = plain.post(
            "/api/v1/webhooks", json={"url": receiver.url, "event_types": ["file.uploaded"]}
        )
        assert r.status_code == 403
        assert r.json()["type"].endswith("/insufficient-scope")


def test_bad_subscriptions_are_refused_and_nothing_is_stored(
    alice: httpx.Client, receiver: Receiver
) -> None:
    unknown = alice.post(
        "/api/v1/webhooks", json={"url": receiver.url, "event_types": ["file.eaten"]}
    )
    assert unknown.status_code == 400
    assert "file.eaten" in unknown.json()["detail"]
    not_url = alice.post(
        "/api/v1/webhooks", json={"url": "not a url at all", "event_types": ["file.uploaded"]}
    )
    assert not_url.status_code == 400
    assert not_url.json()["type"].endswith("/target-refused")
    with_password = alice.post(
        "/api/v1/webhooks",
        json={"url": "https://user:pw@example.com/hook", "event_types": ["file.uploaded"]},
    )
    assert with_password.status_code == 400
    assert alice.get("/api/v1/webhooks").json()["webhooks"] == []


@pytest.mark.parametrize(
    "url",
    [
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://[::1]/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://10.0.0.7/hook",
        "https://192.168.1.20/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "http://example.com/hook",
    ],
)
def test_private_and_plain_http_targets_are_refused_by_default(
    live_server: LiveServer, url: str
) -> None:
    with ops_client(live_server) as client:
        r = client.post("/api/v1/webhooks", json={"url": url, "event_types": ["file.uploaded"]})
        assert r.status_code == 400, r.text
        assert r.json()["type"].endswith("/target-refused")
        assert client.get("/api/v1/webhooks").json()["webhooks"] == []


def test_deleting_a_webhook_stops_its_deliveries(alice: httpx.Client, receiver: Receiver) -> None:
    hook = create_webhook(alice, receiver.url, ["file.uploaded"])
    assert alice.delete(f"/api/v1/webhooks/{hook['id']}").status_code == 204
    assert alice.get(f"/api/v1/webhooks/{hook['id']}").status_code == 404
    assert alice.post(f"/api/v1/webhooks/{hook['id']}/ping").status_code == 404


def test_subscription_changes_are_audited_without_secrets(
    ops_server: LiveServer, alice: httpx.Client, receiver: Receiver
) -> None:
    hook = create_webhook(alice, receiver.url, ["file.uploaded"])
    rotated = alice.post(f"/api/v1/webhooks/{hook['id']}/rotate-secret").json()
    alice.patch(f"/api/v1/webhooks/{hook['id']}", json={"description": "renamed"})
    alice.delete(f"/api/v1/webhooks/{hook['id']}")
    with ops_client(ops_server, scopes=("audit:read",)) as auditor:
        rows = auditor.get("/api/v1/audit-events", params={"action": "webhook."}).json()["events"]
    assert [r["action"] for r in rows] == [
        "webhook.create",
        "webhook.rotate_secret",
        "webhook.update",
        "webhook.delete",
    ]
    assert {r["resource"] for r in rows} == {f"/api/v1/webhooks/{hook['id']}"}
    text = json.dumps(rows)
    assert hook["secret"] not in text and rotated["secret"] not in text
    assert "whsec_" not in text
