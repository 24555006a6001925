"""Files API: metadata, listing, folders, move/rename and delete, with their error paths."""

from __future__ import annotations

import httpx

from tests.server.tus import upload


def entry_at(client: httpx.Client, path: str) -> dict[str, object]:
    r = client.get("/api/v1/metadata", params={"path": path})
    assert r.status_code == 200, r.text
    body: dict[str, object] = r.json()
    return body


def changes(client: httpx.Client) -> list[dict[str, object]]:
    result: list[dict[str, object]] = client.get("/api/v1/changes").json()["changes"]
    return result


def test_metadata_by_path_returns_the_entry(client: httpx.Client) -> None:
    assert upload(client, "/docs/a.txt", b"hello").status_code == 201
    entry = entry_at(client, "/docs/a.txt")
    assert entry["name"] == "a.txt"
    assert entry["type"] == "file"
    assert entry["size"] == 5
    folder = entry_at(client, "/docs")
    assert folder["type"] == "folder"
    assert folder["sha256"] is None
    assert entry["parent_id"] == folder["id"]
    assert folder["parent_id"] is None


def test_metadata_of_missing_path_is_404(client: httpx.Client) -> None:
    r = client.get("/api/v1/metadata", params={"path": "/nope.txt"})
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["type"] == "https://dropline.dev/problems/not-found"


def test_metadata_of_root_is_404_and_missing_path_param_is_400(client: httpx.Client) -> None:
    assert client.get("/api/v1/metadata", params={"path": "/"}).status_code == 404
    r = client.get("/api/v1/metadata")
    assert r.status_code == 400
    assert r.json()["type"].endswith("/validation")


def test_listing_is_sorted_by_name_and_paged(client: httpx.Client) -> None:
    names = ["b.txt", "a.txt", "c.txt", "Z.txt", "é.txt"]
    for name in names:
        assert upload(client, f"/list/{name}", name.encode()).status_code == 201
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"path": "/list", "limit": 2}
        if cursor:
            params["cursor"] = cursor
        r = client.get("/api/v1/files", params=params)
        assert r.status_code == 200
        body = r.json()
        seen += [e["name"] for e in body["entries"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(names)
    assert pages == 3


def test_listing_by_parent_id_and_root(client: httpx.Client) -> None:
    upload(client, "/p/child.txt", b"x")
    folder = entry_at(client, "/p")
    by_id = client.get("/api/v1/files", params={"parent_id": folder["id"]}).json()
    assert [e["path"] for e in by_id["entries"]] == ["/p/child.txt"]
    root = client.get("/api/v1/files").json()
    assert [e["path"] for e in root["entries"]] == ["/p"]
    assert client.get("/api/v1/files", params={"path": "/"}).json() == root


def test_listing_errors(client: httpx.Client) -> None:
    upload(client, "/f.txt", b"x")
    assert client.get("/api/v1/files", params={"path": "/missing"}).status_code == 404
    assert client.get("/api/v1/files", params={"path": "/f.txt"}).status_code == 409
    assert client.get("/api/v1/files", params={"path": "/", "parent_id": "x"}).status_code == 400
    assert client.get("/api/v1/files", params={"limit": 0}).status_code == 400
    assert client.get("/api/v1/files", params={"limit": "many"}).status_code == 400
    bad_cursor = client.get("/api/v1/files", params={"cursor": "%%%"})
    assert bad_cursor.status_code == 400
    assert bad_cursor.json()["type"].endswith("/bad-request")


def test_create_folder_creates_parents_and_is_idempotent(client: httpx.Client) -> None:
    r = client.post("/api/v1/folders", json={"path": "/a/b/c"})
    assert r.status_code == 201
    assert r.json()["path"] == "/a/b/c"
    assert entry_at(client, "/a/b")["type"] == "folder"
    again = client.post("/api/v1/folders", json={"path": "/a/b/c"})
    assert again.status_code == 200
    assert again.json()["id"] == r.json()["id"]
    created = [c["entry"]["path"] for c in changes(client) if c["action"] == "created"]
    assert created == ["/a", "/a/b", "/a/b/c"]


def test_create_folder_over_a_file_is_409(client: httpx.Client) -> None:
    upload(client, "/file.txt", b"x")
    r = client.post("/api/v1/folders", json={"path": "/file.txt"})
    assert r.status_code == 409
    assert r.json()["type"].endswith("/already-exists")
    below = client.post("/api/v1/folders", json={"path": "/file.txt/sub"})
    assert below.status_code == 409


def test_create_folder_bad_bodies(client: httpx.Client) -> None:
    malformed = client.post(
        "/api/v1/folders", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 400
    assert malformed.json()["type"].endswith("/bad-request")
    for body in ({}, {"path": 5}, {"path": "/x", "extra": 1}):
        r = client.post("/api/v1/folders", json=body)
        assert r.status_code == 400
        assert r.json()["type"].endswith("/validation")
    assert client.post("/api/v1/folders", json=["/x"]).status_code == 400
    assert client.get("/api/v1/files").json()["entries"] == []


def test_get_entry_by_id_and_missing_id(client: httpx.Client) -> None:
    upload(client, "/g.txt", b"x")
    entry = entry_at(client, "/g.txt")
    r = client.get(f"/api/v1/files/{entry['id']}")
    assert r.status_code == 200
    assert r.json() == entry
    assert r.headers["etag"] == f'"{entry["rev"]}"'
    assert client.get("/api/v1/files/00000000-0000-0000-0000-000000000000").status_code == 404


def test_rename_move_and_move_by_parent_id(client: httpx.Client) -> None:
    upload(client, "/m/one.txt", b"1")
    entry = entry_at(client, "/m/one.txt")
    renamed = client.patch(f"/api/v1/files/{entry['id']}", json={"name": "two.txt"})
    assert renamed.status_code == 200
    assert renamed.json()["path"] == "/m/two.txt"
    assert renamed.json()["rev"] != entry["rev"]
    moved = client.patch(f"/api/v1/files/{entry['id']}", json={"path": "/n/deep/two.txt"})
    assert moved.json()["path"] == "/n/deep/two.txt"
    assert entry_at(client, "/n/deep")["id"] == moved.json()["parent_id"]
    target = client.post("/api/v1/folders", json={"path": "/o"}).json()
    by_parent = client.patch(f"/api/v1/files/{entry['id']}", json={"parent_id": target["id"]})
    assert by_parent.json()["path"] == "/o/two.txt"
    last = changes(client)[-1]
    assert last["action"] == "moved"
    assert last["old_path"] == "/n/deep/two.txt"
    assert client.get("/api/v1/metadata", params={"path": "/m/one.txt"}).status_code == 404


def test_moving_a_folder_rewrites_its_subtree(client: httpx.Client) -> None:
    upload(client, "/tree/a/b/leaf.txt", b"leaf")
    leaf = entry_at(client, "/tree/a/b/leaf.txt")
    folder = entry_at(client, "/tree/a")
    r = client.patch(f"/api/v1/files/{folder['id']}", json={"path": "/moved"})
    assert r.status_code == 200
    assert entry_at(client, "/moved/b/leaf.txt")["id"] == leaf["id"]
    assert entry_at(client, "/moved/b/leaf.txt")["rev"] == leaf["rev"]
    assert client.get("/api/v1/metadata", params={"path": "/tree/a/b"}).status_code == 404


def test_move_errors_change_nothing(client: httpx.Client) -> None:
    upload(client, "/e/a.txt", b"a")
    upload(client, "/e/b.txt", b"b")
    a = entry_at(client, "/e/a.txt")
    folder = entry_at(client, "/e")
    before = changes(client)
    cases = [
        ({"name": "b.txt"}, {}, 409, "already-exists"),
        ({"name": "c.txt"}, {"If-Match": "stale"}, 412, "precondition-failed"),
        ({}, {}, 400, "validation"),
        ({"name": "x", "path": "/y"}, {}, 400, "validation"),
        ({"name": ".."}, {}, 400, "invalid-name"),
        ({"parent_id": a["id"]}, {}, 409, "conflict"),
        ({"parent_id": "00000000-0000-0000-0000-000000000000"}, {}, 404, "not-found"),
        ({"path": "/e/a.txt/inside"}, {}, 409, "conflict"),
    ]
    for body, headers, status, slug in cases:
        r = client.patch(f"/api/v1/files/{a['id']}", json=body, headers=headers)
        assert (r.status_code, r.json()["type"].rsplit("/", 1)[1]) == (status, slug), body
    into_itself = client.patch(f"/api/v1/files/{folder['id']}", json={"path": "/e/sub/e"})
    assert into_itself.status_code == 409
    assert changes(client) == before
    assert entry_at(client, "/e/a.txt") == a


def test_move_with_matching_if_match_succeeds(client: httpx.Client) -> None:
    upload(client, "/im.txt", b"x")
    entry = entry_at(client, "/im.txt")
    r = client.patch(
        f"/api/v1/files/{entry['id']}", json={"name": "im2.txt"}, headers={"If-Match": entry["rev"]}
    )
    assert r.status_code == 200
    quoted = client.patch(
        f"/api/v1/files/{entry['id']}",
        json={"name": "im3.txt"},
        headers={"If-Match": f'"{r.json()["rev"]}"'},
    )
    assert quoted.status_code == 200


def test_delete_moves_to_trash_and_keeps_revisions(
    client: httpx.Client, live_server: object
) -> None:
    upload(client, "/d/keep.txt", b"v1")
    upload(client, "/d/keep.txt", b"v2")
    entry = entry_at(client, "/d/keep.txt")
    folder = entry_at(client, "/d")
    stale = client.delete(f"/api/v1/files/{folder['id']}", headers={"If-Match": "old"})
    assert stale.status_code == 412
    assert entry_at(client, "/d/keep.txt") == entry
    r = client.delete(f"/api/v1/files/{folder['id']}", headers={"If-Match": folder["rev"]})
    assert r.status_code == 204
    assert client.get(f"/api/v1/files/{entry['id']}").status_code == 404
    assert client.get("/api/v1/metadata", params={"path": "/d/keep.txt"}).status_code == 404
    assert client.delete(f"/api/v1/files/{folder['id']}").status_code == 404
    last = changes(client)[-1]
    assert last["action"] == "deleted"
    assert last["entry"]["path"] == "/d"
    # The trash keeps both revisions: their blobs and rows are still there.
    from sqlalchemy import select

    from dropline.server.storage import schema

    app = live_server.app  # type: ignore[attr-defined]
    with app.state.db.read() as conn:
        revs = conn.execute(
            select(schema.revisions.c.blob_id).where(schema.revisions.c.entry_id == entry["id"])
        ).all()
        trashed = conn.execute(
            select(schema.entries.c.trashed_at).where(schema.entries.c.id == entry["id"])
        ).scalar()
    assert len(revs) == 2
    assert trashed is not None
    for (blob_id,) in revs:
        assert app.state.blobs.size(blob_id) == 2


def test_path_can_be_reused_after_delete(client: httpx.Client) -> None:
    upload(client, "/again.txt", b"1")
    first = entry_at(client, "/again.txt")
    client.delete(f"/api/v1/files/{first['id']}")
    assert upload(client, "/again.txt", b"2", if_rev="none").status_code == 201
    assert entry_at(client, "/again.txt")["id"] != first["id"]


def test_write_routes_need_the_write_scope(live_server: object) -> None:
    from tests.support.live import LiveServer

    assert isinstance(live_server, LiveServer)
    key = live_server.new_key(email="reader@example.com", scopes=("files:read",))
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=live_server.url, headers=headers) as reader:
        assert reader.get("/api/v1/files").status_code == 200
        r = reader.post("/api/v1/folders", json={"path": "/x"})
        assert r.status_code == 403
        assert r.json()["type"].endswith("/insufficient-scope")


def test_files_routes_need_a_credential(live_server: object) -> None:
    from tests.support.live import LiveServer

    assert isinstance(live_server, LiveServer)
    with httpx.Client(base_url=live_server.url) as anonymous:
        for method, url in [
            ("GET", "/api/v1/files"),
            ("GET", "/api/v1/metadata?path=/a"),
            ("POST", "/api/v1/folders"),
            ("GET", "/api/v1/changes"),
            ("POST", "/api/v1/uploads"),
        ]:
            assert anonymous.request(method, url).status_code == 401, url
