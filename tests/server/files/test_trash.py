"""The trash against the live server: what a person deleted (a folder as one item),
filters and paging, restore to the old path or a new one (subtree, missing parents,
change feed), purge by the owner or a tenant admin, and blobs deleted only when
nothing (another revision, a live share link) refers to them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from dropline.server.storage import schema
from tests.server.files.undo_support import (
    ADMIN_SCOPES,
    LINK_SCOPES,
    audit_rows,
    blob_exists,
    blob_ids,
    changes_since,
    cursor,
    delete,
    events,
    module_server,
    new_user,
    put,
    trash,
)
from tests.server.ops_helpers import start_transfer, wait_transfer
from tests.support.live import LiveServer


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with module_server(tmp_path_factory.mktemp("trash") / "data") as server:
        yield server


@pytest.fixture
def alice(live: LiveServer) -> Iterator[httpx.Client]:
    with new_user(live) as c:
        yield c


def project(client: httpx.Client) -> dict[str, Any]:
    """/project with two files and a subfolder holding one; returns the folder."""
    put(client, "/project/a.txt", b"alpha")
    put(client, "/project/b.txt", b"bravo!")
    put(client, "/project/sub/c.txt", b"charlie")
    return client.get("/api/v1/metadata", params={"path": "/project"}).json()  # type: ignore[no-any-return]


def test_a_deleted_folder_is_one_item_and_earlier_deletes_are_their_own(
    alice: httpx.Client,
) -> None:
    top = project(alice)
    lone = put(alice, "/notes.txt", b"n")
    early = alice.get("/api/v1/metadata", params={"path": "/project/b.txt"}).json()
    delete(alice, early)
    delete(alice, top)
    delete(alice, lone)
    items = trash(alice)
    assert [(i["path"], i["type"]) for i in items] == [
        ("/notes.txt", "file"),
        ("/project", "folder"),
        ("/project/b.txt", "file"),
    ]
    by_path = {i["path"]: i for i in items}
    assert by_path["/project"]["files"] == 2  # a.txt and sub/c.txt; b.txt went earlier
    assert by_path["/project"]["size"] == len(b"alpha") + len(b"charlie")
    assert by_path["/project"]["sha256"] is None
    assert by_path["/notes.txt"]["files"] == 1
    assert by_path["/notes.txt"]["sha256"] == lone["sha256"]
    assert by_path["/notes.txt"]["rev"] == lone["rev"]
    assert not any(i["path_taken"] for i in items)
    assert set(items[0]) == {
        "id",
        "name",
        "path",
        "type",
        "size",
        "sha256",
        "rev",
        "trashed_at",
        "files",
        "path_taken",
    }
    times = [i["trashed_at"] for i in items]
    assert times == sorted(times, reverse=True)


def test_the_trash_filters_by_path_and_time_and_pages(alice: httpx.Client) -> None:
    moments: list[float] = []
    for name in ("/x/1.txt", "/x/2.txt", "/y/3.txt", "/x/deeper/4.txt", "/xy.txt"):
        delete(alice, put(alice, name, name.encode()))
        moments.append(trash(alice)[0]["trashed_at"])
        time.sleep(0.01)
    assert [i["path"] for i in trash(alice, path="/x")] == [
        "/x/deeper/4.txt",
        "/x/2.txt",
        "/x/1.txt",
    ]
    assert [i["path"] for i in trash(alice, path="/x/deeper")] == ["/x/deeper/4.txt"]
    assert [i["path"] for i in trash(alice, path="/xy.txt")] == ["/xy.txt"]
    assert trash(alice, path="/nothing") == []
    assert [i["path"] for i in trash(alice, since=moments[1], until=moments[3])] == [
        "/y/3.txt",
        "/x/2.txt",
    ]
    seen: list[str] = []
    page = alice.get("/api/v1/trash", params={"limit": 2}).json()
    pages = 1
    while True:
        seen += [i["path"] for i in page["items"]]
        if page["next_cursor"] is None:
            break
        page = alice.get("/api/v1/trash", params={"limit": 2, "cursor": page["next_cursor"]}).json()
        pages += 1
    assert pages == 3
    assert seen == [i["path"] for i in trash(alice)]
    for params in ({"cursor": "nonsense"}, {"limit": 0}, {"since": "yesterday"}, {"path": "a"}):
        r = alice.get("/api/v1/trash", params=params)
        assert r.status_code == 400, params
        assert r.headers["content-type"] == "application/problem+json"


def test_a_folder_comes_back_with_its_subtree_and_every_entry_in_the_feed(
    live: LiveServer, alice: httpx.Client
) -> None:
    top = project(alice)
    delete(alice, top)
    item = trash(alice)[0]
    since = cursor(alice)
    r = alice.post(f"/api/v1/trash/{item['id']}/restore", json={})
    assert r.status_code == 200, r.text
    restored = r.json()
    assert (restored["id"], restored["path"], restored["type"]) == (top["id"], "/project", "folder")
    assert r.headers["etag"] == f'"{restored["rev"]}"'
    assert changes_since(alice, since) == [
        ("created", "/project", "folder"),
        ("created", "/project/a.txt", "file"),
        ("created", "/project/b.txt", "file"),
        ("created", "/project/sub", "folder"),
        ("created", "/project/sub/c.txt", "file"),
    ]
    listing = alice.get("/api/v1/files", params={"path": "/project/sub"}).json()["entries"]
    assert [e["name"] for e in listing] == ["c.txt"]
    c = alice.get("/api/v1/metadata", params={"path": "/project/sub/c.txt"}).json()
    assert alice.get(f"/api/v1/files/{c['id']}/content").content == b"charlie"
    assert trash(alice) == []
    audit = [
        a for a in audit_rows(live, "trash.restore") if a["detail"]["entry"]["id"] == top["id"]
    ]
    assert len(audit) == 1
    assert audit[0]["detail"]["files"] == 3
    announced = [e for e in events(live, "file.restored") if e["entry"]["id"] == top["id"]]
    assert [e["action"] for e in announced] == ["trash.restore"]


def test_a_taken_path_needs_a_new_one_and_the_subtree_moves_with_it(alice: httpx.Client) -> None:
    top = project(alice)
    delete(alice, top)
    put(alice, "/project/new.txt", b"someone else's project")
    item = trash(alice)[0]
    assert item["path_taken"] is True
    refused = alice.post(f"/api/v1/trash/{item['id']}/restore", json={})
    assert refused.status_code == 409
    body = refused.json()
    assert body["type"].endswith("/already-exists")
    assert "give a new path" in body["detail"]
    assert trash(alice)[0]["id"] == item["id"]
    since = cursor(alice)
    r = alice.post(f"/api/v1/trash/{item['id']}/restore", json={"path": "/archive/project-old"})
    assert r.status_code == 200, r.text
    assert (r.json()["path"], r.json()["name"]) == ("/archive/project-old", "project-old")
    assert changes_since(alice, since) == [
        ("created", "/archive", "folder"),
        ("created", "/archive/project-old", "folder"),
        ("created", "/archive/project-old/a.txt", "file"),
        ("created", "/archive/project-old/b.txt", "file"),
        ("created", "/archive/project-old/sub", "folder"),
        ("created", "/archive/project-old/sub/c.txt", "file"),
    ]
    moved = alice.get("/api/v1/metadata", params={"path": "/archive/project-old/sub/c.txt"})
    assert moved.status_code == 200
    assert alice.get(f"/api/v1/files/{moved.json()['parent_id']}").json()["path"] == (
        "/archive/project-old/sub"
    )
    # The live /project was left alone.
    names = [
        e["name"] for e in alice.get("/api/v1/files", params={"path": "/project"}).json()["entries"]
    ]
    assert names == ["new.txt"]


def test_a_file_whose_folder_is_gone_comes_back_with_the_folder_made_again(
    alice: httpx.Client,
) -> None:
    report = put(alice, "/reports/2026/q1.txt", b"numbers")
    delete(alice, report)
    delete(alice, alice.get("/api/v1/metadata", params={"path": "/reports"}).json())
    item = next(i for i in trash(alice) if i["path"] == "/reports/2026/q1.txt")
    r = alice.post(f"/api/v1/trash/{item['id']}/restore", json={})
    assert r.status_code == 200, r.text
    parent = alice.get(f"/api/v1/files/{r.json()['parent_id']}").json()
    assert parent["path"] == "/reports/2026"
    assert alice.get(f"/api/v1/files/{report['id']}/content").content == b"numbers"
    # The old /reports folder is still in the trash, and its path is taken now.
    old = next(i for i in trash(alice) if i["path"] == "/reports")
    assert old["path_taken"] is True


def test_restore_refusals_change_nothing(alice: httpx.Client) -> None:
    item_entry = put(alice, "/keep/me.txt", b"me")
    put(alice, "/blocker", b"a file where a folder would go")
    delete(alice, item_entry)
    item = trash(alice)[0]
    since = cursor(alice)
    url = f"/api/v1/trash/{item['id']}/restore"
    cases = [
        (alice.post(url, json={"path": "relative.txt"}), 400, "invalid-name"),
        (alice.post(url, json={"path": "/a/../b.txt"}), 400, "invalid-name"),
        (alice.post(url, json={"path": 5}), 400, "validation"),
        (alice.post(url, json={"where": "/x"}), 400, "validation"),
        (alice.post(url, content=b"not json"), 400, "bad-request"),
        (alice.post(url, json={"path": "/blocker/me.txt"}), 409, "conflict"),
        (
            alice.post("/api/v1/trash/00000000-0000-0000-0000-000000000000/restore", json={}),
            404,
            "not-found",
        ),
    ]
    for response, status, slug in cases:
        assert response.status_code == status, response.text
        assert response.json()["type"].endswith("/" + slug)
    assert changes_since(alice, since) == []
    assert trash(alice)[0]["id"] == item["id"]
    # A live file's id is not a trash item.
    live_file = alice.get("/api/v1/metadata", params={"path": "/blocker"}).json()
    assert alice.post(f"/api/v1/trash/{live_file['id']}/restore", json={}).status_code == 404
    assert alice.delete(f"/api/v1/trash/{live_file['id']}").status_code == 404
    assert alice.get(f"/api/v1/files/{live_file['id']}").status_code == 200


def test_purge_removes_the_item_its_revisions_and_unused_blobs(
    live: LiveServer, alice: httpx.Client
) -> None:
    put(alice, "/drafts/a.txt", b"a1")
    a = put(alice, "/drafts/a.txt", b"a2")
    b = put(alice, "/drafts/b.txt", b"b1")
    blobs = blob_ids(live, a["id"]) | blob_ids(live, b["id"])
    assert len(blobs) == 3 and all(blob_exists(live, x) for x in blobs)
    top = alice.get("/api/v1/metadata", params={"path": "/drafts"}).json()
    delete(alice, top)
    item = trash(alice)[0]
    r = alice.delete(f"/api/v1/trash/{item['id']}")
    assert r.status_code == 204
    assert trash(alice) == []
    assert not any(blob_exists(live, x) for x in blobs)
    assert blob_ids(live, a["id"]) == set()
    assert alice.get(f"/api/v1/files/{a['id']}/revisions").status_code == 404
    assert alice.delete(f"/api/v1/trash/{item['id']}").status_code == 404
    audit = [x for x in audit_rows(live, "trash.purge") if x["detail"]["entry_id"] == top["id"]]
    assert len(audit) == 1
    assert audit[0]["detail"]["entries"] == 3
    assert audit[0]["detail"]["blobs_deleted"] == 3


def test_purge_by_a_tenant_admin_and_nobody_else(live: LiveServer, alice: httpx.Client) -> None:
    doomed = put(alice, "/secret.txt", b"s")
    delete(alice, doomed)
    item = trash(alice)[0]
    with (
        new_user(live) as colleague,
        new_user(live, scopes=ADMIN_SCOPES) as not_really_admin,
        new_user(live, tenant="globex", scopes=ADMIN_SCOPES, admin=True) as other_admin,
        new_user(live, scopes=("files:read", "files:write"), admin=True) as admin_no_scope,
        new_user(live, scopes=("files:read",)) as reader,
    ):
        for stranger in (colleague, not_really_admin, other_admin, admin_no_scope):
            r = stranger.delete(f"/api/v1/trash/{item['id']}")
            assert r.status_code == 404, r.text
            assert r.json()["type"].endswith("/not-found")
            assert stranger.post(f"/api/v1/trash/{item['id']}/restore", json={}).status_code == 404
            assert stranger.get("/api/v1/trash").json()["items"] == []
        assert reader.delete(f"/api/v1/trash/{item['id']}").status_code == 403
        assert trash(alice)[0]["id"] == item["id"]
    with new_user(live, scopes=ADMIN_SCOPES, admin=True) as admin:
        assert admin.delete(f"/api/v1/trash/{item['id']}").status_code == 204
    assert trash(alice) == []
    audit = [x for x in audit_rows(live, "trash.purge") if x["detail"]["entry_id"] == doomed["id"]]
    assert len(audit) == 1
    assert audit[0]["detail"]["owner"] == alice.get("/api/v1/me").json()["user"]["id"]


def test_a_blob_a_live_share_link_serves_is_kept(live: LiveServer) -> None:
    with new_user(live, scopes=LINK_SCOPES) as alice:
        first = put(alice, "/shared.txt", b"version one")
        current = put(alice, "/shared.txt", b"version two")
        old_blob, new_blob = blob_of(live, first["rev"]), blob_of(live, current["rev"])
        # Back to version one (a revision that shares its blob), then shared by a link.
        r = alice.post(f"/api/v1/files/{current['id']}/restore", json={"rev": first["rev"]})
        assert r.status_code == 200
        link = start_transfer(alice, [current["id"]], {"type": "link"})
        assert wait_transfer(alice, link["id"])["state"] == "completed"
        delete(alice, current)
        assert alice.delete(f"/api/v1/trash/{trash(alice)[0]['id']}").status_code == 204
        assert not blob_exists(live, new_blob)
        assert blob_exists(live, old_blob)
        # The link still serves the version it was made with.
        url = wait_transfer(alice, link["id"])["result"]["url"]
        files = httpx.get(url).json()["files"]
        body = httpx.get(live.url + files[0]["url"])
        assert body.status_code == 200
        assert body.content == b"version one"
        # Once the link ends, housekeeping lets the blob go.
        assert alice.delete(f"/api/v1/transfers/{link['id']}").status_code == 200
        live.app.state.housekeeping.run_once()  # type: ignore[attr-defined]
        assert not blob_exists(live, old_blob)


def blob_of(live: LiveServer, rev: str) -> str:
    with live.app.state.db.read() as conn:  # type: ignore[attr-defined]
        return str(
            conn.execute(
                select(schema.revisions.c.blob_id).where(schema.revisions.c.rev == rev)
            ).scalar_one()
        )


def test_another_tenants_ids_are_not_found_on_every_trash_route(
    live: LiveServer, alice: httpx.Client
) -> None:
    entry = put(alice, "/mine.txt", b"mine")
    delete(alice, entry)
    item = trash(alice)[0]
    with new_user(live, tenant="globex") as mallory:
        assert mallory.post(f"/api/v1/trash/{item['id']}/restore", json={}).status_code == 404
        assert mallory.delete(f"/api/v1/trash/{item['id']}").status_code == 404
        assert mallory.get("/api/v1/trash").json() == {"items": [], "next_cursor": None}
    assert trash(alice)[0]["id"] == item["id"]
