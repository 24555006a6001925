"""Change feed: paging, latest cursor, long-poll wake-ups, retention and expired cursors."""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from dropline.server.settings import Settings
from tests.server.tus import upload
from tests.support.live import LiveServer, running_server


def test_every_change_is_in_the_feed_in_order(client: httpx.Client) -> None:
    upload(client, "/f/a.txt", b"1")
    upload(client, "/f/a.txt", b"2")
    a = client.get("/api/v1/metadata", params={"path": "/f/a.txt"}).json()
    client.patch(f"/api/v1/files/{a['id']}", json={"name": "b.txt"})
    client.delete(f"/api/v1/files/{a['id']}")
    page = client.get("/api/v1/changes").json()
    got = [(c["action"], c["entry"]["path"], c["old_path"]) for c in page["changes"]]
    assert got == [
        ("created", "/f", None),
        ("created", "/f/a.txt", None),
        ("modified", "/f/a.txt", None),
        ("moved", "/f/b.txt", "/f/a.txt"),
        ("deleted", "/f/b.txt", None),
    ]
    seqs = [c["seq"] for c in page["changes"]]
    assert seqs == sorted(seqs)
    assert page["cursor"] == str(seqs[-1])
    assert page["has_more"] is False
    assert page["changes"][2]["entry"]["sha256"] != page["changes"][1]["entry"]["sha256"]


def test_paging_with_cursor_and_limit(client: httpx.Client) -> None:
    for i in range(5):
        upload(client, f"/p{i}.txt", b"x")
    first = client.get("/api/v1/changes", params={"limit": 2}).json()
    assert len(first["changes"]) == 2
    assert first["has_more"] is True
    rest = client.get("/api/v1/changes", params={"cursor": first["cursor"]}).json()
    paths = [c["entry"]["path"] for c in first["changes"] + rest["changes"]]
    assert paths == [f"/p{i}.txt" for i in range(5)]
    assert rest["has_more"] is False
    empty = client.get("/api/v1/changes", params={"cursor": rest["cursor"]}).json()
    assert empty == {"changes": [], "cursor": rest["cursor"], "has_more": False}


def test_latest_cursor_skips_the_past(client: httpx.Client) -> None:
    upload(client, "/old.txt", b"x")
    cursor = client.get("/api/v1/changes/latest-cursor").json()["cursor"]
    upload(client, "/new.txt", b"x")
    page = client.get("/api/v1/changes", params={"cursor": cursor}).json()
    assert [c["entry"]["path"] for c in page["changes"]] == ["/new.txt"]


def test_malformed_cursor_and_limits_are_400(client: httpx.Client) -> None:
    for params in ({"cursor": "abc"}, {"cursor": "-1"}, {"cursor": "9" * 40}, {"limit": 0}):
        r = client.get("/api/v1/changes", params=params)
        assert r.status_code == 400, params
    for params in ({"timeout": "-1"}, {"timeout": "nan"}, {"timeout": "soon"}, {"cursor": "x"}):
        assert client.get("/api/v1/changes/wait", params=params).status_code == 400, params


def test_long_poll_is_woken_by_a_change(client: httpx.Client) -> None:
    cursor = client.get("/api/v1/changes/latest-cursor").json()["cursor"]
    result: dict[str, object] = {}

    def wait() -> None:
        r = client.get("/api/v1/changes/wait", params={"cursor": cursor, "timeout": 60}, timeout=90)
        result["body"] = r.json()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.3)  # let the long-poll park before the change lands
    assert waiter.is_alive()
    upload(client, "/wake.txt", b"x")
    waiter.join(60)
    body = result["body"]
    assert isinstance(body, dict)
    assert [c["entry"]["path"] for c in body["changes"]] == ["/wake.txt"]


def test_long_polls_woken_together_share_one_read_of_the_feed(
    client: httpx.Client, live_server: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Twenty long-polls at one cursor, one change: all answered with it, from one query
    (a thousand woken at once were a thousand queries)."""
    feed = live_server.app.state.changes  # type: ignore[attr-defined]
    cursor = client.get("/api/v1/changes/latest-cursor").json()["cursor"]
    bodies: list[dict[str, Any]] = []

    def wait() -> None:
        with httpx.Client(base_url=client.base_url, headers=client.headers) as own:
            r = own.get(
                "/api/v1/changes/wait", params={"cursor": cursor, "timeout": 60}, timeout=90
            )
            bodies.append(r.json())

    waiters = [threading.Thread(target=wait) for _ in range(20)]
    for waiter in waiters:
        waiter.start()
    # Parked: all registered, and no first read gathering or under way any more.
    deadline = time.monotonic() + 30
    while feed.notifier.waiting() < 20 or feed.reads._gathering or feed.reads._running:
        assert time.monotonic() < deadline, "the long-polls never all parked"
        time.sleep(0.02)
    time.sleep(0.2)  # from their first (empty) page to waiting: a few turns of the loop
    reads: list[str | None] = []
    read = feed.reads._read

    def counted(principal: Any, at: str | None, limit: int) -> Any:
        reads.append(at)
        return read(principal, at, limit)

    monkeypatch.setattr(feed.reads, "_read", counted)
    upload(client, "/burst.txt", b"x")
    for waiter in waiters:
        waiter.join(60)
    paths = [[c["entry"]["path"] for c in body["changes"]] for body in bodies]
    assert paths == [["/burst.txt"]] * 20
    # One read; two if a long-poll on a very busy machine was still between its first
    # page and its wait when the change landed (without sharing: twenty).
    assert reads in ([cursor], [cursor, cursor])


def test_long_poll_returns_at_once_when_changes_exist(client: httpx.Client) -> None:
    upload(client, "/ready.txt", b"x")
    r = client.get("/api/v1/changes/wait", params={"cursor": "0", "timeout": 60})
    assert [c["entry"]["path"] for c in r.json()["changes"]] == ["/ready.txt"]


def test_long_poll_times_out_with_an_empty_page(client: httpx.Client) -> None:
    cursor = client.get("/api/v1/changes/latest-cursor").json()["cursor"]
    r = client.get("/api/v1/changes/wait", params={"cursor": cursor, "timeout": 0.2})
    assert r.json() == {"changes": [], "cursor": cursor, "has_more": False}


def test_long_poll_is_not_woken_by_another_users_change(
    client: httpx.Client, bob: httpx.Client
) -> None:
    cursor = client.get("/api/v1/changes/latest-cursor").json()["cursor"]
    result: dict[str, object] = {}

    def wait() -> None:
        r = client.get("/api/v1/changes/wait", params={"cursor": cursor, "timeout": 1.5})
        result["body"] = r.json()

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)
    upload(bob, "/bobs.txt", b"x")
    waiter.join(30)
    assert result["body"] == {"changes": [], "cursor": cursor, "has_more": False}


def test_pruned_feed_expires_old_cursors(live_server: LiveServer, client: httpx.Client) -> None:
    upload(client, "/a.txt", b"x")
    upload(client, "/b.txt", b"x")
    old_cursor = "0"
    feed = live_server.app.state.changes  # type: ignore[attr-defined]
    assert feed.prune(now=time.time() + feed.retention_seconds + 10) == 2
    r = client.get("/api/v1/changes", params={"cursor": old_cursor})
    assert r.status_code == 410
    assert r.json()["type"] == "https://dropline.dev/problems/cursor-expired"
    waited = client.get("/api/v1/changes/wait", params={"cursor": old_cursor, "timeout": 1})
    assert waited.status_code == 410
    # The documented recovery: take the latest cursor and carry on from there.
    latest = client.get("/api/v1/changes/latest-cursor").json()["cursor"]
    upload(client, "/c.txt", b"x")
    page = client.get("/api/v1/changes", params={"cursor": latest}).json()
    assert [c["entry"]["path"] for c in page["changes"]] == ["/c.txt"]
    # Without a cursor the feed starts at the retained beginning, not at an error.
    assert client.get("/api/v1/changes").status_code == 200


def test_prune_keeps_recent_changes(live_server: LiveServer, client: httpx.Client) -> None:
    upload(client, "/keep.txt", b"x")
    feed = live_server.app.state.changes  # type: ignore[attr-defined]
    assert feed.prune() == 0
    assert len(client.get("/api/v1/changes", params={"cursor": "0"}).json()["changes"]) == 1


def test_server_shutdown_answers_waiting_long_polls(server_settings: Settings) -> None:
    answers: list[httpx.Response] = []
    with running_server(server_settings) as live:
        key = live.new_key()
        headers = {"Authorization": f"Bearer {key}"}
        cursor = httpx.get(live.url + "/api/v1/changes/latest-cursor", headers=headers).json()[
            "cursor"
        ]

        def long_poll() -> None:
            answers.append(
                httpx.get(
                    live.url + "/api/v1/changes/wait",
                    params={"cursor": cursor, "timeout": 120},
                    headers=headers,
                    timeout=130,
                )
            )

        poller = threading.Thread(target=long_poll)
        poller.start()
        time.sleep(0.5)  # let the long-poll reach the server and start waiting
    # Leaving the block shut the server down; without the wake-up the poll, and the
    # server with it, would still be waiting out its 120 s.
    poller.join(timeout=10)
    assert not poller.is_alive()
    assert answers[0].status_code == 200
    assert answers[0].json()["changes"] == []
    assert answers[0].json()["cursor"] == cursor
