"""Transfers and webhooks in the SDK: :class:`Transfers` and :class:`Webhooks` wrap a
:class:`dropline.sdk.client.DroplineClient` (its retries, circuit breaker and error mapping).

    async with DroplineClient(url, ApiKeyCredentials(key)) as client:
        transfer = await Transfers(client).start([file_id], to_inbox("bob@example.com"))
        transfer = await Transfers(client).wait(transfer.id)

Starting a transfer always sends an ``Idempotency-Key`` (a fresh one unless given),
so the POST is safe to retry: a replay gets the first transfer back, never a second.
"""

from __future__ import annotations

import asyncio
import builtins
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from dropline.sdk.client import DroplineClient
from dropline.sdk.errors import DroplineError, ProtocolError, ValidationError

API = "/api/v1"
FINAL_STATES = frozenset({"completed", "failed", "cancelled", "expired"})
EVENT_TYPES = (
    "file.uploaded",
    "file.deleted",
    "file.moved",
    "file.restored",
    "upload.failed",
    "transfer.completed",
    "transfer.failed",
    "auth.failed",
    "policy.violated",
)


class TransferWaitTimeout(DroplineError):
    default_title = "Transfer still running"
    default_retryable = True


def _id(value: str) -> str:
    if not value:
        raise ValidationError("an id is required")
    return quote(value, safe="")


def _doc(response: Any) -> dict[str, Any]:
    try:
        doc = response.json()
    except ValueError:
        raise ProtocolError("the server's answer is not JSON") from None
    if not isinstance(doc, dict):
        raise ProtocolError("the server's answer is not a JSON object")
    return doc


def _get(doc: Mapping[str, Any], record: str, name: str, kinds: tuple[type, ...]) -> Any:
    if name not in doc:
        raise ProtocolError(f"{record} is missing the field {name!r}")
    value = doc[name]
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ProtocolError(f"{record}.{name} has the wrong type ({type(value).__name__})")
    return value


_NUMBER = (int, float)
_OPT_NUMBER = (int, float, type(None))


# -- destinations ---------------------------------------------------------------------


def to_folder(path: str, *, mode: str = "copy", on_conflict: str = "rename") -> dict[str, Any]:
    """Copy (or ``mode="move"``) into one of your folders; ``on_conflict`` is ``rename``
    (``name (2).ext``), ``overwrite`` (a new revision) or ``fail``."""
    return {"type": "folder", "path": path, "mode": mode, "on_conflict": on_conflict}


def to_inbox(recipient: str) -> dict[str, Any]:
    """A copy into a colleague's ``/Inbox`` (same tenant), by email address."""
    return {"type": "inbox", "recipient": recipient}


def as_link(
    *,
    expires_in: int | None = None,
    max_downloads: int | None = None,
    password: str | None = None,
    allowed_cidrs: Sequence[str] | None = None,
) -> dict[str, Any]:
    """A share link; the URL is in the finished transfer's ``result["url"]``."""
    dest: dict[str, Any] = {"type": "link"}
    if expires_in is not None:
        dest["expires_in"] = expires_in
    if max_downloads is not None:
        dest["max_downloads"] = max_downloads
    if password is not None:
        dest["password"] = password
    if allowed_cidrs is not None:
        dest["allowed_cidrs"] = list(allowed_cidrs)
    return dest


def to_endpoint(
    url: str, *, method: str = "PUT", headers: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Push to an HTTPS endpoint; ``{name}`` in ``url`` becomes each file's name."""
    return {"type": "push", "url": url, "method": method, "headers": dict(headers or {})}


# -- records --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TransferError:
    code: str | None
    message: str


@dataclass(frozen=True, slots=True)
class Transfer:
    id: str
    state: str
    kind: str
    file_ids: tuple[str, ...]
    destination: dict[str, Any]
    bytes_total: int
    bytes_done: int
    files_total: int
    files_done: int
    error: TransferError | None
    result: dict[str, Any]
    attempts: int
    created_at: float
    finished_at: float | None

    @property
    def done(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def link(self) -> str | None:
        """A share-link transfer's URL, once made."""
        url = self.result.get("url")
        return url if isinstance(url, str) else None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Transfer:
        r = "Transfer"
        error = _get(doc, r, "error", (dict, type(None)))
        file_ids = _get(doc, r, "file_ids", (list,))
        return cls(
            id=_get(doc, r, "id", (str,)),
            state=_get(doc, r, "state", (str,)),
            kind=_get(doc, r, "kind", (str,)),
            file_ids=tuple(str(f) for f in file_ids),
            destination=_get(doc, r, "destination", (dict,)),
            bytes_total=_get(doc, r, "bytes_total", (int,)),
            bytes_done=_get(doc, r, "bytes_done", (int,)),
            files_total=_get(doc, r, "files_total", (int,)),
            files_done=_get(doc, r, "files_done", (int,)),
            error=None
            if error is None
            else TransferError(code=error.get("code"), message=str(error.get("message", ""))),
            result=_get(doc, r, "result", (dict,)),
            attempts=_get(doc, r, "attempts", (int,)),
            created_at=float(_get(doc, r, "created_at", _NUMBER)),
            finished_at=_get(doc, r, "finished_at", _OPT_NUMBER),
        )


@dataclass(frozen=True, slots=True)
class WebhookSubscription:
    id: str
    url: str
    description: str
    event_types: tuple[str, ...]
    active: bool
    disabled_reason: str | None
    previous_secret_expires_at: float | None
    # Only on creation and rotation: the signing secret (``whsec_...``), shown that once.
    secret: str | None = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> WebhookSubscription:
        r = "Webhook"
        return cls(
            id=_get(doc, r, "id", (str,)),
            url=_get(doc, r, "url", (str,)),
            description=_get(doc, r, "description", (str,)),
            event_types=tuple(_get(doc, r, "event_types", (list,))),
            active=_get(doc, r, "active", (bool,)),
            disabled_reason=_get(doc, r, "disabled_reason", (str, type(None))),
            previous_secret_expires_at=_get(doc, r, "previous_secret_expires_at", _OPT_NUMBER),
            secret=doc.get("secret") if isinstance(doc.get("secret"), str) else None,
        )


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    """One message to one subscription; ``id`` is the ``webhook-id`` its receiver sees."""

    id: str
    event_type: str
    state: str
    attempts: int
    last_status_code: int | None
    last_latency_ms: float | None
    last_error: str | None
    created_at: float
    delivered_at: float | None
    attempt_log: tuple[dict[str, Any], ...] = ()

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> WebhookDelivery:
        r = "WebhookDelivery"
        return cls(
            id=_get(doc, r, "id", (str,)),
            event_type=_get(doc, r, "event_type", (str,)),
            state=_get(doc, r, "state", (str,)),
            attempts=_get(doc, r, "attempts", (int,)),
            last_status_code=_get(doc, r, "last_status_code", (int, type(None))),
            last_latency_ms=_get(doc, r, "last_latency_ms", _OPT_NUMBER),
            last_error=_get(doc, r, "last_error", (str, type(None))),
            created_at=float(_get(doc, r, "created_at", _NUMBER)),
            delivered_at=_get(doc, r, "delivered_at", _OPT_NUMBER),
            attempt_log=tuple(doc.get("attempt_log") or ()),
        )


# -- calls ----------------------------------------------------------------------------


class Transfers:
    def __init__(self, client: DroplineClient) -> None:
        self.client = client

    async def start(
        self,
        file_ids: Sequence[str],
        destination: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
    ) -> Transfer:
        """Queue a transfer (the server answers 202 at once; see :meth:`wait`)."""
        key = idempotency_key or uuid.uuid4().hex
        response = await self.client._request(
            "POST",
            f"{API}/transfers",
            json={"file_ids": list(file_ids), "destination": dict(destination)},
            headers={"Idempotency-Key": key},
            idempotent=True,  # the key makes a replay return the first transfer
        )
        return Transfer.from_json(_doc(response))

    async def get(self, transfer_id: str) -> Transfer:
        response = await self.client._request("GET", f"{API}/transfers/{_id(transfer_id)}")
        return Transfer.from_json(_doc(response))

    async def list(self, *, state: str | None = None, limit: int = 50) -> list[Transfer]:
        params: dict[str, str | int] = {"limit": limit}
        if state is not None:
            params["state"] = state
        response = await self.client._request("GET", f"{API}/transfers", params=params)
        rows = _get(_doc(response), "TransferList", "transfers", (list,))
        return [Transfer.from_json(row) for row in rows]

    async def cancel(self, transfer_id: str) -> Transfer:
        """Cancel a queued or running transfer, or revoke a share link."""
        response = await self.client._request("DELETE", f"{API}/transfers/{_id(transfer_id)}")
        return Transfer.from_json(_doc(response))

    async def wait(
        self, transfer_id: str, *, timeout: float = 300, interval: float = 1.0
    ) -> Transfer:
        """Poll until the transfer is completed, failed, cancelled or expired.

        Webhooks (``transfer.completed`` / ``transfer.failed``) tell the same without
        polling; this is for scripts."""
        deadline = time.monotonic() + timeout
        while True:
            transfer = await self.get(transfer_id)
            if transfer.done:
                return transfer
            if time.monotonic() >= deadline:
                raise TransferWaitTimeout(
                    f"transfer {transfer_id} is still {transfer.state} after {timeout:g} s"
                )
            await asyncio.sleep(interval)


class Webhooks:
    def __init__(self, client: DroplineClient) -> None:
        self.client = client

    async def create(
        self,
        url: str,
        event_types: Sequence[str],
        *,
        description: str = "",
        active: bool = True,
    ) -> WebhookSubscription:
        """Subscribe ``url``; keep the returned ``secret``: it is never shown again."""
        response = await self.client._request(
            "POST",
            f"{API}/webhooks",
            json={
                "url": url,
                "event_types": list(event_types),
                "description": description,
                "active": active,
            },
            idempotent=False,
        )
        return WebhookSubscription.from_json(_doc(response))

    async def list(self) -> list[WebhookSubscription]:
        response = await self.client._request("GET", f"{API}/webhooks")
        rows = _get(_doc(response), "WebhookList", "webhooks", (list,))
        return [WebhookSubscription.from_json(row) for row in rows]

    async def get(self, webhook_id: str) -> WebhookSubscription:
        response = await self.client._request("GET", f"{API}/webhooks/{_id(webhook_id)}")
        return WebhookSubscription.from_json(_doc(response))

    async def update(
        self,
        webhook_id: str,
        *,
        url: str | None = None,
        event_types: Sequence[str] | None = None,
        description: str | None = None,
        active: bool | None = None,
    ) -> WebhookSubscription:
        body: dict[str, Any] = {}
        if url is not None:
            body["url"] = url
        if event_types is not None:
            body["event_types"] = list(event_types)
        if description is not None:
            body["description"] = description
        if active is not None:
            body["active"] = active
        response = await self.client._request(
            "PATCH", f"{API}/webhooks/{_id(webhook_id)}", json=body
        )
        return WebhookSubscription.from_json(_doc(response))

    async def delete(self, webhook_id: str) -> None:
        await self.client._request("DELETE", f"{API}/webhooks/{_id(webhook_id)}")

    async def rotate_secret(
        self, webhook_id: str, *, overlap_seconds: int | None = None
    ) -> WebhookSubscription:
        """A new secret (in ``.secret``); the old one keeps signing beside it for the overlap."""
        body = {} if overlap_seconds is None else {"overlap_seconds": overlap_seconds}
        response = await self.client._request(
            "POST",
            f"{API}/webhooks/{_id(webhook_id)}/rotate-secret",
            json=body,
            idempotent=False,
        )
        return WebhookSubscription.from_json(_doc(response))

    async def ping(self, webhook_id: str) -> WebhookDelivery:
        response = await self.client._request(
            "POST", f"{API}/webhooks/{_id(webhook_id)}/ping", idempotent=False
        )
        return WebhookDelivery.from_json(_doc(response))

    async def deliveries(
        self, webhook_id: str, *, state: str | None = None, limit: int = 50
    ) -> builtins.list[WebhookDelivery]:
        """The delivery log, newest first."""
        params: dict[str, str | int] = {"limit": limit}
        if state is not None:
            params["state"] = state
        response = await self.client._request(
            "GET", f"{API}/webhooks/{_id(webhook_id)}/deliveries", params=params
        )
        rows = _get(_doc(response), "DeliveryList", "deliveries", (list,))
        return [WebhookDelivery.from_json(row) for row in rows]

    async def delivery(self, webhook_id: str, delivery_id: str) -> WebhookDelivery:
        """One delivery with every attempt (``attempt_log``)."""
        response = await self.client._request(
            "GET", f"{API}/webhooks/{_id(webhook_id)}/deliveries/{_id(delivery_id)}"
        )
        return WebhookDelivery.from_json(_doc(response))

    async def redeliver(self, webhook_id: str, delivery_id: str) -> WebhookDelivery:
        response = await self.client._request(
            "POST",
            f"{API}/webhooks/{_id(webhook_id)}/deliveries/{_id(delivery_id)}/redeliver",
            idempotent=False,
        )
        return WebhookDelivery.from_json(_doc(response))


__all__ = [
    "EVENT_TYPES",
    "FINAL_STATES",
    "Transfer",
    "TransferError",
    "TransferWaitTimeout",
    "Transfers",
    "WebhookDelivery",
    "WebhookSubscription",
    "Webhooks",
    "as_link",
    "to_endpoint",
    "to_folder",
    "to_inbox",
]
