"""The SDK's batch upload against the real server: outcomes per file, grouping, and
answers lost on the way back."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest

import dropline.server.uploads.batch
from dropline.sdk.batch import BatchItem, upload_batch
from dropline.sdk.client import DroplineClient
from dropline.sdk.credentials import ApiKeyCredentials
from dropline.sdk.errors import (
    AuthenticationError,
    IntegrityError,
    InvalidNameError,
    PreconditionFailedError,
    TooLargeError,
    ValidationError,
)
from dropline.sdk.models import Entry
from dropline.sdk.retry import RetryPolicy
from tests.support.faults import FaultTransport, route
from tests.support.live import LiveServer

FAST = RetryPolicy(attempts=4, initial=0.01, maximum=0.05)
BATCH = route("POST", "/api/v1/uploads/batch")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def read_remote(api: DroplineClient, entry: Entry) -> bytes:
    async with api.open_content(entry.id) as stream:
        return b"".join([c async for c in stream.chunks()])


def entries(outcomes: list[Entry | Exception]) -> list[Entry]:
    assert all(isinstance(o, Entry) for o in outcomes), outcomes
    return [o for o in outcomes if isinstance(o, Entry)]


@pytest.mark.anyio
async def test_many_files_go_up_in_a_few_requests(
    api: DroplineClient, transport: FaultTransport
) -> None:
    datas = [os.urandom(1000) + i.to_bytes(4, "big") for i in range(450)]
    items = [
        BatchItem(f"/many/d{i % 7}/f{i:03d}.bin", d, mtime=1_700_000_000.5 + i)
        for i, d in enumerate(datas)
    ]
    told: list[int] = []
    outcomes = await upload_batch(api, items, on_result=lambda i, _o: told.append(i))
    got = entries(outcomes)
    assert [e.path for e in got] == [i.path for i in items]
    assert [e.sha256 for e in got] == [sha(d) for d in datas]
    assert got[3].mtime == 1_700_000_003.5
    assert sorted(told) == list(range(450))
    assert transport.count("POST", "/api/v1/uploads/batch") == 3  # 200 + 200 + 50
    assert await read_remote(api, got[123]) == datas[123]
    assert (await api.metadata("/many/d1/f001.bin")).id == got[1].id


@pytest.mark.anyio
async def test_requests_are_cut_by_size_too(api: DroplineClient, transport: FaultTransport) -> None:
    items = [BatchItem(f"/sized/{i}.bin", os.urandom(3000)) for i in range(10)]
    entries(await upload_batch(api, items, bytes_per_request=7000, concurrency=3))
    assert transport.count("POST", "/api/v1/uploads/batch") == 5  # two files a request


@pytest.mark.anyio
async def test_each_file_fails_on_its_own(api: DroplineClient) -> None:
    kept = await upload_batch(api, [BatchItem("/own/kept.txt", b"v1")])
    rev = entries(kept)[0].rev
    items = [
        BatchItem("/own/ok.txt", b"fine"),
        BatchItem("/own/../escape.txt", b"hostile"),
        BatchItem("/own/lie.txt", b"the bytes", sha256=sha(b"other bytes")),
        BatchItem("/own/kept.txt", b"v2", if_rev="0123456789abcdef"),
        BatchItem("/own/new.txt", b"n", if_rev="none"),
        BatchItem("/own/huge.bin", b"x" * (dropline.server.uploads.batch.MAX_BYTES + 1)),
    ]
    outcomes = await upload_batch(api, items)
    assert isinstance(outcomes[0], Entry)
    assert isinstance(outcomes[1], InvalidNameError) and outcomes[1].status == 400
    assert isinstance(outcomes[2], IntegrityError) and outcomes[2].problem_type == "integrity"
    assert isinstance(outcomes[3], PreconditionFailedError)
    assert isinstance(outcomes[4], Entry)
    assert isinstance(outcomes[5], TooLargeError)
    assert not outcomes[3].retryable
    assert (await api.metadata("/own/kept.txt")).rev == rev


@pytest.mark.anyio
async def test_a_lost_answer_is_settled_by_looking_not_by_sending_again(
    api: DroplineClient, transport: FaultTransport
) -> None:
    await upload_batch(api, [BatchItem("/lost/old.txt", b"old")])
    rev = (await api.metadata("/lost/old.txt")).rev
    items = [
        BatchItem("/lost/a.txt", b"a", if_rev="none"),
        BatchItem("/lost/old.txt", b"new", if_rev=rev),
        BatchItem("/lost/b.txt", b"b"),
    ]
    # The server publishes all three; the answer never arrives.
    transport.inject(BATCH, forward_first=True, exc=httpx.ReadTimeout)
    cursor = await api.latest_cursor()
    got = entries(await upload_batch(api, items))
    assert [e.path for e in got] == ["/lost/a.txt", "/lost/old.txt", "/lost/b.txt"]
    assert transport.count("POST", "/api/v1/uploads/batch") == 2  # the first batch, the lost one
    changes = (await api.changes(cursor)).changes
    assert [(c.action.value, c.entry.path) for c in changes] == [
        ("created", "/lost/a.txt"),
        ("modified", "/lost/old.txt"),
        ("created", "/lost/b.txt"),
    ]  # published once each, never twice


@pytest.mark.anyio
async def test_a_lost_request_that_never_arrived_is_sent_again(
    api: DroplineClient, transport: FaultTransport
) -> None:
    items = [BatchItem("/again/a.txt", b"a", if_rev="none"), BatchItem("/again/b.txt", b"b")]
    transport.inject(BATCH, exc=httpx.ReadTimeout)  # lost before the server saw it
    got = entries(await upload_batch(api, items))
    assert [e.path for e in got] == ["/again/a.txt", "/again/b.txt"]
    assert transport.count("POST", "/api/v1/uploads/batch") == 2


@pytest.mark.anyio
async def test_an_unsent_request_is_retried_at_once(
    api: DroplineClient, transport: FaultTransport
) -> None:
    transport.inject(BATCH, exc=httpx.ConnectError)
    entries(await upload_batch(api, [BatchItem("/conn/a.txt", b"a", if_rev="none")]))
    assert transport.count("GET") == 0  # nothing could have arrived: no need to look


@pytest.mark.anyio
async def test_a_refused_request_is_every_files_outcome(
    live_server: LiveServer, api: DroplineClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    items = [BatchItem(f"/whole/{i}.txt", b"x" * 100) for i in range(3)]
    async with DroplineClient(
        live_server.url, ApiKeyCredentials("dlk_nope_nope"), retry=FAST
    ) as bad:
        outcomes = await upload_batch(bad, items)
    assert all(isinstance(o, AuthenticationError) for o in outcomes)
    monkeypatch.setattr(
        dropline.server.uploads.batch, "MAX_BYTES", 250
    )  # the server's limit, shrunk
    outcomes = await upload_batch(api, items)
    assert all(isinstance(o, TooLargeError) and o.status == 413 for o in outcomes)


@pytest.mark.anyio
async def test_another_tenants_revs_mean_nothing(
    live_server: LiveServer, api: DroplineClient
) -> None:
    mine = entries(await upload_batch(api, [BatchItem("/t/name.txt", b"alice")]))[0]
    key = live_server.new_key(tenant="globex", email="mallory@example.com")
    async with DroplineClient(live_server.url, ApiKeyCredentials(key), retry=FAST) as mallory:
        outcomes = await upload_batch(
            mallory,
            [BatchItem("/t/name.txt", b"mallory", if_rev=mine.rev), BatchItem("/t/x.txt", b"m")],
        )
        assert isinstance(outcomes[0], PreconditionFailedError)
        assert isinstance(outcomes[1], Entry)
    assert await read_remote(api, await api.metadata("/t/name.txt")) == b"alice"
    assert [e.name for e in await api.list_folder("/t")] == ["name.txt"]


@pytest.mark.anyio
async def test_arguments_are_checked(api: DroplineClient) -> None:
    with pytest.raises(ValidationError):
        await upload_batch(api, [BatchItem("/a", b"")], files_per_request=0)
    with pytest.raises(ValidationError):
        await upload_batch(api, [BatchItem("/a", b"")], concurrency=0)
    assert await upload_batch(api, []) == []
