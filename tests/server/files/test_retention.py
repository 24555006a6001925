"""Retention against the live server, with a clock the tests move: versions by age and by
count, trash by age, the current revision never removed, blobs deleted only when no row
refers to them, and storage (``/me`` and the quota) counting what retention keeps."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from dropline.server.files.housekeeping import Housekeeping, Retention, doomed_versions
from dropline.server.guard import policy
from tests.server.files.undo_support import (
    audit_rows,
    blob_exists,
    blob_ids,
    delete,
    module_server,
    new_user,
    put,
    set_policy,
    trash,
)
from tests.support.live import LiveServer

DAY = 86400.0


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    with module_server(tmp_path_factory.mktemp("retention") / "data") as server:
        yield server


def housekeeping(live: LiveServer) -> Housekeeping:
    found: Housekeeping = live.app.state.housekeeping  # type: ignore[attr-defined]
    return found


def revs(client: httpx.Client, entry_id: str) -> list[dict[str, Any]]:
    r = client.get(f"/api/v1/files/{entry_id}/revisions")
    assert r.status_code == 200, r.text
    found: list[dict[str, Any]] = r.json()["revisions"]
    return found


def storage(client: httpx.Client) -> dict[str, Any]:
    found: dict[str, Any] = client.get("/api/v1/me").json()["storage"]
    return found


def test_versions_go_some_days_after_they_were_replaced(live: LiveServer) -> None:
    set_policy(live, "ret-age", {"version_retention_days": 10})
    with new_user(live, tenant="ret-age") as alice:
        put(alice, "/plan.txt", b"one")
        put(alice, "/plan.txt", b"two")
        entry = put(alice, "/plan.txt", b"three")
        blobs = blob_ids(live, entry["id"])
        now = time.time()
        assert housekeeping(live).run_once(now + 9 * DAY).versions == 0
        assert len(revs(alice, entry["id"])) == 3
        swept = housekeeping(live).run_once(now + 11 * DAY)
        assert swept.versions == 2
        left = revs(alice, entry["id"])
        assert [(r["rev"], r["current"]) for r in left] == [(entry["rev"], True)]
        assert alice.get(f"/api/v1/files/{entry['id']}/content").content == b"three"
        assert [blob_exists(live, b) for b in sorted(blobs)].count(True) == 1
        rows = [a for a in audit_rows(live, "retention.apply") if a["detail"]["versions"] == 2]
        assert rows and rows[-1]["actor"] == "system"


def test_only_the_newest_versions_are_kept_and_a_shared_blob_stays(live: LiveServer) -> None:
    set_policy(live, "ret-count", {"max_versions": 2})
    with new_user(live, tenant="ret-count") as alice:
        first = put(alice, "/log.txt", b"first")
        for body in (b"second", b"third", b"fourth"):
            entry = put(alice, "/log.txt", body)
        # Back to the first: the new revision shares the first one's blob.
        r = alice.post(f"/api/v1/files/{entry['id']}/restore", json={"rev": first["rev"]})
        assert r.status_code == 200
        before = {r["rev"]: r for r in revs(alice, entry["id"])}
        assert len(before) == 5
        swept = housekeeping(live).run_once(time.time())
        assert swept.versions == 3
        left = revs(alice, entry["id"])
        assert [x["current"] for x in left] == [True, False]
        assert left[1]["rev"] == entry["rev"]  # "fourth", the one the restore replaced
        assert [x["sha256"] for x in left] == [first["sha256"], entry["sha256"]]
        # "second" and "third" are gone with their blobs; "first"'s blob lives on.
        assert swept.blobs == 2
        assert all(blob_exists(live, b) for b in blob_ids(live, entry["id"]))
        assert alice.get(f"/api/v1/files/{entry['id']}/content").content == b"first"
        assert housekeeping(live).run_once(time.time()).versions == 0


def test_the_current_revision_is_never_removed(live: LiveServer) -> None:
    set_policy(live, "ret-zero", {"version_retention_days": 0, "max_versions": 1})
    with new_user(live, tenant="ret-zero") as alice:
        put(alice, "/only.txt", b"old")
        entry = put(alice, "/only.txt", b"kept")
        housekeeping(live).run_once(time.time() + 1000 * DAY)
        assert [r["rev"] for r in revs(alice, entry["id"])] == [entry["rev"]]
        r = alice.get(f"/api/v1/files/{entry['id']}/content", params={"rev": entry["rev"]})
        assert r.content == b"kept"


def test_trash_is_purged_some_days_after_the_delete(live: LiveServer) -> None:
    set_policy(live, "ret-trash", {"trash_retention_days": 7})
    with new_user(live, tenant="ret-trash") as alice:
        a = put(alice, "/old/a.txt", b"a")
        put(alice, "/old/sub/b.txt", b"b")
        keep = put(alice, "/keep.txt", b"k")
        delete(alice, alice.get("/api/v1/metadata", params={"path": "/old"}).json())
        blobs = blob_ids(live, a["id"])
        now = time.time()
        assert housekeeping(live).run_once(now + 6 * DAY).trashed == 0
        assert [i["path"] for i in trash(alice)] == ["/old"]
        swept = housekeeping(live).run_once(now + 8 * DAY)
        assert swept.trashed == 4  # /old, /old/a.txt, /old/sub, /old/sub/b.txt
        assert trash(alice) == []
        assert not any(blob_exists(live, b) for b in blobs)
        assert alice.get(f"/api/v1/files/{keep['id']}/content").content == b"k"


def test_a_users_own_rule_replaces_the_tenants(live: LiveServer) -> None:
    set_policy(live, "ret-user", {"max_versions": 1})
    with new_user(live, tenant="ret-user") as alice, new_user(live, tenant="ret-user") as bob:
        tenant_id = live.identity.tenant_id("ret-user")
        bob_id = bob.get("/api/v1/me").json()["user"]["id"]
        with live.app.state.db.write() as conn:  # type: ignore[attr-defined]
            policy.save_rules(conn, tenant_id, bob_id, policy.parse_rules({"max_versions": 3}))
        for client in (alice, bob):
            for body in (b"1", b"2", b"3"):
                entry = put(client, "/f.txt", body)
        housekeeping(live).run_once(time.time())
        assert (
            len(revs(alice, alice.get("/api/v1/metadata", params={"path": "/f.txt"}).json()["id"]))
            == 1
        )
        assert len(revs(bob, entry["id"])) == 3


def test_me_shows_current_versions_and_trash(live: LiveServer) -> None:
    with new_user(live, tenant="ret-me") as alice:
        put(alice, "/doc.txt", b"x" * 100)
        put(alice, "/doc.txt", b"y" * 50)
        delete(alice, put(alice, "/bin.txt", b"z" * 30))
        assert storage(alice) == {
            "used": 180,
            "current": 50,
            "versions": 100,
            "trash": 30,
            "quota": None,
            "scope": "user",
        }
        # Retention that keeps no earlier version counts none, before housekeeping runs.
        set_policy(live, "ret-me", {"max_versions": 1, "storage_quota": 10_000})
        expected = {
            "used": 80,
            "current": 50,
            "versions": 0,
            "trash": 30,
            "quota": 10_000,
            "scope": "tenant",
        }
        assert storage(alice) == expected
        housekeeping(live).run_once(time.time())
        assert storage(alice) == expected


def test_the_quota_counts_the_trash_until_it_is_purged(live: LiveServer) -> None:
    set_policy(live, "ret-quota", {"storage_quota": 100})
    with new_user(live, tenant="ret-quota") as alice:
        old = put(alice, "/big.bin", b"b" * 60)
        delete(alice, old)
        refused = alice.post(
            "/api/v1/uploads",
            headers={"Upload-Length": "60", "Upload-Metadata": "filename bmV3LmJpbg=="},
        )
        assert refused.status_code == 403
        assert refused.json()["rule"] == "storage_quota"
        assert "60 used" in refused.json()["detail"]
        item = trash(alice)[0]
        assert alice.delete(f"/api/v1/trash/{item['id']}").status_code == 204
        put(alice, "/new.bin", b"n" * 60)
        assert storage(alice)["used"] == 60


def test_retention_rules_are_validated(live: LiveServer) -> None:
    for bad in (
        {"max_versions": 0},
        {"version_retention_days": -1},
        {"trash_retention_days": "week"},
    ):
        with pytest.raises(policy.PolicyError):
            policy.parse_rules(bad)
    rules = policy.parse_rules(
        {"max_versions": 5, "version_retention_days": 30, "trash_retention_days": 14}
    )
    assert (rules.max_versions, rules.version_retention_days, rules.trash_retention_days) == (
        5,
        30,
        14,
    )


def test_doomed_versions_counts_age_from_the_replacement() -> None:
    day = DAY
    # (row id, created_at, blob), newest first: created at days 100, 50 and 0.
    history = [(3, 100 * day, "c"), (2, 50 * day, "b"), (1, 0.0, "a")]
    # Row 1 was replaced on day 50, row 2 on day 100.
    assert doomed_versions(history, Retention(version_days=30), 110 * day) == [1]
    assert doomed_versions(history, Retention(version_days=30), 140 * day) == [2, 1]
    assert doomed_versions(history, Retention(max_versions=2), 0) == [1]
    assert doomed_versions(history, Retention(max_versions=1, version_days=999), 0) == [2, 1]
    assert doomed_versions(history[:1], Retention(max_versions=1, version_days=0), 1e12) == []
