"""The SDK's transfers and webhooks (dropline.sdk.client_ops) against the real server, and the
receiver helper (dropline.sdk.webhooks) checking real deliveries."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest

from dropline.sdk.client import DroplineClient
from dropline.sdk.client_ops import (
    Transfers,
    TransferWaitTimeout,
    Webhooks,
    as_link,
    to_endpoint,
    to_folder,
    to_inbox,
)
from dropline.sdk.credentials import ApiKeyCredentials
from dropline.sdk.errors import ConflictError, NotFoundError, ValidationError
from dropline.sdk.models import Entry
from dropline.sdk.retry import RetryPolicy
from dropline.sdk.webhooks import WebhookDeduplicator, WebhookVerificationError, verify_webhook
from tests.support.live import LiveServer
from tests.support.receiver import Receiver

FAST = RetryPolicy(attempts=3, initial=0.01, maximum=0.05)
SCOPES = ("files:read", "files:write", "transfers", "webhooks")


@pytest.fixture
async def api(ops_server: LiveServer) -> AsyncIterator[DroplineClient]:
    key = ops_server.new_key(scopes=SCOPES)
    async with DroplineClient(ops_server.url, ApiKeyCredentials(key), retry=FAST) as client:
        yield client


async def put(api: DroplineClient, path: str, data: bytes) -> Entry:
    session = await api.create_upload(
        path, len(data), sha256=hashlib.sha256(data).hexdigest(), data=data
    )
    assert session.entry_id is not None
    return await api.get(session.entry_id)


@pytest.mark.anyio
async def test_start_and_wait_for_a_folder_copy(api: DroplineClient) -> None:
    transfers = Transfers(api)
    entry = await put(api, "/sdk/a.txt", b"via the sdk")
    started = await transfers.start([entry.id], to_folder("/sdk-copies"))
    assert started.kind == "folder" and started.bytes_total == len(b"via the sdk")
    done = await transfers.wait(started.id, timeout=30, interval=0.05)
    assert done.done and done.state == "completed"
    assert done.error is None
    copied = await api.metadata("/sdk-copies/a.txt")
    assert copied.sha256 == entry.sha256
    assert [t.id for t in await transfers.list(state="completed")] == [started.id]


@pytest.mark.anyio
async def test_the_same_idempotency_key_gives_the_same_transfer(api: DroplineClient) -> None:
    transfers = Transfers(api)
    entry = await put(api, "/sdk/b.txt", b"once")
    first = await transfers.start([entry.id], as_link(max_downloads=3), idempotency_key="job-1")
    second = await transfers.start([entry.id], as_link(max_downloads=3), idempotency_key="job-1")
    assert second.id == first.id
    done = await transfers.wait(first.id, timeout=30, interval=0.05)
    assert done.link is not None and "/s/" in done.link
    with pytest.raises(ConflictError):
        await transfers.start([entry.id], as_link(max_downloads=4), idempotency_key="job-1")


@pytest.mark.anyio
async def test_bad_transfers_raise_readable_errors(api: DroplineClient) -> None:
    transfers = Transfers(api)
    entry = await put(api, "/sdk/c.txt", b"c")
    with pytest.raises(ValidationError):
        await transfers.start([entry.id], to_inbox("nobody@example.com"))
    with pytest.raises(NotFoundError):
        await transfers.get("no-such-transfer")
    with pytest.raises(NotFoundError):
        await transfers.start(["no-such-file"], to_folder("/x"))


@pytest.mark.anyio
async def test_cancel_and_wait_timeout(api: DroplineClient) -> None:
    transfers = Transfers(api)
    dead = Receiver()
    dead.reserve_port()
    entry = await put(api, "/sdk/d.txt", b"d")
    started = await transfers.start([entry.id], to_endpoint(dead.url + "/{name}"))
    with pytest.raises(TransferWaitTimeout):
        await transfers.wait(started.id, timeout=0.01, interval=0.01)
    cancelled = await transfers.cancel(started.id)
    assert cancelled.state in ("cancelled", "running")
    done = await transfers.wait(started.id, timeout=30, interval=0.05)
    assert done.state == "cancelled"


@pytest.mark.anyio
async def test_webhook_lifecycle_with_the_receiver_helper(
    api: DroplineClient, receiver: Receiver
) -> None:
    hooks = Webhooks(api)
    created = await hooks.create(receiver.url, ["transfer.completed"], description="ERP")
    assert created.secret is not None and created.secret.startswith("whsec_")
    assert (await hooks.get(created.id)).secret is None
    assert [h.id for h in await hooks.list()] == [created.id]

    ping = await hooks.ping(created.id)
    request = (await asyncio.to_thread(receiver.wait_count, 1))[0]
    payload = verify_webhook(created.secret, request.headers, request.body)
    assert payload["type"] == "webhook.ping"
    seen = WebhookDeduplicator()
    assert seen.first_time(request.headers["webhook-id"])

    while (await hooks.delivery(created.id, ping.id)).state != "succeeded":
        await asyncio.sleep(0.05)
    await hooks.redeliver(created.id, ping.id)
    again = (await asyncio.to_thread(receiver.wait_count, 2))[1]
    verify_webhook(created.secret, again.headers, again.body)
    assert not seen.first_time(again.headers["webhook-id"])  # a repeat, handled once

    rotated = await hooks.rotate_secret(created.id, overlap_seconds=600)
    assert rotated.secret is not None and rotated.previous_secret_expires_at is not None
    await hooks.ping(created.id)
    third = (await asyncio.to_thread(receiver.wait_count, 3))[2]
    verify_webhook(created.secret, third.headers, third.body)
    verify_webhook(rotated.secret, third.headers, third.body)
    with pytest.raises(WebhookVerificationError):
        verify_webhook(rotated.secret, third.headers, third.body, now=0)  # far too old

    updated = await hooks.update(created.id, event_types=["file.uploaded"], active=False)
    assert updated.event_types == ("file.uploaded",) and not updated.active
    log = await hooks.deliveries(created.id)
    assert {d.id for d in log} >= {ping.id}
    await hooks.delete(created.id)
    with pytest.raises(NotFoundError):
        await hooks.get(created.id)


@pytest.mark.anyio
async def test_private_targets_are_refused_by_a_default_server(live_server: LiveServer) -> None:
    key = live_server.new_key(scopes=SCOPES)
    async with DroplineClient(live_server.url, ApiKeyCredentials(key), retry=FAST) as api:
        with pytest.raises(ValidationError) as refused:
            await Webhooks(api).create("https://127.0.0.1/hook", ["file.uploaded"])
        assert refused.value.problem_type == "target-refused"
