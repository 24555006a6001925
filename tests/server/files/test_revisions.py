"""Version history against the live server: a file's revisions (who, when, which client,
paged), a past revision's bytes with Range and Repr-Digest, and restoring one as a new
revision (history kept, change feed, If-Match, audit row, webhook event)."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.server.files.undo_support import (
    audit_rows,
    changes_since,
    cursor,
    delete,
    email_of,
    events,
    folder,
    module_server,
    new_user,
    put,
    set_policy,
    user_id_of,
)
from tests.support.live import LiveServer


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with module_server(tmp_path_factory.mktemp("revisions") / "data") as server:
        yield server


@pytest.fixture
def alice(live: LiveServer) -> Iterator[httpx.Client]:
    with new_user(live, user_agent="dropline-agent/0.1.0 (Linux)") as c:
        yield c


def revisions(client: httpx.Client, entry_id: str, **params: Any) -> dict[str, Any]:
    r = client.get(f"/api/v1/files/{entry_id}/revisions", params=params)
    assert r.status_code == 200, r.text
    page: dict[str, Any] = r.json()
    return page


def digest(data: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


def three_versions(client: httpx.Client, path: str) -> tuple[dict[str, Any], list[bytes]]:
    bodies = [os.urandom(1000 + i) for i in range(3)]
    entry: dict[str, Any] = {}
    for body in bodies:
        entry = put(client, path, body)
    return entry, bodies


def test_revisions_are_listed_newest_first_with_who_and_which_client(
    live: LiveServer, alice: httpx.Client
) -> None:
    entry, bodies = three_versions(alice, "/docs/plan.txt")
    with new_user(live) as other_tenant_user:
        assert other_tenant_user.get(f"/api/v1/files/{entry['id']}/revisions").status_code == 404
    page = revisions(alice, entry["id"])
    assert page["next_cursor"] is None
    got = page["revisions"]
    assert [r["sha256"] for r in got] == [hashlib.sha256(b).hexdigest() for b in reversed(bodies)]
    assert [r["size"] for r in got] == [len(b) for b in reversed(bodies)]
    assert [r["current"] for r in got] == [True, False, False]
    assert got[0]["rev"] == entry["rev"]
    assert got[0]["created_at"] >= got[1]["created_at"] >= got[2]["created_at"]
    assert {r["client"] for r in got} == {"dropline-agent/0.1.0"}
    assert {r["user"]["email"] for r in got} == {email_of(alice)}
    assert {r["user"]["id"] for r in got} == {user_id_of(alice)}
    assert set(got[0]) == {
        "rev",
        "size",
        "sha256",
        "mtime",
        "created_at",
        "user",
        "client",
        "current",
    }


def test_a_client_without_user_agent_is_named_by_its_credential(live: LiveServer) -> None:
    with new_user(live) as c:
        c.headers["User-Agent"] = ""
        entry = put(c, "/a.txt", b"a")
        assert revisions(c, entry["id"])["revisions"][0]["client"] == "api_key"


def test_revisions_page_by_cursor_without_gaps(alice: httpx.Client) -> None:
    entry: dict[str, Any] = {}
    for i in range(5):
        entry = put(alice, "/paged.txt", f"version {i}".encode())
    seen: list[str] = []
    page = revisions(alice, entry["id"], limit=2)
    pages = 1
    while True:
        assert len(page["revisions"]) <= 2
        seen += [r["rev"] for r in page["revisions"]]
        if page["next_cursor"] is None:
            break
        page = revisions(alice, entry["id"], limit=2, cursor=page["next_cursor"])
        pages += 1
    assert pages == 3
    assert seen == [r["rev"] for r in revisions(alice, entry["id"])["revisions"]]
    assert len(set(seen)) == 5
    bad = alice.get(f"/api/v1/files/{entry['id']}/revisions", params={"cursor": "!!"})
    assert bad.status_code == 400
    assert bad.json()["type"].endswith("/bad-request")


def test_a_past_revision_downloads_with_range_etag_and_digest(alice: httpx.Client) -> None:
    entry, bodies = three_versions(alice, "/data.bin")
    oldest = revisions(alice, entry["id"])["revisions"][-1]
    url = f"/api/v1/files/{entry['id']}/content"
    whole = alice.get(url, params={"rev": oldest["rev"]})
    assert whole.status_code == 200
    assert whole.content == bodies[0]
    assert whole.headers["etag"] == f'"{oldest["rev"]}"'
    assert whole.headers["repr-digest"] == digest(bodies[0])
    part = alice.get(url, params={"rev": oldest["rev"]}, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == bodies[0][10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(bodies[0])}"
    assert part.headers["repr-digest"] == digest(bodies[0])
    head = alice.head(url, params={"rev": oldest["rev"]})
    assert head.status_code == 200
    assert head.headers["content-length"] == str(len(bodies[0]))
    # If-Range naming another revision: the whole of the one asked for.
    stale = alice.get(
        url, params={"rev": oldest["rev"]}, headers={"Range": "bytes=0-0", "If-Range": '"zz"'}
    )
    assert stale.status_code == 200
    assert stale.content == bodies[0]
    # The current content is unchanged by all this.
    assert alice.get(url).content == bodies[2]
    missing = alice.get(url, params={"rev": "0123456789abcdef"})
    assert missing.status_code == 404
    assert missing.json()["type"].endswith("/not-found")


def test_restore_makes_a_new_revision_with_the_old_content(
    live: LiveServer, alice: httpx.Client
) -> None:
    entry, bodies = three_versions(alice, "/report.txt")
    oldest = revisions(alice, entry["id"])["revisions"][-1]
    since = cursor(alice)
    r = alice.post(f"/api/v1/files/{entry['id']}/restore", json={"rev": oldest["rev"]})
    assert r.status_code == 200, r.text
    restored = r.json()
    assert restored["id"] == entry["id"]
    assert restored["rev"] not in (entry["rev"], oldest["rev"])
    assert r.headers["etag"] == f'"{restored["rev"]}"'
    assert (restored["sha256"], restored["size"]) == (oldest["sha256"], oldest["size"])
    assert restored["mtime"] == oldest["mtime"]
    assert alice.get(f"/api/v1/files/{entry['id']}/content").content == bodies[0]
    # History is never rewritten: four revisions now, the new one current.
    history = revisions(alice, entry["id"])["revisions"]
    assert len(history) == 4
    assert history[-1] == {**oldest, "current": False}
    assert history[0]["rev"] == restored["rev"]
    assert history[0]["current"] and not history[1]["current"]
    assert history[1]["rev"] == entry["rev"]
    assert history[0]["sha256"] == oldest["sha256"]
    # Every syncing client pulls it: a `modified` change.
    assert changes_since(alice, since) == [("modified", "/report.txt", "file")]
    audit = [a for a in audit_rows(live, "file.restore") if a["resource"] == "/report.txt"]
    assert len(audit) == 1
    assert audit[0]["detail"]["from_rev"] == oldest["rev"]
    assert audit[0]["actor"] == user_id_of(alice)
    restored_events = [e for e in events(live, "file.restored") if e["entry"]["id"] == entry["id"]]
    assert len(restored_events) == 1
    assert restored_events[0]["action"] == "file.restore"
    assert restored_events[0]["entry"]["rev"] == restored["rev"]
    # No `file.uploaded` for a restore, and no second audit row of the change itself.
    uploaded = [e for e in events(live, "file.uploaded") if e["entry"]["id"] == entry["id"]]
    assert len(uploaded) == 3


def test_restore_with_a_stale_if_match_changes_nothing(alice: httpx.Client) -> None:
    entry, bodies = three_versions(alice, "/guarded.txt")
    oldest = revisions(alice, entry["id"])["revisions"][-1]
    since = cursor(alice)
    url = f"/api/v1/files/{entry['id']}/restore"
    r = alice.post(url, json={"rev": oldest["rev"]}, headers={"If-Match": f'"{oldest["rev"]}"'})
    assert r.status_code == 412
    assert r.json()["type"].endswith("/precondition-failed")
    assert alice.get(f"/api/v1/files/{entry['id']}").json()["rev"] == entry["rev"]
    assert len(revisions(alice, entry["id"])["revisions"]) == 3
    assert changes_since(alice, since) == []
    ok = alice.post(url, json={"rev": oldest["rev"]}, headers={"If-Match": f'"{entry["rev"]}"'})
    assert ok.status_code == 200
    assert alice.get(f"/api/v1/files/{entry['id']}/content").content == bodies[0]


def test_restoring_the_current_revision_changes_nothing(alice: httpx.Client) -> None:
    entry, _bodies = three_versions(alice, "/same.txt")
    since = cursor(alice)
    r = alice.post(f"/api/v1/files/{entry['id']}/restore", json={"rev": entry["rev"]})
    assert r.status_code == 200
    assert r.json() == entry
    assert changes_since(alice, since) == []
    assert len(revisions(alice, entry["id"])["revisions"]) == 3


def test_restore_refusals_are_problems_that_change_nothing(alice: httpx.Client) -> None:
    entry, _bodies = three_versions(alice, "/refused.txt")
    url = f"/api/v1/files/{entry['id']}/restore"
    box = folder(alice, "/box")
    since = cursor(alice)
    unknown = alice.post(url, json={"rev": "0123456789abcdef"})
    assert unknown.status_code == 404
    assert unknown.json()["type"].endswith("/not-found")
    for bad in ({}, {"rev": ""}, {"rev": 5}, {"rev": "a", "other": 1}):
        r = alice.post(url, json=bad)
        assert r.status_code == 400, bad
        assert r.json()["type"].endswith("/validation")
    assert alice.post(url, content=b"{").json()["type"].endswith("/bad-request")
    listing = alice.get(f"/api/v1/files/{box['id']}/revisions")
    assert listing.status_code == 409
    assert listing.json()["type"].endswith("/conflict")
    assert changes_since(alice, since) == []


def test_a_trashed_files_history_can_be_read_but_not_restored(alice: httpx.Client) -> None:
    entry, bodies = three_versions(alice, "/gone.txt")
    oldest = revisions(alice, entry["id"])["revisions"][-1]
    delete(alice, entry)
    assert len(revisions(alice, entry["id"])["revisions"]) == 3
    r = alice.get(f"/api/v1/files/{entry['id']}/content", params={"rev": oldest["rev"]})
    assert r.content == bodies[0]
    refused = alice.post(f"/api/v1/files/{entry['id']}/restore", json={"rev": oldest["rev"]})
    assert refused.status_code == 409
    assert "trash" in refused.json()["detail"]


def test_another_tenants_ids_are_not_found_on_every_version_route(
    live: LiveServer, alice: httpx.Client
) -> None:
    entry, _bodies = three_versions(alice, "/private.txt")
    rev = revisions(alice, entry["id"])["revisions"][-1]["rev"]
    with new_user(live, tenant="globex") as mallory, new_user(live) as bob:
        for stranger in (mallory, bob):
            calls = [
                stranger.get(f"/api/v1/files/{entry['id']}/revisions"),
                stranger.get(f"/api/v1/files/{entry['id']}/content", params={"rev": rev}),
                stranger.head(f"/api/v1/files/{entry['id']}/content", params={"rev": rev}),
                stranger.post(f"/api/v1/files/{entry['id']}/restore", json={"rev": rev}),
            ]
            assert [c.status_code for c in calls] == [404, 404, 404, 404]
    assert alice.get(f"/api/v1/files/{entry['id']}").json()["rev"] == entry["rev"]


def test_the_openapi_document_describes_the_version_routes(alice: httpx.Client) -> None:
    doc = alice.get("/openapi.json").json()
    paths = doc["paths"]
    assert "get" in paths["/api/v1/files/{entry_id}/revisions"]
    assert "post" in paths["/api/v1/files/{entry_id}/restore"]
    params = {p["name"] for p in paths["/api/v1/files/{entry_id}/content"]["get"]["parameters"]}
    assert "rev" in params
    schema = doc["components"]["schemas"]["RevisionOut"]
    assert set(schema["properties"]) == {
        "rev",
        "size",
        "sha256",
        "mtime",
        "created_at",
        "user",
        "client",
        "current",
    }


def test_the_policy_applies_to_a_restore(live: LiveServer) -> None:
    with new_user(live, tenant="rev-policy") as alice:
        put(alice, "/big.txt", b"b" * 500)
        entry = put(alice, "/big.txt", b"small")
        big = revisions(alice, entry["id"])["revisions"][1]
        set_policy(live, "rev-policy", {"max_file_size": 100})
        since = cursor(alice)
        url = f"/api/v1/files/{entry['id']}/restore"
        refused = alice.post(url, json={"rev": big["rev"]})
        assert refused.status_code == 403
        assert refused.json()["rule"] == "max_file_size"
        assert alice.get(f"/api/v1/files/{entry['id']}").json()["rev"] == entry["rev"]
        assert changes_since(alice, since) == []
        # The quota counts the old version already: restoring it adds nothing.
        set_policy(live, "rev-policy", {"storage_quota": 505})
        assert alice.post(url, json={"rev": big["rev"]}).status_code == 200
        assert alice.get("/api/v1/me").json()["storage"]["used"] == 505
