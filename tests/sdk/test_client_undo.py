"""The SDK's undo calls against the real server: revisions, an earlier revision's download,
restore, the trash (list, restore, purge) and the account's storage."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from dropline.sdk.client import DroplineClient
from dropline.sdk.credentials import ApiKeyCredentials
from dropline.sdk.errors import (
    ConflictError,
    NotFoundError,
    PreconditionFailedError,
    ProtocolError,
    UnavailableError,
)
from dropline.sdk.models import Entry, EntryType, Revision, TrashItem
from dropline.sdk.resumable import download_file
from tests.sdk.conftest import QUICK_RETRY
from tests.support.faults import FaultTransport, route
from tests.support.live import LiveServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    """Downloads hash in worker threads (asyncio.to_thread): asyncio only."""
    return "asyncio"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


async def put(api: DroplineClient, path: str, data: bytes, mtime: float | None = None) -> Entry:
    session = await api.create_upload(path, len(data), sha256=sha(data), mtime=mtime, data=data)
    assert session.complete and session.entry_id is not None
    return await api.get(session.entry_id)


async def three_versions(api: DroplineClient, path: str = "/notes.txt") -> list[Entry]:
    return [
        await put(api, path, f"version {n}\n".encode() * n, mtime=1_700_000_000.0 + n)
        for n in (1, 2, 3)
    ]


async def test_revisions_are_listed_newest_first_with_who_and_which_client(
    api: DroplineClient, live_server: LiveServer, api_key: str
) -> None:
    v1, v2, _v3 = await three_versions(api)
    async with DroplineClient(
        live_server.url, ApiKeyCredentials(api_key), user_agent="dropline-agent/9.9.9"
    ) as agent:
        v4 = await put(agent, "/notes.txt", b"from the agent\n")
    revisions = await api.revisions(v1.id)
    assert [r.rev for r in revisions][-2:] == [v2.rev, v1.rev]
    assert revisions[0].rev == v4.rev and revisions[0].current
    assert [r.current for r in revisions] == [True, False, False, False]
    assert [r.sha256 for r in revisions][1:] == [
        sha(b"version 3\n" * 3),
        sha(b"version 2\n" * 2),
        sha(b"version 1\n"),
    ]
    assert revisions[-1].size == len(b"version 1\n") and revisions[-1].mtime == 1_700_000_001.0
    assert revisions[0].client == "dropline-agent/9.9.9"
    assert revisions[1].client == "dropline-sdk/0.1"
    assert {r.user.email for r in revisions if r.user} == {"alice@example.com"}
    created = [r.created_at for r in revisions]
    assert created == sorted(created, reverse=True)


async def test_revisions_follow_the_cursor_through_every_page(
    api: DroplineClient, transport: FaultTransport
) -> None:
    v1, *_ = await three_versions(api)
    before = transport.count("GET", f"/api/v1/files/{v1.id}/revisions")
    paged = await api.revisions(v1.id, page_size=1)
    assert len(paged) == 3 and paged == await api.revisions(v1.id)
    assert transport.count("GET", f"/api/v1/files/{v1.id}/revisions") - before >= 3


async def test_an_earlier_revision_downloads_verified_by_its_own_hash(
    api: DroplineClient, tmp_path: Path
) -> None:
    v1, _v2, v3 = await three_versions(api)
    oldest = (await api.revisions(v3.id))[-1]
    dest = tmp_path / "old.txt"
    await download_file(api, v3, dest, rev=oldest)
    assert dest.read_bytes() == b"version 1\n"
    assert dest.stat().st_mtime == 1_700_000_001.0
    by_id = tmp_path / "by-id.txt"
    await download_file(api, v3, by_id, rev=v1.rev)  # the revision looked up by its id
    assert by_id.read_bytes() == b"version 1\n"
    current = tmp_path / "current.txt"
    await download_file(api, v3, current)
    assert current.read_bytes() == b"version 3\n" * 3
    assert not list(tmp_path.glob(".*partial"))


async def test_an_unknown_revision_is_not_found_and_nothing_is_written(
    api: DroplineClient, tmp_path: Path
) -> None:
    _v1, _v2, v3 = await three_versions(api)
    with pytest.raises(NotFoundError):
        await api.revision(v3.id, "no-such-rev")
    with pytest.raises(NotFoundError):
        await download_file(api, v3, tmp_path / "x.txt", rev="no-such-rev")
    with pytest.raises(NotFoundError):
        await api.restore_revision(v3.id, "no-such-rev")
    assert not (tmp_path / "x.txt").exists()
    assert len(await api.revisions(v3.id)) == 3


async def test_restore_publishes_the_old_content_as_a_new_revision(
    api: DroplineClient, tmp_path: Path
) -> None:
    v1, v2, v3 = await three_versions(api)
    restored = await api.restore_revision(v3.id, v1.rev, if_rev=v3.rev)
    assert restored.id == v1.id and restored.rev not in {v1.rev, v2.rev, v3.rev}
    assert (restored.sha256, restored.size, restored.mtime) == (v1.sha256, v1.size, v1.mtime)
    assert await api.metadata("/notes.txt") == restored
    revisions = await api.revisions(v1.id)
    assert [r.rev for r in revisions] == [restored.rev, v3.rev, v2.rev, v1.rev]
    await download_file(api, restored, tmp_path / "now.txt")
    assert (tmp_path / "now.txt").read_bytes() == b"version 1\n"
    # The current revision restored again: nothing changes.
    assert await api.restore_revision(v1.id, restored.rev) == restored
    # A stale If-Match: refused, and no revision is added.
    with pytest.raises(PreconditionFailedError):
        await api.restore_revision(v1.id, v2.rev, if_rev=v3.rev)
    assert len(await api.revisions(v1.id)) == 4


async def test_a_lost_restore_answer_is_not_replayed(
    api: DroplineClient, transport: FaultTransport
) -> None:
    v1, _v2, v3 = await three_versions(api)
    # The server restores it, but the answer never arrives: a replay would restore twice.
    lost = route("POST", f"/api/v1/files/{v1.id}/restore")
    transport.inject(lost, forward_first=True, exc=httpx.ReadError)
    with pytest.raises(UnavailableError):
        await api.restore_revision(v3.id, v1.rev)
    assert transport.count("POST", f"/api/v1/files/{v1.id}/restore") == 1
    assert len(await api.revisions(v1.id)) == 4  # done once, never twice


async def test_another_tenants_file_and_a_folder_are_not_found(
    api: DroplineClient, live_server: LiveServer
) -> None:
    mine = await put(api, "/private.txt", b"mine")
    folder = await api.create_folder("/a-folder")
    other_key = live_server.new_key(tenant="globex", email="eve@example.com")
    async with DroplineClient(
        live_server.url, ApiKeyCredentials(other_key), retry=QUICK_RETRY
    ) as eve:
        with pytest.raises(NotFoundError):
            await eve.revisions(mine.id)
        with pytest.raises(NotFoundError):
            await eve.restore_revision(mine.id, mine.rev)
        await api.delete(mine.id)
        (item,) = await api.trash()
        assert await eve.trash() == []
        with pytest.raises(NotFoundError):
            await eve.restore_from_trash(item.id)
        with pytest.raises(NotFoundError):
            await eve.purge_from_trash(item.id)
    with pytest.raises((NotFoundError, ConflictError)):
        await api.revisions(folder.id)
    assert [i.id for i in await api.trash()] == [item.id]


async def test_the_trash_lists_restores_and_purges(api: DroplineClient) -> None:
    a = await put(api, "/team/a.txt", b"alpha")
    await put(api, "/team/sub/one.txt", b"one")
    await put(api, "/team/sub/deeper/two.txt", b"two")
    await put(api, "/elsewhere/z.txt", b"zed")
    sub = await api.metadata("/team/sub")
    await api.delete(a.id)
    await api.delete(sub.id)
    z = await api.metadata("/elsewhere/z.txt")
    await api.delete(z.id)

    items = await api.trash(path="/team")
    assert [(i.path, i.type, i.files) for i in items] == [
        ("/team/sub", EntryType.FOLDER, 2),
        ("/team/a.txt", EntryType.FILE, 1),
    ]
    file_item = items[1]
    assert (file_item.sha256, file_item.size, file_item.name) == (sha(b"alpha"), 5, "a.txt")
    assert not file_item.path_taken and file_item.trashed_at <= items[0].trashed_at
    assert len(await api.trash()) == 3
    assert len(await api.trash(page_size=1)) == 3  # followed through the cursor
    since_sub = await api.trash(since=items[0].trashed_at)  # at that moment or later
    assert [i.path for i in since_sub] == ["/elsewhere/z.txt", "/team/sub"]
    before_sub = await api.trash(until=items[0].trashed_at)  # before that moment
    assert [i.path for i in before_sub] == ["/team/a.txt"]

    back = await api.restore_from_trash(file_item.id)
    assert (back.path, back.sha256) == ("/team/a.txt", sha(b"alpha"))
    assert await api.metadata("/team/a.txt") == back

    # Something new took the folder's place: restoring it needs a new path.
    await api.create_folder("/team/sub")
    (folder_item,) = await api.trash(path="/team")
    assert folder_item.path_taken
    with pytest.raises(ConflictError):
        await api.restore_from_trash(folder_item.id)
    moved = await api.restore_from_trash(folder_item.id, path="/team/sub (old)")
    assert moved.type is EntryType.FOLDER and moved.path == "/team/sub (old)"
    names = {e.name for e in await api.list_folder("/team/sub (old)")}
    assert names == {"one.txt", "deeper"}
    assert (await api.metadata("/team/sub (old)/deeper/two.txt")).sha256 == sha(b"two")
    assert await api.trash(path="/team") == []

    (gone,) = await api.trash()
    await api.purge_from_trash(gone.id)
    assert await api.trash() == []
    with pytest.raises(NotFoundError):
        await api.purge_from_trash(gone.id)
    with pytest.raises(NotFoundError):
        await api.restore_from_trash(gone.id)


async def test_a_lost_purge_answer_counts_as_purged(
    api: DroplineClient, transport: FaultTransport
) -> None:
    entry = await put(api, "/gone.txt", b"bye")
    await api.delete(entry.id)
    (item,) = await api.trash()
    lost = route("DELETE", f"/api/v1/trash/{item.id}")
    transport.inject(lost, forward_first=True, exc=httpx.ReadError)
    await api.purge_from_trash(item.id)
    assert transport.count("DELETE", f"/api/v1/trash/{item.id}") == 2
    assert await api.trash() == []


async def test_me_tells_what_current_files_versions_and_trash_take(api: DroplineClient) -> None:
    await three_versions(api)  # 10 + 20 + 30 bytes
    kept = await put(api, "/kept.bin", b"k" * 1000)
    doomed = await put(api, "/doomed.bin", b"d" * 500)
    await api.delete(doomed.id)
    storage = (await api.me()).storage
    assert storage is not None
    assert storage.current == 30 + kept.size
    assert storage.versions == 10 + 20
    assert storage.trash == 500
    assert storage.used == storage.current + storage.versions + storage.trash
    assert storage.quota is None or storage.quota > 0


def test_the_records_refuse_what_the_api_does_not_promise() -> None:
    revision = {
        "rev": "r1",
        "size": 3,
        "sha256": sha(b"abc"),
        "mtime": None,
        "created_at": 1.5,
        "user": None,
        "client": None,
        "current": True,
    }
    assert Revision.from_json(revision).user is None
    with pytest.raises(ProtocolError, match="Revision is missing the field 'current'"):
        Revision.from_json({k: v for k, v in revision.items() if k != "current"})
    with pytest.raises(ProtocolError, match=r"Revision\.user"):
        Revision.from_json({**revision, "user": {"id": "u"}})
    item = {
        "id": "t1",
        "name": "a",
        "path": "/a",
        "type": "link",
        "size": 1,
        "sha256": None,
        "rev": "r",
        "trashed_at": 2,
        "files": 1,
        "path_taken": False,
    }
    with pytest.raises(ProtocolError, match=r"TrashItem\.type"):
        TrashItem.from_json(item)
    with pytest.raises(ProtocolError, match=r"TrashItem\.path_taken"):
        TrashItem.from_json({**item, "type": "file", "path_taken": 0})
    assert TrashItem.from_json({**item, "type": "folder"}).is_folder
