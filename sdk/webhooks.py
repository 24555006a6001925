"""Checking webhooks Dropline sends: Standard Webhooks signatures, and de-duplication.

For integrators' receivers: ``verify_webhook`` returns the parsed payload of a
genuine, fresh delivery and raises :class:`WebhookVerificationError` otherwise;
``WebhookDeduplicator`` remembers delivery ids so a retried delivery is handled once.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from dropline.sdk.errors import ValidationError

DEFAULT_TOLERANCE = 300  # seconds a delivery's timestamp may be off from now


class WebhookVerificationError(ValidationError):
    default_title = "Webhook rejected"


def verify_webhook(
    secret: str | bytes,
    headers: Mapping[str, str],
    body: bytes | str,
    tolerance: float = DEFAULT_TOLERANCE,
    *,
    now: float | None = None,
) -> Any:
    """The JSON payload of a delivery whose ``webhook-signature`` matches ``secret``
    (``whsec_...``) and whose ``webhook-timestamp`` is within ``tolerance`` seconds."""
    # The library signs; its own verify() is not used because its tolerance is fixed at
    # five minutes and a malformed signature header escapes it as ValueError/binascii.Error.
    try:
        signer = Webhook(secret)
    except (EmptyWebhookSecretError, binascii.Error, ValueError) as exc:
        raise WebhookVerificationError("The webhook secret is empty or not valid base64.") from exc
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get("webhook-id")
    timestamp = lowered.get("webhook-timestamp")
    signatures = lowered.get("webhook-signature")
    if not (msg_id and timestamp and signatures):
        raise WebhookVerificationError(
            "The delivery lacks webhook-id, webhook-timestamp or webhook-signature."
        )
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a number.") from None
    current = time.time() if now is None else now
    if abs(current - sent_at) > tolerance:
        raise WebhookVerificationError(
            f"The delivery's timestamp is {int(current - sent_at)} s off (tolerance {tolerance} s)."
        )
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    expected_header = signer.sign(
        msg_id=msg_id, timestamp=datetime.fromtimestamp(sent_at, tz=UTC), data=text
    )
    expected = base64.b64decode(expected_header.partition(",")[2])
    for candidate in signatures.split():
        version, _, encoded = candidate.partition(",")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(expected, given):
            try:
                return json.loads(text)
            except ValueError:
                raise WebhookVerificationError("The signed payload is not JSON.") from None
    raise WebhookVerificationError("No signature matches the secret.")


class WebhookDeduplicator:
    """Remembers recent ``webhook-id``s (bounded, with a time to live) in memory.

    Deliveries are retried until acknowledged, so a receiver sees some twice;
    ``first_time(id)`` is True once per id within ``ttl`` seconds.
    """

    def __init__(
        self,
        ttl: float = 24 * 3600,
        max_entries: int = 100_000,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_time(self, webhook_id: str) -> bool:
        now = self._clock()
        self._expire(now)
        if webhook_id in self._seen:
            return False
        self._seen[webhook_id] = now
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
        return True

    def _expire(self, now: float) -> None:
        while self._seen:
            oldest_id, seen_at = next(iter(self._seen.items()))
            if now - seen_at < self.ttl:
                return
            del self._seen[oldest_id]

    def __len__(self) -> int:
        return len(self._seen)
