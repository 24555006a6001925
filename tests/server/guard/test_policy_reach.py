"""Policy where it was missing: listing a restricted folder is checked like reading a file
in it (by path and by parent id), so is the metadata of anything under it (by path and
by id), the change feed leaves out what is under it, and push transfers go only to the
hosts a tenant's ``push_allowed_hosts`` permits, checked when the transfer is created
and when it runs."""

from __future__ import annotations

import httpx
import pytest

from dropline.server.guard import policy
from tests.server import tus
from tests.server.guard.test_policy import assert_denied, denials, set_policy
from tests.server.ops_helpers import ops_client, start_transfer, upload, wait_transfer
from tests.support.live import LiveServer
from tests.support.receiver import Receiver, Reply

RESTRICTED = {
    "folders": [{"path": "/restricted", "tags": ["restricted"], "require_scope": "admin"}]
}


def test_listing_a_restricted_folder_needs_what_reading_it_needs(
    live_server: LiveServer, client: httpx.Client
) -> None:
    assert tus.upload(client, "/restricted/deep/plan.txt", b"secret").status_code == 201
    folder = client.get("/api/v1/metadata", params={"path": "/restricted"}).json()
    deep = client.get("/api/v1/metadata", params={"path": "/restricted/deep"}).json()
    plan = client.get("/api/v1/metadata", params={"path": "/restricted/deep/plan.txt"}).json()
    set_policy(live_server, RESTRICTED)

    for params in (
        {"path": "/restricted"},
        {"path": "/restricted/deep"},
        {"parent_id": folder["id"]},
        {"parent_id": deep["id"]},
    ):
        r = client.get("/api/v1/files", params=params)
        assert_denied(r, "folders")
        assert "plan.txt" not in r.text and "deep" not in r.json()["detail"]
    # Exactly as reading a file in it is; the folder itself still shows in its parent.
    assert_denied(client.get(f"/api/v1/files/{plan['id']}/content"), "folders")
    root = client.get("/api/v1/files", params={"path": "/"})
    assert [e["name"] for e in root.json()["entries"]] == ["restricted"]
    assert [d[1:] for d in denials(live_server)] == [
        ("folders", "/restricted"),
        ("folders", "/restricted/deep"),
        ("folders", "/restricted"),
        ("folders", "/restricted/deep"),
        ("folders", "/restricted/deep"),  # the file's content: its folder is out of sight
    ]

    # A credential with the scope the folder names lists it.
    key = live_server.new_key(scopes=("files:read", "files:write", "admin"))
    headers = {"Authorization": f"Bearer {key}"}
    allowed = httpx.get(
        live_server.url + "/api/v1/files", params={"path": "/restricted/deep"}, headers=headers
    )
    assert allowed.status_code == 200
    assert [e["name"] for e in allowed.json()["entries"]] == ["plan.txt"]


def test_metadata_under_a_restricted_folder_needs_what_listing_it_needs(
    live_server: LiveServer, client: httpx.Client
) -> None:
    assert tus.upload(client, "/restricted/deep/plan.txt", b"secret").status_code == 201
    plan = client.get("/api/v1/metadata", params={"path": "/restricted/deep/plan.txt"}).json()
    set_policy(live_server, RESTRICTED)

    for r in (
        client.get(f"/api/v1/files/{plan['id']}"),
        client.get("/api/v1/metadata", params={"path": "/restricted/deep/plan.txt"}),
        client.get("/api/v1/metadata", params={"path": "/restricted/deep"}),
    ):
        assert_denied(r, "folders")
        assert "plan.txt" not in r.text
    # The folder itself shows, as it does in its parent's listing.
    assert client.get("/api/v1/metadata", params={"path": "/restricted"}).status_code == 200


def _feed(client: httpx.Client, cursor: str) -> list[tuple[str, str, str | None]]:
    r = client.get("/api/v1/changes", params={"cursor": cursor})
    assert r.status_code == 200
    return [(c["action"], c["entry"]["path"], c["old_path"]) for c in r.json()["changes"]]


def test_the_change_feed_leaves_out_what_is_under_a_restricted_folder(
    live_server: LiveServer, client: httpx.Client
) -> None:
    start = client.get("/api/v1/changes/latest-cursor").json()["cursor"]
    assert tus.upload(client, "/restricted/plan.txt", b"secret").status_code == 201
    assert tus.upload(client, "/restricted/memo.txt", b"memo").status_code == 201
    assert tus.upload(client, "/open/notes.txt", b"notes").status_code == 201
    memo = client.get("/api/v1/metadata", params={"path": "/restricted/memo.txt"}).json()
    notes = client.get("/api/v1/metadata", params={"path": "/open/notes.txt"}).json()
    everything = _feed(client, start)
    set_policy(live_server, RESTRICTED)

    # Moves across the boundary (the second by someone with the scope the folder
    # names): out of sight reads as a delete, into sight as a create.
    key = live_server.new_key(scopes=("files:read", "files:write", "admin"))
    admin = httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"})
    with admin:
        assert client.patch(
            f"/api/v1/files/{memo['id']}", json={"path": "/open/memo.txt"}
        ).is_success
        assert admin.patch(
            f"/api/v1/files/{notes['id']}", json={"path": "/restricted/notes.txt"}
        ).is_success
        seen = _feed(client, start)
        full = _feed(admin, start)
    assert seen == [
        ("created", "/restricted", None),
        ("created", "/open", None),
        ("created", "/open/notes.txt", None),
        ("created", "/open/memo.txt", None),
        ("deleted", "/open/notes.txt", None),
    ]
    assert ("created", "/restricted/plan.txt", None) in everything  # it was there to hide
    # Whoever may list the folder sees every change as it happened.
    assert ("moved", "/open/memo.txt", "/restricted/memo.txt") in full
    assert ("moved", "/restricted/notes.txt", "/open/notes.txt") in full
    assert ("created", "/restricted/plan.txt", None) in full


def test_listing_a_folder_that_needs_mtls_refuses_a_bearer_credential(
    live_server: LiveServer, client: httpx.Client
) -> None:
    assert tus.upload(client, "/secure/a.txt", b"x").status_code == 201
    set_policy(live_server, {"folders": [{"path": "/secure", "require_mtls": True}]})
    r = client.get("/api/v1/files", params={"path": "/secure"})
    assert_denied(r, "folders")
    assert "client certificate" in r.json()["detail"]


def _push(alice: httpx.Client, file_id: str, url: str) -> httpx.Response:
    return alice.post(
        "/api/v1/transfers",
        json={"file_ids": [file_id], "destination": {"type": "push", "url": url}},
    )


def test_push_goes_only_to_allowed_hosts(
    ops_server: LiveServer, alice: httpx.Client, receiver: Receiver
) -> None:
    source = upload(alice, "/report.csv", b"a,b\n1,2\n")
    set_policy(ops_server, {"push_allowed_hosts": ["files.example.com", "*.partner.example"]})
    refused = _push(alice, source["id"], receiver.url + "/in/{name}")
    assert_denied(refused, "push_allowed_hosts")
    assert "127.0.0.1" in refused.json()["detail"]
    # Nothing was created, nothing was sent.
    assert alice.get("/api/v1/transfers").json()["transfers"] == []
    assert receiver.requests == []
    assert [d[1:] for d in denials(ops_server)] == [("push_allowed_hosts", "127.0.0.1")]

    set_policy(ops_server, {"push_allowed_hosts": ["files.example.com", "127.0.0.1"]})
    receiver.default = Reply(201)
    started = _push(alice, source["id"], receiver.url + "/in/{name}")
    assert started.status_code == 202, started.text
    done = wait_transfer(alice, started.json()["id"])
    assert done["state"] == "completed", done
    assert [r.path for r in receiver.requests] == ["/in/report.csv"]


def test_a_host_taken_off_the_list_is_refused_when_the_push_runs(
    ops_server: LiveServer, alice: httpx.Client, receiver: Receiver
) -> None:
    source = upload(alice, "/report.csv", b"a,b\n1,2\n")
    set_policy(ops_server, {"push_allowed_hosts": ["127.0.0.1"]})
    # The first attempt meets a busy endpoint that asks for two seconds: time enough for
    # the administrator to take the host off the list before the retry.
    receiver.script = [Reply(503, headers={"Retry-After": "2"})]
    receiver.default = Reply(201)
    transfer = start_transfer(alice, [source["id"]], {"type": "push", "url": receiver.url + "/r"})
    receiver.wait_count(1)
    set_policy(ops_server, {"push_allowed_hosts": ["files.example.com"]})
    done = wait_transfer(alice, transfer["id"])
    assert done["state"] == "failed"
    assert done["error"]["code"] == "policy-denied"
    assert "127.0.0.1" in done["error"]["message"]
    assert len(receiver.requests) == 1  # the retry never went out
    assert ("denied", "push_allowed_hosts", "127.0.0.1") in denials(ops_server)


@pytest.mark.parametrize(
    ("allowed", "host", "expected"),
    [
        (None, "anything.example", True),
        ([], "files.example.com", False),
        (["files.example.com"], "FILES.example.com.", True),
        (["files.example.com"], "evil-files.example.com", False),
        (["*.example.com"], "a.b.example.com", True),
        (["*.example.com"], "example.com", False),
        (["*.example.com"], "badexample.com", False),
    ],
)
def test_host_patterns(allowed: list[str] | None, host: str, expected: bool) -> None:
    rules = policy.parse_rules({"push_allowed_hosts": allowed} if allowed is not None else {})
    assert policy.push_host_allowed(rules, host) is expected


def test_a_bad_host_pattern_is_refused() -> None:
    for bad in (["https://files.example.com"], ["files.example.com:443"], ["*"], ["a..b"]):
        with pytest.raises(policy.PolicyError, match="push_allowed_hosts"):
            policy.parse_rules({"push_allowed_hosts": bad})


def test_one_tenants_allow_list_leaves_another_tenant_alone(
    ops_server: LiveServer, alice: httpx.Client, receiver: Receiver
) -> None:
    receiver.default = Reply(201)
    set_policy(ops_server, {"push_allowed_hosts": []})  # acme: no push at all
    with ops_client(ops_server, tenant="globex", email="mallory@example.com") as mallory:
        theirs = upload(mallory, "/theirs.txt", b"globex")
        started = _push(mallory, theirs["id"], receiver.url + "/g")
        assert started.status_code == 202, started.text
        assert wait_transfer(mallory, started.json()["id"])["state"] == "completed"
    ours = upload(alice, "/ours.txt", b"acme")
    assert_denied(_push(alice, ours["id"], receiver.url + "/a"), "push_allowed_hosts")
    assert [r.path for r in receiver.requests] == ["/g"]
