from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook

from sync.errors import ValidationError
from sync.webhooks import WebhookDeduplicator, WebhookVerificationError, verify_webhook

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
