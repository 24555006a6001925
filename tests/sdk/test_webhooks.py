"""Standard Webhooks verification and de-duplication, down to a real signed delivery
from the server for an upload made through the SDK."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from datetime import UTC, datetime

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from dropline.sdk.client import DroplineClient
from dropline.sdk.credentials import ApiKeyCredentials
from dropline.sdk.errors import ValidationError
from dropline.sdk.webhooks import WebhookDeduplicator, WebhookVerificationError, verify_webhook
from tests.support.live import LiveServer
from tests.support.receiver import Receiver

SECRET = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()
BODY = json.dumps({"type": "file.uploaded", "data": {"path": "/reports/q3.pdf"}})


def signed_headers(
    body: str = BODY, *, msg_id: str = "msg_1", at: float | None = None, secret: str = SECRET
) -> dict[str, str]:
    sent = int(time.time() if at is None else at)
    signature = Webhook(secret).sign(
        msg_id=msg_id, timestamp=datetime.fromtimestamp(sent, tz=UTC), data=body
    )
    return {"webhook-id": msg_id, "webhook-timestamp": str(sent), "webhook-signature": signature}


def test_genuine_delivery_returns_the_payload() -> None:
    payload = verify_webhook(SECRET, signed_headers(), BODY.encode())
    assert payload == {"type": "file.uploaded", "data": {"path": "/reports/q3.pdf"}}


def test_header_names_are_case_insensitive_and_several_signatures_are_allowed() -> None:
    headers = signed_headers()
    rotated = {
        "Webhook-Id": headers["webhook-id"],
        "Webhook-Timestamp": headers["webhook-timestamp"],
        # During secret rotation a sender signs with the old and the new secret.
        "Webhook-Signature": "v1,AAAA " + headers["webhook-signature"],
    }
    assert verify_webhook(SECRET, rotated, BODY)["type"] == "file.uploaded"


def test_tampered_body_is_rejected() -> None:
    headers = signed_headers()
    with pytest.raises(WebhookVerificationError, match="No signature matches"):
        verify_webhook(SECRET, headers, BODY.replace("q3", "q4"))


def test_wrong_secret_is_rejected() -> None:
    other = "whsec_" + base64.b64encode(b"another secret of 32 bytes......").decode()
    with pytest.raises(WebhookVerificationError):
        verify_webhook(other, signed_headers(), BODY)


def test_stale_and_future_timestamps_are_rejected_by_the_tolerance() -> None:
    now = 1_800_000_000
    old = signed_headers(at=now - 301)
    with pytest.raises(WebhookVerificationError, match="off"):
        verify_webhook(SECRET, old, BODY, now=now)
    future = signed_headers(at=now + 301)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(SECRET, future, BODY, now=now)
    # A wider tolerance than the library's fixed five minutes is honoured.
    assert verify_webhook(SECRET, old, BODY, tolerance=600, now=now)["type"] == "file.uploaded"
    assert verify_webhook(SECRET, signed_headers(at=now - 10), BODY, now=now)


@pytest.mark.parametrize(
    "broken",
    [
        {"webhook-signature": "garbage-without-comma"},
        {"webhook-signature": "v1,not*base64"},
        {"webhook-signature": "v2,AAAA"},
        {"webhook-timestamp": "yesterday"},
        {"webhook-id": ""},
    ],
)
def test_malformed_headers_are_a_clean_rejection(broken: dict[str, str]) -> None:
    headers = {**signed_headers(), **broken}
    with pytest.raises(WebhookVerificationError) as caught:
        verify_webhook(SECRET, headers, BODY)
    assert isinstance(caught.value, ValidationError)
    assert caught.value.title == "Webhook rejected"


def test_missing_headers_are_rejected() -> None:
    with pytest.raises(WebhookVerificationError, match="lacks"):
        verify_webhook(SECRET, {}, BODY)


def test_bad_secret_is_a_clear_error() -> None:
    with pytest.raises(WebhookVerificationError, match="secret"):
        verify_webhook("whsec_", signed_headers(), BODY)


def test_deduplicator_sees_each_id_once_within_its_ttl() -> None:
    now = [0.0]
    dedup = WebhookDeduplicator(ttl=60, clock=lambda: now[0])
    assert dedup.first_time("msg_1")
    assert not dedup.first_time("msg_1")
    assert dedup.first_time("msg_2")
    now[0] = 61
    assert dedup.first_time("msg_1")  # remembered no longer than the ttl
    assert len(dedup) == 1


def test_deduplicator_is_bounded() -> None:
    dedup = WebhookDeduplicator(max_entries=3)
    for i in range(10):
        assert dedup.first_time(f"msg_{i}")
    assert len(dedup) == 3
    assert not dedup.first_time("msg_9")
    assert dedup.first_time("msg_0")  # the oldest were forgotten first


# -- deliveries from the real server ------------------------------------------------------


@pytest.mark.anyio
async def test_a_real_delivery_for_an_sdk_upload_verifies(
    ops_server: LiveServer, receiver: Receiver
) -> None:
    key = ops_server.new_key(scopes=("files:read", "files:write", "webhooks"))
    async with DroplineClient(ops_server.url, ApiKeyCredentials(key)) as api:
        created = await asyncio.to_thread(
            httpx.post,
            ops_server.url + "/api/v1/webhooks",
            json={"url": receiver.url, "event_types": ["file.uploaded"]},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert created.status_code == 201, created.text
        secret = created.json()["secret"]
        data = b"invoice 42"
        session = await api.create_upload(
            "/erp/invoice-42.txt", len(data), sha256=hashlib.sha256(data).hexdigest(), data=data
        )
    delivery = (await asyncio.to_thread(receiver.wait_count, 1))[0]
    payload = verify_webhook(secret, delivery.headers, delivery.body)
    assert payload["type"] == "file.uploaded"
    assert session.entry_id in json.dumps(payload)
    dedup = WebhookDeduplicator()
    assert dedup.first_time(delivery.headers["webhook-id"])
    assert not dedup.first_time(delivery.headers["webhook-id"])  # a redelivery is dropped
    with pytest.raises(WebhookVerificationError):
        verify_webhook(secret, delivery.headers, delivery.body + b" ")
