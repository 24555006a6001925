"""The set-based publish of a batch: its rows are exactly those of files published one
after another (change numbers, audit chain, outbox events), and a policy that refuses
some file of the batch still refuses only that file, with one denial each."""

from __future__ import annotations

import os

import httpx

from dropline.server.audit import trail
from dropline.server.storage import schema
from tests.server.guard.test_policy import set_policy
from tests.server.uploads.test_uploads_batch import (
    batch,
    blobs,
    content,
    leftovers,
    outbox,
    rows,
    slugs,
    spec,
)
from tests.support.live import LiveServer


def test_the_rows_of_a_batch_agree_with_each_other_and_the_chain_verifies(
    client: httpx.Client, live_server: LiveServer
) -> None:
    first = os.urandom(100)
    r = batch(client, [(spec("/set/old.bin", first), first)])
    assert slugs(r) == ["ok"]
    old_rev = r.json()["results"][0]["entry"]["rev"]
    datas = [os.urandom(64 + i) for i in range(6)]
    items = [(spec(f"/set/deep/d{i % 3}/f{i}.bin", d), d) for i, d in enumerate(datas)]
    items.append((spec("/set/old.bin", datas[0], if_rev=old_rev), datas[0]))  # a new version
    items.append((spec("/set/old.bin/inside.bin", b"x"), b"x"))  # under a file: refused
    items.append((spec("/set/late.bin", b"y", if_rev="0123456789abcdef"), b"y"))  # stale rev
    r = batch(client, items)
    assert slugs(r) == ["ok"] * 7 + ["conflict", "precondition-failed"]

    feed = client.get("/api/v1/changes").json()["changes"]
    mine = feed[2:]  # after /set and the first /set/old.bin
    assert [(c["action"], c["entry"]["path"]) for c in mine] == [
        ("created", "/set/deep"),
        ("created", "/set/deep/d0"),
        ("created", "/set/deep/d0/f0.bin"),
        ("created", "/set/deep/d1"),
        ("created", "/set/deep/d1/f1.bin"),
        ("created", "/set/deep/d2"),
        ("created", "/set/deep/d2/f2.bin"),
        ("created", "/set/deep/d0/f3.bin"),
        ("created", "/set/deep/d1/f4.bin"),
        ("created", "/set/deep/d2/f5.bin"),
        ("modified", "/set/old.bin"),
    ]
    # Each file's event carries the number its change got, and every parent is right.
    seq_of = {c["entry"]["path"]: c["seq"] for c in mine}
    events = [e["payload"] for e in outbox(live_server) if e["type"] == "file.uploaded"][1:]
    assert [(p["entry"]["path"], p["seq"]) for p in events] == [
        (path, seq_of[path]) for path, _ in ((s["path"], d) for s, d in items[:7])
    ]
    by_path = {c["entry"]["path"]: c["entry"] for c in feed}
    for change in mine:
        parent = change["entry"]["path"].rpartition("/")[0]
        assert change["entry"]["parent_id"] == by_path[parent]["id"]
    assert content(client, "/set/old.bin") == datas[0]
    old_id = by_path["/set/old.bin"]["id"]
    revisions = client.get(f"/api/v1/files/{old_id}/revisions").json()["revisions"]
    assert [v["sha256"] for v in revisions] == [items[6][0]["sha256"], spec("", first)["sha256"]]
    # An audit row per change, in feed order, chained.
    audited = [
        (a.action, a.resource)
        for a in rows(live_server, schema.audit_events)
        if a.action in ("file.created", "file.modified")
    ][2:]
    assert audited == [(f"file.{c['action']}", c["entry"]["path"]) for c in mine]
    report = trail.verify_chain(live_server.app.state.db)  # type: ignore[attr-defined]
    assert report.ok, report
    assert len(blobs(live_server)) == 8  # first, 6 new files, the new version
    assert leftovers(live_server) == []


def test_a_batch_over_the_quota_publishes_in_order_until_it_is_full(
    client: httpx.Client, live_server: LiveServer
) -> None:
    set_policy(live_server, {"storage_quota": 250, "max_versions": 1})
    items = [(spec(f"/q/f{i}.bin", bytes([i]) * 100), bytes([i]) * 100) for i in range(4)]
    r = batch(client, items)
    # Each file alone fits; together they do not: the first two are published.
    assert slugs(r) == ["ok", "ok", "policy-denied", "policy-denied"]
    listed = client.get("/api/v1/files", params={"path": "/q"}).json()["entries"]
    assert [e["name"] for e in listed] == ["f0.bin", "f1.bin"]
    audit = [(a.action, a.resource) for a in rows(live_server, schema.audit_events)]
    # One denial per refused file, and no row of the set-based attempt that was undone.
    assert audit.count(("policy.denied", "/q/f2.bin")) == 1
    assert audit.count(("policy.denied", "/q/f3.bin")) == 1
    assert audit.count(("file.created", "/q/f0.bin")) == 1
    assert ("file.created", "/q/f2.bin") not in audit
    feed = client.get("/api/v1/changes").json()["changes"]
    assert [c["entry"]["path"] for c in feed] == ["/q", "/q/f0.bin", "/q/f1.bin"]
    uploaded = [e for e in outbox(live_server) if e["type"] == "file.uploaded"]
    assert [e["payload"]["entry"]["path"] for e in uploaded] == ["/q/f0.bin", "/q/f1.bin"]
    assert [e["payload"]["seq"] for e in uploaded] == [c["seq"] for c in feed[1:]]
    assert trail.verify_chain(live_server.app.state.db).ok  # type: ignore[attr-defined]
    assert len(blobs(live_server)) == 2
    assert leftovers(live_server) == []
