"""Asynchronous transfers end to end on the live server: folder copy and move, inbox,
push to a real receiver, idempotent POST, cancel, and refusals that change nothing."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from urllib.parse import unquote

import httpx
import pytest

from tests.server.ops_helpers import (
    content,
    ops_client,
    start_transfer,
    upload,
    wait_transfer,
)
from tests.support.live import LiveServer
from tests.support.receiver import Receiver, Reply


@pytest.fixture
def bob(ops_server: LiveServer) -> Iterator[httpx.Client]:
    with ops_client(ops_server, email="bob@example.com") as client:
        yield client


def listing(client: httpx.Client, path: str) -> list[str]:
    r = client.get("/api/v1/files", params={"path": path})
    assert r.status_code == 200, r.text
    return [e["name"] for e in r.json()["entries"]]


def test_folder_copy_lands_verified_and_keeps_the_source(alice: httpx.Client) -> None:
    data = b"invoice 42\n" * 1000
    source = upload(alice, "/out/invoice.txt", data)
    started = start_transfer(alice, [source["id"]], {"type": "folder", "path": "/archive/2026"})
    assert started["state"] in ("queued", "running", "completed")
    assert started["bytes_total"] == len(data)
    done = wait_transfer(alice, started["id"])
    assert done["state"] == "completed", done
    assert done["bytes_done"] == done["bytes_total"] == len(data)
    assert done["files_done"] == done["files_total"] == 1
    assert [e["path"] for e in done["result"]["entries"]] == ["/archive/2026/invoice.txt"]
    assert content(alice, "/archive/2026/invoice.txt") == data
    copy = alice.get("/api/v1/metadata", params={"path": "/archive/2026/invoice.txt"}).json()
    assert copy["sha256"] == hashlib.sha256(data).hexdigest()
    assert copy["id"] != source["id"]
    assert content(alice, "/out/invoice.txt") == data


def test_copy_onto_a_taken_name_renames_overwrites_or_fails(alice: httpx.Client) -> None:
    new = upload(alice, "/in/a.txt", b"new")
    upload(alice, "/dest/a.txt", b"old")
    renamed = wait_transfer(
        alice, start_transfer(alice, [new["id"]], {"type": "folder", "path": "/dest"})["id"]
    )
    assert renamed["state"] == "completed"
    assert renamed["result"]["entries"][0]["path"] == "/dest/a (2).txt"
    assert content(alice, "/dest/a.txt") == b"old"
    assert content(alice, "/dest/a (2).txt") == b"new"

    failed = wait_transfer(
        alice,
        start_transfer(
            alice, [new["id"]], {"type": "folder", "path": "/dest", "on_conflict": "fail"}
        )["id"],
    )
    assert failed["state"] == "failed"
    assert failed["error"]["code"] == "already-exists"
    assert sorted(listing(alice, "/dest")) == ["a (2).txt", "a.txt"]

    before = alice.get("/api/v1/metadata", params={"path": "/dest/a.txt"}).json()
    overwritten = wait_transfer(
        alice,
        start_transfer(
            alice, [new["id"]], {"type": "folder", "path": "/dest", "on_conflict": "overwrite"}
        )["id"],
    )
    assert overwritten["state"] == "completed"
    after = alice.get("/api/v1/metadata", params={"path": "/dest/a.txt"}).json()
    assert after["id"] == before["id"] and after["rev"] != before["rev"]
    assert content(alice, "/dest/a.txt") == b"new"


def test_folder_move_moves_the_entry(alice: httpx.Client) -> None:
    first = upload(alice, "/drop/one.csv", b"1,2,3")
    second = upload(alice, "/drop/two.csv", b"4,5,6")
    done = wait_transfer(
        alice,
        start_transfer(
            alice, [first["id"], second["id"]], {"type": "folder", "path": "/done", "mode": "move"}
        )["id"],
    )
    assert done["state"] == "completed", done
    assert done["files_done"] == 2
    assert sorted(listing(alice, "/done")) == ["one.csv", "two.csv"]
    assert listing(alice, "/drop") == []
    moved = alice.get(f"/api/v1/files/{first['id']}").json()
    assert moved["path"] == "/done/one.csv"


def test_inbox_delivers_a_copy_to_a_colleague(alice: httpx.Client, bob: httpx.Client) -> None:
    data = b"contract draft"
    source = upload(alice, "/contract.pdf", data)
    bob.get("/api/v1/me")
    done = wait_transfer(
        alice,
        start_transfer(alice, [source["id"]], {"type": "inbox", "recipient": "Bob@Example.com"})[
            "id"
        ],
    )
    assert done["state"] == "completed", done
    assert done["destination"]["recipient"] == "bob@example.com"
    assert content(bob, "/Inbox/contract.pdf") == data
    assert content(alice, "/contract.pdf") == data
    assert alice.get("/api/v1/metadata", params={"path": "/Inbox/contract.pdf"}).status_code == 404
    again = wait_transfer(
        alice,
        start_transfer(alice, [source["id"]], {"type": "inbox", "recipient": "bob@example.com"})[
            "id"
        ],
    )
    assert again["state"] == "completed"
    assert sorted(listing(bob, "/Inbox")) == ["contract (2).pdf", "contract.pdf"]


def test_inbox_of_someone_outside_the_tenant_is_refused(
    ops_server: LiveServer, alice: httpx.Client
) -> None:
    with ops_client(ops_server, tenant="globex", email="gina@globex.example") as gina:
        gina.get("/api/v1/me")
        source = upload(alice, "/secret.txt", b"internal")
        r = alice.post(
            "/api/v1/transfers",
            json={
                "file_ids": [source["id"]],
                "destination": {"type": "inbox", "recipient": "gina@globex.example"},
            },
        )
        assert r.status_code == 400
        assert r.json()["type"].endswith("/validation")
        assert alice.get("/api/v1/transfers").json()["transfers"] == []
        assert gina.get("/api/v1/files", params={"path": "/"}).json()["entries"] == []


def test_push_puts_each_file_to_the_endpoint(alice: httpx.Client, receiver: Receiver) -> None:
    receiver.default = Reply(201)
    one = upload(alice, "/export/día 1.bin", b"\x00\x01" * 5000)
    two = upload(alice, "/export/day2.bin", b"second")
    done = wait_transfer(
        alice,
        start_transfer(
            alice,
            [one["id"], two["id"]],
            {
                "type": "push",
                "url": receiver.url + "/incoming/{name}",
                "headers": {"Authorization": "Bearer partner-token"},
            },
        )["id"],
    )
    assert done["state"] == "completed", done
    assert done["destination"]["headers"] == ["Authorization"]
    assert "partner-token" not in str(done)
    got = receiver.requests
    assert [(r.method, unquote(r.path)) for r in got] == [
        ("PUT", "/incoming/día 1.bin"),
        ("PUT", "/incoming/day2.bin"),
    ]
    assert got[0].body == b"\x00\x01" * 5000
    assert got[0].headers["authorization"] == "Bearer partner-token"
    digest = base64.b64encode(hashlib.sha256(got[0].body).digest()).decode()
    assert got[0].headers["content-digest"] == f"sha-256=:{digest}:"
    assert got[0].headers["dropline-transfer-id"] == done["id"]
    assert [r["status_code"] for r in done["result"]["responses"]] == [201, 201]
    assert done["bytes_done"] == 10000 + 6


def test_push_retries_a_busy_endpoint(alice: httpx.Client, receiver: Receiver) -> None:
    receiver.script = [Reply(503), Reply(200)]
    source = upload(alice, "/report.csv", b"a,b\n1,2\n")
    done = wait_transfer(
        alice,
        start_transfer(
            alice, [source["id"]], {"type": "push", "url": receiver.url + "/r", "method": "POST"}
        )["id"],
    )
    assert done["state"] == "completed", done
    assert done["attempts"] == 2
    assert [r.method for r in receiver.requests] == ["POST", "POST"]
    assert receiver.requests[1].body == b"a,b\n1,2\n"


def test_push_refused_by_the_endpoint_fails_the_transfer(
    alice: httpx.Client, receiver: Receiver
) -> None:
    receiver.default = Reply(403, body=b"not allowed here")
    source = upload(alice, "/x.txt", b"x")
    done = wait_transfer(
        alice, start_transfer(alice, [source["id"]], {"type": "push", "url": receiver.url})["id"]
    )
    assert done["state"] == "failed"
    assert done["error"]["code"] == "endpoint-refused"
    assert "403" in done["error"]["message"]
    assert len(receiver.requests) == 1


def test_push_to_a_dead_endpoint_gives_up_after_the_schedule(alice: httpx.Client) -> None:
    dead = Receiver()
    dead.reserve_port()
    source = upload(alice, "/y.txt", b"y")
    done = wait_transfer(
        alice, start_transfer(alice, [source["id"]], {"type": "push", "url": dead.url})["id"]
    )
    assert done["state"] == "failed"
    assert done["error"]["code"] == "unavailable"
    assert done["attempts"] == 4  # the first try and one per delay of the schedule


def test_idempotency_key_returns_the_first_transfer(alice: httpx.Client) -> None:
    source = upload(alice, "/once.txt", b"once")
    body = {"file_ids": [source["id"]], "destination": {"type": "folder", "path": "/copies"}}
    first = alice.post("/api/v1/transfers", json=body, headers={"Idempotency-Key": "order-7"})
    second = alice.post("/api/v1/transfers", json=body, headers={"Idempotency-Key": "order-7"})
    assert first.status_code == second.status_code == 202
    assert second.json()["id"] == first.json()["id"]
    assert second.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    wait_transfer(alice, first.json()["id"])
    assert listing(alice, "/copies") == ["once.txt"]
    assert len(alice.get("/api/v1/transfers").json()["transfers"]) == 1

    other = {"file_ids": [source["id"]], "destination": {"type": "folder", "path": "/else"}}
    reused = alice.post("/api/v1/transfers", json=other, headers={"Idempotency-Key": "order-7"})
    assert reused.status_code == 422
    assert reused.json()["type"].endswith("/idempotency-key-reused")
    assert len(alice.get("/api/v1/transfers").json()["transfers"]) == 1


def test_idempotency_keys_are_per_user(alice: httpx.Client, bob: httpx.Client) -> None:
    mine = upload(alice, "/m.txt", b"m")
    theirs = upload(bob, "/t.txt", b"t")
    a = alice.post(
        "/api/v1/transfers",
        json={"file_ids": [mine["id"]], "destination": {"type": "link"}},
        headers={"Idempotency-Key": "k1"},
    )
    b = bob.post(
        "/api/v1/transfers",
        json={"file_ids": [theirs["id"]], "destination": {"type": "link"}},
        headers={"Idempotency-Key": "k1"},
    )
    assert a.status_code == b.status_code == 202
    assert a.json()["id"] != b.json()["id"]


def test_cancel_stops_a_waiting_transfer(alice: httpx.Client) -> None:
    dead = Receiver()
    dead.reserve_port()
    source = upload(alice, "/z.txt", b"z")
    started = start_transfer(alice, [source["id"]], {"type": "push", "url": dead.url})
    r = alice.delete(f"/api/v1/transfers/{started['id']}")
    assert r.status_code == 200
    done = wait_transfer(alice, started["id"])
    assert done["state"] == "cancelled"
    assert alice.delete(f"/api/v1/transfers/{started['id']}").json()["state"] == "cancelled"


def test_a_finished_copy_cannot_be_cancelled(alice: httpx.Client) -> None:
    source = upload(alice, "/c.txt", b"c")
    done = wait_transfer(
        alice, start_transfer(alice, [source["id"]], {"type": "folder", "path": "/d"})["id"]
    )
    r = alice.delete(f"/api/v1/transfers/{done['id']}")
    assert r.status_code == 409
    assert alice.get(f"/api/v1/transfers/{done['id']}").json()["state"] == "completed"


def test_bad_requests_are_refused_and_store_nothing(alice: httpx.Client, bob: httpx.Client) -> None:
    mine = upload(alice, "/docs/a.txt", b"a")
    folder = alice.get("/api/v1/metadata", params={"path": "/docs"}).json()
    bobs = upload(bob, "/b.txt", b"b")
    cases = [
        ({"file_ids": [folder["id"]], "destination": {"type": "link"}}, 400),
        ({"file_ids": [bobs["id"]], "destination": {"type": "link"}}, 404),
        ({"file_ids": ["no-such-id"], "destination": {"type": "link"}}, 404),
        ({"file_ids": [], "destination": {"type": "link"}}, 400),
        ({"file_ids": [mine["id"], mine["id"]], "destination": {"type": "link"}}, 400),
        ({"file_ids": [mine["id"]], "destination": {"type": "fax"}}, 400),
        ({"file_ids": [mine["id"]], "destination": {"type": "folder", "path": "a/../b"}}, 400),
        ({"file_ids": [mine["id"]], "destination": {"type": "inbox", "recipient": "x@y.z"}}, 400),
        ({"file_ids": [mine["id"]], "destination": {"type": "link", "password": "short"}}, 400),
        (
            {"file_ids": [mine["id"]], "destination": {"type": "link", "allowed_cidrs": ["x"]}},
            400,
        ),
        (
            {
                "file_ids": [mine["id"]],
                "destination": {
                    "type": "push",
                    "url": "https://x.example",
                    "headers": {"Host": "a"},
                },
            },
            400,
        ),
    ]
    for body, status in cases:
        r = alice.post("/api/v1/transfers", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert alice.post("/api/v1/transfers", content=b"{not json").status_code == 400
    assert alice.get("/api/v1/transfers").json()["transfers"] == []


def test_transfers_need_the_transfers_scope(ops_server: LiveServer) -> None:
    with ops_client(ops_server, scopes=("files:read", "files:write")) as plain:
        source = upload(plain, "/p.txt", b"p")
        r = plain.post(
            "/api/v1/transfers", json={"file_ids": [source["id"]], "destination": {"type": "link"}}
        )
        assert r.status_code == 403


def test_other_users_cannot_see_or_cancel_a_transfer(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    source = upload(alice, "/mine.txt", b"mine")
    started = start_transfer(alice, [source["id"]], {"type": "link"})
    assert bob.get(f"/api/v1/transfers/{started['id']}").status_code == 404
    assert bob.delete(f"/api/v1/transfers/{started['id']}").status_code == 404
    assert bob.get("/api/v1/transfers").json()["transfers"] == []


def test_push_to_private_addresses_is_refused_by_default(live_server: LiveServer) -> None:
    with ops_client(live_server) as client:
        source = upload(client, "/q.txt", b"q")
        for url in ("https://127.0.0.1/in", "https://localhost/in", "http://example.com/in"):
            r = client.post(
                "/api/v1/transfers",
                json={"file_ids": [source["id"]], "destination": {"type": "push", "url": url}},
            )
            assert r.status_code == 400, r.text
            assert r.json()["type"].endswith("/target-refused")
        assert client.get("/api/v1/transfers").json()["transfers"] == []
