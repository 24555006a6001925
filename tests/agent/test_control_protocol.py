"""The control socket over a real Unix socket: framing, validation, errors, events, clients."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropline.agent.control import AsyncControlClient, ControlClient, ControlError
from dropline.agent.control import protocol as p
from dropline.agent.control.server import ControlServer, EventHub, ProgressThrottle, ServerInfo
from dropline.agent.paths import AgentPaths


class Handler:
    """Answers operations from a dict, and records what it was asked."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def __call__(self, op: str, args: Any) -> dict[str, Any]:
        self.calls.append((op, args))
        if op == "status":
            return {"state": "idle", "folders": [], "issues": 0}
        if op == "settings.set" and args.key == "server_url":
            raise ControlError(p.LOCKED, p.LOCKED_MESSAGE, key="server_url")
        if op == "issues.retry" and args.id == 13:
            raise RuntimeError("boom")
        return {"op": op}


class Running:
    def __init__(self, socket_path: Path) -> None:
        self.socket_path = socket_path
        self.handler = Handler()
        self.loop = asyncio.new_event_loop()
        self.hub = EventHub()
        self.server = ControlServer(
            socket_path, self.handler, ServerInfo("test", str(socket_path.parent)), self.hub
        )
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Running:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)
        return self

    def publish(self, name: p.EventName, data: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(self.hub.publish, name, data)

    def subscribers(self) -> int:
        async def count() -> int:
            return self.hub.subscriber_count

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(10)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    paths = AgentPaths.resolve(tmp_path / "home")
    with Running(paths.socket) as r:
        yield r


def raw(sock_path: Path) -> tuple[socket.socket, Any]:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(sock_path))
    return s, s.makefile("rb")


def exchange(s: socket.socket, f: Any, payload: bytes) -> dict[str, Any]:
    s.sendall(payload)
    reply: dict[str, Any] = json.loads(f.readline())
    return reply


def test_socket_is_private_to_the_user(running: Running) -> None:
    mode = running.socket_path.stat().st_mode
    assert stat.S_ISSOCK(mode)
    assert stat.S_IMODE(mode) == 0o600


def test_hello_reports_version_and_pid(running: Running) -> None:
    with ControlClient(running.socket_path) as c:
        hello = c.hello()
    assert hello["protocol"] == [1]
    assert hello["pid"] == os.getpid()


def test_request_reaches_handler_with_validated_args(running: Running) -> None:
    with ControlClient(running.socket_path) as c:
        assert c.pause("/data/Dropline") == {"op": "pause"}
        c.history(limit=5, direction="up")
    (op, args), (op2, hargs) = running.handler.calls
    assert (op, args.folder) == ("pause", "/data/Dropline")
    assert (op2, hargs.limit, hargs.direction) == ("history.query", 5, "up")


def test_locked_setting_error_reaches_client_with_key(running: Running) -> None:
    with ControlClient(running.socket_path) as c, pytest.raises(ControlError) as err:
        c.set_setting("server_url", "https://elsewhere.example")
    assert err.value.code == "locked"
    assert err.value.message == "set by your administrator"
    assert err.value.details["key"] == "server_url"


def test_handler_crash_is_an_internal_error_and_the_connection_survives(running: Running) -> None:
    with ControlClient(running.socket_path) as c:
        with pytest.raises(ControlError) as err:
            c.retry_issue(13)
        assert err.value.code == "internal"
        assert c.status()["state"] == "idle"


@pytest.mark.parametrize(
    ("payload", "code", "reply_id"),
    [
        (b"{not json\n", "bad-json", None),
        (b"\xff\xfe\n", "bad-json", None),
        (b"[1, 2]\n", "bad-request", None),
        (b'{"v": 1, "op": "status"}\n', "bad-request", None),
        (b'{"v": 1, "id": "7", "op": "status"}\n', "bad-request", None),
        (b'{"v": 1, "id": true, "op": "status"}\n', "bad-request", None),
        (b'{"v": 2, "id": 3, "op": "status"}\n', "unsupported-version", 3),
        (b'{"id": 3, "op": "status"}\n', "unsupported-version", 3),
        (b'{"v": 1, "id": 4, "op": "launch_missiles"}\n', "unknown-op", 4),
        (b'{"v": 1, "id": 5, "op": "status", "extra": 1}\n', "bad-request", 5),
        (b'{"v": 1, "id": 6, "op": "pause", "args": {"folder": 7}}\n', "bad-request", 6),
        (b'{"v": 1, "id": 6, "op": "pause", "args": {"fodler": "/x"}}\n', "bad-request", 6),
        (b'{"v": 1, "id": 8, "op": "history.query", "args": {"limit": 0}}\n', "bad-request", 8),
        (b'{"v": 1, "id": 8, "op": "history.query", "args": {"limit": "5"}}\n', "bad-request", 8),
        (b'{"v": 1, "id": 9, "op": "issues.retry", "args": {"id": NaN}}\n', "bad-json", None),
        (
            b'{"v": 1, "id": 9, "op": "folders.add", "args": {"local": "/x", "mode": "both"}}\n',
            "bad-request",
            9,
        ),
        (b'{"v": 1, "id": 10, "op": "status", "args": []}\n', "bad-request", 10),
        (b"[" * 100_000 + b"\n", "bad-json", None),
    ],
)
def test_malformed_request_gets_error_reply_and_connection_keeps_serving(
    running: Running, payload: bytes, code: str, reply_id: int | None
) -> None:
    s, f = raw(running.socket_path)
    with s:
        reply = exchange(s, f, payload)
        assert reply["ok"] is False
        assert reply["error"]["code"] == code
        assert reply["id"] == reply_id
        ok = exchange(s, f, b'{"v": 1, "id": 11, "op": "status"}\n')
        assert ok == {
            "v": 1,
            "id": 11,
            "ok": True,
            "result": {"state": "idle", "folders": [], "issues": 0},
        }
    assert all(op == "status" for op, _ in running.handler.calls)


def test_oversized_line_is_refused_skipped_and_the_next_request_answered(running: Running) -> None:
    s, f = raw(running.socket_path)
    with s:
        big = b'{"v": 1, "id": 1, "op": "pause", "args": {"folder": "' + b"a" * (
            3 * p.MAX_LINE_BYTES
        )
        s.sendall(big + b'"}}\n' + b'{"v": 1, "id": 2, "op": "status"}\n')
        first = json.loads(f.readline())
        second = json.loads(f.readline())
    assert first["error"]["code"] == "too-large" and first["id"] is None
    assert second["id"] == 2 and second["ok"] is True
    assert [op for op, _ in running.handler.calls] == ["status"]


def test_line_of_exactly_the_limit_is_accepted(running: Running) -> None:
    s, f = raw(running.socket_path)
    head = b'{"v": 1, "id": 1, "op": "status"'
    line = head + b" " * (p.MAX_LINE_BYTES - len(head) - 1) + b"}"
    assert len(line) == p.MAX_LINE_BYTES
    with s:
        reply = exchange(s, f, line + b"\n")
    assert reply["ok"] is True


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        st.binary(max_size=300).map(lambda b: b.replace(b"\n", b" ")),
        st.recursive(
            st.none()
            | st.booleans()
            | st.integers()
            | st.floats(allow_nan=False)
            | st.text(max_size=20),
            lambda children: (
                st.lists(children, max_size=4)
                | st.dictionaries(
                    st.sampled_from(["v", "id", "op", "args", "x"]), children, max_size=5
                )
            ),
            max_leaves=20,
        ).map(lambda o: json.dumps(o).encode()),
        st.fixed_dictionaries(
            {
                "v": st.sampled_from([1, 2, "1", None]),
                "id": st.integers(-5, 2**60),
                "op": st.sampled_from(sorted(p.OPS)) | st.text(max_size=10),
                "args": st.dictionaries(
                    st.text(max_size=12), st.integers() | st.text(max_size=5), max_size=3
                ),
            }
        ).map(lambda o: json.dumps(o).encode()),
    )
)
def test_fuzzed_messages_always_get_one_reply_and_the_agent_keeps_serving(
    running: Running, payload: bytes
) -> None:
    s, f = raw(running.socket_path)
    with s:
        s.sendall(payload + b"\n")
        if payload.strip():
            reply = json.loads(f.readline())
            assert set(reply) >= {"v", "id", "ok"}
            if not reply["ok"]:
                assert reply["error"]["code"] in {
                    "bad-json",
                    "bad-request",
                    "unknown-op",
                    "unsupported-version",
                    "locked",
                    "internal",
                }
        ok = exchange(s, f, b'{"v": 1, "id": 99, "op": "hello"}\n')
        assert ok["ok"] is True and ok["id"] == 99


def test_subscriber_gets_snapshot_then_events_of_its_kinds(running: Running) -> None:
    with ControlClient(running.socket_path) as c, c.subscribe(["state", "history"]) as sub:
        assert sub.snapshot["state"] == "idle"
        running.publish("progress", {"transfer_id": "t", "bytes_done": 1, "bytes_total": 9})
        running.publish("state", {"folder": None, "state": "syncing"})
        running.publish("history", {"row": {"id": 1}})
        events = iter(sub)
        first, second = next(events), next(events)
    assert (first.name, first.data) == ("state", {"folder": None, "state": "syncing"})
    assert (second.name, second.data) == ("history", {"row": {"id": 1}})


def test_closing_a_subscription_from_another_thread_ends_iteration(running: Running) -> None:
    with ControlClient(running.socket_path) as c:
        sub = c.subscribe()
    got: list[str] = []
    t = threading.Thread(target=lambda: got.extend(e.name for e in sub))
    t.start()
    running.publish("state", {"folder": None, "state": "paused"})
    deadline = threading.Event()
    for _ in range(200):
        if got:
            break
        deadline.wait(0.05)
    sub.close()
    t.join(10)
    assert not t.is_alive()
    assert got == ["state"]


def test_async_client_interleaves_replies_and_events(running: Running) -> None:
    async def scenario() -> tuple[dict[str, Any], list[str]]:
        client = await AsyncControlClient.connect(running.socket_path)
        try:
            snapshot = await client.subscribe()
            running.publish("issue_raised", {"issue": {"id": 3}})
            status, hello = await asyncio.gather(client.call("status"), client.call("hello"))
            assert hello["protocol"] == [1]
            names = []
            async for event in client.events():
                names.append(event.name)
                break
            assert status["state"] == "idle"
            return snapshot, names
        finally:
            await client.close()

    snapshot, names = asyncio.run(scenario())
    assert snapshot["issues"] == 0
    assert names == ["issue_raised"]


def test_client_says_agent_is_not_running_when_nothing_listens(tmp_path: Path) -> None:
    paths = AgentPaths.resolve(tmp_path / "nobody")
    with pytest.raises(ControlError) as err, ControlClient(paths.socket) as c:
        c.status()
    assert err.value.code == "unavailable"
    assert "not running" in err.value.message


def test_stale_socket_file_is_replaced_on_start(tmp_path: Path) -> None:
    paths = AgentPaths.resolve(tmp_path / "home")
    paths.socket.parent.mkdir(parents=True, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(paths.socket))
    stale.close()
    with Running(paths.socket) as r, ControlClient(r.socket_path) as c:
        assert c.hello()["pid"] == os.getpid()
    assert not paths.socket.exists()


def test_progress_throttle_passes_ten_a_second_and_always_the_last() -> None:
    now = [0.0]
    throttle = ProgressThrottle(clock=lambda: now[0])
    sent = 0
    for i in range(1, 1000):  # 999 updates over one second
        now[0] = i / 1000
        if throttle.offer({"transfer_id": "a", "bytes_done": i, "bytes_total": 1000}):
            sent += 1
    assert sent == 10
    held = throttle.take_due()
    assert held == []  # the newest update waits for its window
    now[0] = 1.2
    assert [d["bytes_done"] for d in throttle.take_due()] == [999]
    assert throttle.offer({"transfer_id": "a", "bytes_done": 1000, "bytes_total": 1000})


def test_progress_throttle_is_per_transfer() -> None:
    now = [5.0]
    throttle = ProgressThrottle(clock=lambda: now[0])
    assert throttle.offer({"transfer_id": "a", "bytes_done": 1, "bytes_total": 9})
    assert throttle.offer({"transfer_id": "b", "bytes_done": 1, "bytes_total": 9})
    assert not throttle.offer({"transfer_id": "a", "bytes_done": 2, "bytes_total": 9})


def test_hub_delivers_held_progress_after_its_window(running: Running) -> None:
    with ControlClient(running.socket_path) as c, c.subscribe(["progress"]) as sub:
        for i in range(1, 6):
            running.publish("progress", {"transfer_id": "x", "bytes_done": i, "bytes_total": 100})
        events = iter(sub)
        first, held = next(events), next(events)
    assert first.data["bytes_done"] == 1
    assert held.data["bytes_done"] == 5
