"""Every DroplineClient method against the real server on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx
import pytest

from dropline.sdk.client import DroplineClient
from dropline.sdk.credentials import ApiKeyCredentials
from dropline.sdk.errors import (
    ConflictError,
    CursorExpiredError,
    IntegrityError,
    InvalidNameError,
    NotFoundError,
    OffsetMismatch,
    PreconditionFailedError,
    ValidationError,
)
from dropline.sdk.models import ChangeAction, Entry, EntryType
from dropline.sdk.retry import RetryPolicy
from dropline.sdk.wire import chunk_checksum
from tests.support.faults import FaultTransport, route
from tests.support.live import LiveServer


async def put(api: DroplineClient, path: str, data: bytes, **kwargs: str) -> Entry:
    session = await api.create_upload(
        path, len(data), sha256=hashlib.sha256(data).hexdigest(), data=data, **kwargs
    )
    assert session.complete and session.entry_id is not None
    return await api.get(session.entry_id)


@pytest.mark.anyio
async def test_me_names_user_tenant_and_scopes(api: DroplineClient) -> None:
    account = await api.me()
    assert account.email == "alice@example.com"
    assert account.tenant_name == "acme"
    assert {"files:read", "files:write"} <= set(account.scopes)


@pytest.mark.anyio
async def test_create_folder_is_idempotent_and_makes_parents(api: DroplineClient) -> None:
    made = await api.create_folder("/reports/2026/q3")
    assert made.type is EntryType.FOLDER and made.path == "/reports/2026/q3"
    again = await api.create_folder("/reports/2026/q3")
    assert again.id == made.id
    parent = await api.metadata("/reports/2026")
    assert made.parent_id == parent.id


@pytest.mark.anyio
async def test_metadata_get_and_not_found(api: DroplineClient) -> None:
    entry = await put(api, "/a.txt", b"hello")
    assert (await api.metadata("/a.txt")) == entry
    assert (await api.get(entry.id)).sha256 == hashlib.sha256(b"hello").hexdigest()
    with pytest.raises(NotFoundError) as caught:
        await api.metadata("/missing.txt")
    assert caught.value.problem_type == "not-found"
    with pytest.raises(NotFoundError):
        await api.get("00000000-0000-4000-8000-000000000000")


@pytest.mark.anyio
async def test_list_folder_pages_through_every_entry_in_name_order(api: DroplineClient) -> None:
    folder = await api.create_folder("/many")
    names = [f"f{i:03}.txt" for i in range(23)]
    for name in names:
        await put(api, f"/many/{name}", name.encode())
    transport_pages = [e.name async for e in api.iter_folder("/many", page_size=5)]
    assert transport_pages == names
    by_id = await api.list_folder(parent_id=folder.id, page_size=7)
    assert [e.name for e in by_id] == names
    root = await api.list_folder("/")
    assert [e.name for e in root] == ["many"]


@pytest.mark.anyio
async def test_list_folder_needs_exactly_one_selector(api: DroplineClient) -> None:
    with pytest.raises(ValidationError):
        await api.list_folder()
    with pytest.raises(ValidationError):
        await api.list_folder("/", parent_id="x")


@pytest.mark.anyio
async def test_move_with_and_without_if_rev(api: DroplineClient) -> None:
    entry = await put(api, "/draft.txt", b"v1")
    moved = await api.move(entry.id, "/final.txt", if_rev=entry.rev)
    assert moved.path == "/final.txt" and moved.id == entry.id and moved.rev != entry.rev
    with pytest.raises(PreconditionFailedError):
        await api.move(entry.id, "/other.txt", if_rev=entry.rev)  # stale rev
    assert (await api.get(entry.id)).path == "/final.txt"  # nothing changed
    renamed = await api.move(entry.id, "/docs/final.txt")
    assert renamed.path == "/docs/final.txt"


@pytest.mark.anyio
async def test_move_onto_a_taken_path_is_a_conflict(api: DroplineClient) -> None:
    a = await put(api, "/a.txt", b"a")
    await put(api, "/b.txt", b"b")
    with pytest.raises(ConflictError):
        await api.move(a.id, "/b.txt")


@pytest.mark.anyio
async def test_delete_honours_if_rev(api: DroplineClient) -> None:
    entry = await put(api, "/gone.txt", b"x")
    moved = await api.move(entry.id, "/gone2.txt")
    with pytest.raises(PreconditionFailedError):
        await api.delete(entry.id, if_rev=entry.rev)
    await api.delete(entry.id, if_rev=moved.rev)
    with pytest.raises(NotFoundError):
        await api.get(entry.id)


@pytest.mark.anyio
async def test_lost_delete_answer_counts_as_deleted(
    api: DroplineClient, transport: FaultTransport
) -> None:
    entry = await put(api, "/lost.txt", b"x")
    # The server deletes it, but the answer never arrives; the replay finds nothing.
    transport.inject(route("DELETE", "/api/v1/files/"), forward_first=True, exc=httpx.ReadError)
    await api.delete(entry.id)
    assert transport.count("DELETE") == 2
    with pytest.raises(NotFoundError):
        await api.get(entry.id)
    with pytest.raises(NotFoundError):
        await api.delete(entry.id)  # a plain second delete still says so


@pytest.mark.anyio
async def test_lost_move_answer_is_not_replayed(
    api: DroplineClient, transport: FaultTransport
) -> None:
    entry = await put(api, "/m.txt", b"x")
    transport.inject(route("PATCH", "/api/v1/files/"), forward_first=True, exc=httpx.ReadError)
    with pytest.raises(Exception) as caught:
        await api.move(entry.id, "/n.txt", if_rev=entry.rev)
    assert getattr(caught.value, "retryable", False)
    assert transport.count("PATCH") == 1
    assert (await api.get(entry.id)).path == "/n.txt"


@pytest.mark.anyio
async def test_invalid_names_are_refused(api: DroplineClient) -> None:
    with pytest.raises(InvalidNameError):
        await api.create_folder("/bad\x00name")
    with pytest.raises(InvalidNameError):
        await api.create_upload("/a/../b.txt", 1)


@pytest.mark.anyio
async def test_change_feed_pages_and_latest_cursor(api: DroplineClient) -> None:
    start = await api.latest_cursor()
    a = await put(api, "/c1.txt", b"1")
    await api.move(a.id, "/c2.txt")
    await api.delete(a.id)
    page = await api.changes(start)
    actions = [(c.action, c.entry.path) for c in page.changes]
    assert actions == [
        (ChangeAction.CREATED, "/c1.txt"),
        (ChangeAction.MOVED, "/c2.txt"),
        (ChangeAction.DELETED, "/c2.txt"),
    ]
    assert page.changes[1].old_path == "/c1.txt"
    assert [c.seq for c in page.changes] == sorted(c.seq for c in page.changes)
    small = await api.changes(start, limit=2)
    assert len(small.changes) == 2 and small.has_more
    rest = await api.changes(small.cursor)
    assert [c.seq for c in rest.changes] == [page.changes[2].seq]
    from_start = await api.changes()
    assert len(from_start.changes) >= 3
    assert (await api.changes(page.cursor)).changes == ()


@pytest.mark.anyio
async def test_wait_changes_returns_as_soon_as_something_changes(api: DroplineClient) -> None:
    cursor = await api.latest_cursor()
    waiting = asyncio.create_task(api.wait_changes(cursor, timeout=30))
    await asyncio.sleep(0.2)
    assert not waiting.done()
    await put(api, "/wake.txt", b"up")
    page = await asyncio.wait_for(waiting, 20)
    assert [c.entry.path for c in page.changes] == ["/wake.txt"]


@pytest.mark.anyio
async def test_wait_changes_times_out_with_an_empty_page(api: DroplineClient) -> None:
    cursor = await api.latest_cursor()
    page = await api.wait_changes(cursor, timeout=1)
    assert page.changes == ()
    assert page.cursor == cursor


@pytest.mark.anyio
async def test_wait_changes_outlives_the_default_http_timeout(
    live_server: LiveServer, api_key: str
) -> None:
    # A read timeout shorter than the long-poll must not cut the poll off. (The client's
    # timeout also covers latest_cursor: 2 s leaves room for a busy machine there.)
    async with DroplineClient(
        live_server.url, ApiKeyCredentials(api_key), timeout=2.0, retry=RetryPolicy(attempts=1)
    ) as client:
        cursor = await client.latest_cursor()
        page = await client.wait_changes(cursor, timeout=4)
    assert page.changes == ()


@pytest.mark.anyio
async def test_malformed_cursor_is_a_validation_error(api: DroplineClient) -> None:
    with pytest.raises(ValidationError) as caught:
        await api.changes("not-a-cursor")
    assert caught.value.problem_type == "bad-request"


@pytest.mark.anyio
async def test_pruned_cursor_is_cursor_expired(
    live_server: LiveServer, api: DroplineClient
) -> None:
    old = await api.latest_cursor()
    await put(api, "/old.txt", b"x")
    # The server's own retention pruning, run as if 91 days had passed.
    live_server.app.state.changes.prune(now=time.time() + 91 * 86400)  # type: ignore[attr-defined]
    with pytest.raises(CursorExpiredError) as caught:
        await api.changes(old)
    assert not caught.value.retryable
    with pytest.raises(CursorExpiredError):
        await api.wait_changes(old, timeout=1)
    fresh = await api.latest_cursor()
    assert (await api.changes(fresh)).changes == ()


@pytest.mark.anyio
async def test_tus_primitives_upload_in_chunks(api: DroplineClient) -> None:
    data = bytes(range(256)) * 40
    session = await api.create_upload(
        "/chunks.bin", len(data), sha256=hashlib.sha256(data).hexdigest(), mtime=1700000000.5
    )
    assert session.offset == 0 and not session.complete
    assert await api.upload_offset(session.url) == 0
    first = await api.append(session.url, 0, data[:4000])
    assert first.offset == 4000 and not first.complete
    with pytest.raises(OffsetMismatch):
        await api.append(session.url, 0, data[4000:])
    status = await api.upload_status(session.url)
    assert status.offset == 4000 and status.length == len(data)
    last = await api.append(session.url, 4000, memoryview(data)[4000:])
    assert last.complete and last.offset == len(data)
    entry = await api.get(str(last.entry_id))
    assert entry.rev == last.rev and entry.size == len(data) and entry.mtime == 1700000000.5
    assert (await api.upload_status(session.url)).entry_id == entry.id  # a later HEAD says so


@pytest.mark.anyio
async def test_corrupt_chunk_is_discarded(api: DroplineClient) -> None:
    session = await api.create_upload("/c.bin", 10)
    with pytest.raises(IntegrityError) as caught:
        await api.append(session.url, 0, b"0123456789", chunk_checksum(b"something else"))
    assert caught.value.problem_type == "checksum-mismatch"
    assert await api.upload_offset(session.url) == 0


@pytest.mark.anyio
async def test_wrong_whole_file_hash_publishes_nothing(api: DroplineClient) -> None:
    with pytest.raises(IntegrityError) as caught:
        await api.create_upload("/lie.txt", 3, sha256="0" * 64, data=b"abc")
    assert caught.value.problem_type == "integrity"
    with pytest.raises(NotFoundError):
        await api.metadata("/lie.txt")


@pytest.mark.anyio
async def test_if_rev_none_refuses_to_overwrite(api: DroplineClient) -> None:
    await put(api, "/once.txt", b"first")
    with pytest.raises(PreconditionFailedError):
        await put(api, "/once.txt", b"second", if_rev="none")
    entry = await api.metadata("/once.txt")
    newer = await put(api, "/once.txt", b"second", if_rev=entry.rev)
    assert newer.id == entry.id and newer.rev != entry.rev


@pytest.mark.anyio
async def test_zero_length_upload_is_published_by_the_post(api: DroplineClient) -> None:
    session = await api.create_upload("/empty", 0, sha256=hashlib.sha256(b"").hexdigest())
    assert session.complete
    assert (await api.get(str(session.entry_id))).size == 0


@pytest.mark.anyio
async def test_terminate_upload_and_terminating_again(api: DroplineClient) -> None:
    session = await api.create_upload("/t.bin", 100)
    await api.terminate_upload(session.url)
    with pytest.raises(NotFoundError):
        await api.upload_offset(session.url)
    await api.terminate_upload(session.url)  # already gone: fine


@pytest.mark.anyio
async def test_open_content_whole_and_ranged(api: DroplineClient) -> None:
    data = b"0123456789" * 1000
    entry = await put(api, "/d.bin", data)
    async with api.open_content(entry.id) as stream:
        body = b"".join([c async for c in stream.chunks()])
        assert stream.status == 200 and not stream.resumed
        assert stream.rev == entry.rev and stream.sha256 == entry.sha256
    assert body == data
    async with api.open_content(entry.id, start=9000, if_range=entry.rev) as stream:
        tail = b"".join([c async for c in stream.chunks()])
        assert stream.resumed and stream.offset == 9000 and stream.total == len(data)
    assert tail == data[9000:]


@pytest.mark.anyio
async def test_stale_if_range_sends_the_whole_file(api: DroplineClient) -> None:
    old = await put(api, "/r.bin", b"old content")
    new = await put(api, "/r.bin", b"new content!", if_rev=old.rev)
    async with api.open_content(new.id, start=4, if_range=old.rev) as stream:
        body = b"".join([c async for c in stream.chunks()])
        assert not stream.resumed and stream.offset == 0 and stream.rev == new.rev
    assert body == b"new content!"


@pytest.mark.anyio
async def test_tenants_never_see_each_other(live_server: LiveServer, api: DroplineClient) -> None:
    mine = await put(api, "/secret.txt", b"mine")
    other_key = live_server.new_key(tenant="globex", email="mallory@example.com")
    async with DroplineClient(live_server.url, ApiKeyCredentials(other_key)) as other:
        with pytest.raises(NotFoundError):
            await other.get(mine.id)
        with pytest.raises(NotFoundError):
            await other.metadata("/secret.txt")
        assert await other.list_folder("/") == []


@pytest.mark.anyio
async def test_credentials_are_never_sent_to_another_origin(api: DroplineClient) -> None:
    with pytest.raises(ValidationError, match="refusing to send credentials"):
        await api.upload_offset("http://evil.example/api/v1/uploads/x")


@pytest.mark.anyio
async def test_connection_pool_is_reused(live_server: LiveServer, api_key: str) -> None:
    opened: list[str] = []

    class Counting(httpx.AsyncHTTPTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            response = await super().handle_async_request(request)
            opened.append(str(response.extensions.get("network_stream")))
            return response

    async with DroplineClient(
        live_server.url, ApiKeyCredentials(api_key), transport=Counting()
    ) as client:
        for _ in range(10):
            await client.me()
    assert len(opened) == 10
    assert len(set(opened)) == 1  # one keep-alive connection served all ten


@pytest.mark.anyio
async def test_a_base_url_with_a_path_prefix_is_kept() -> None:
    # A server published under https://host/dropline: no request may reach a server,
    # so every one is answered 404 by the transport and only the paths are checked.
    transport = FaultTransport()
    transport.inject(lambda _r: True, times=100, status=404, slug="not-found")
    async with DroplineClient(
        "http://127.0.0.1:9/dropline",
        ApiKeyCredentials("dlk_x"),
        transport=transport,
        retry=RetryPolicy(attempts=1),
    ) as client:
        for call in (
            client.me(),
            client.upload_offset("/dropline/api/v1/uploads/abc"),  # Location with the prefix
            client.upload_offset("/api/v1/uploads/def"),  # Location without it
            client.upload_offset("http://127.0.0.1:9/dropline/api/v1/uploads/ghi"),
        ):
            with pytest.raises(NotFoundError):
                await call
    assert [p for _m, p in transport.seen] == [
        "/dropline/api/v1/me",
        "/dropline/api/v1/uploads/abc",
        "/dropline/api/v1/uploads/def",
        "/dropline/api/v1/uploads/ghi",
    ]
