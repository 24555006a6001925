"""The agent process: single instance, clean stop, systemd readiness, policy routes, hot reload."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropline.agent.control import ControlError
from tests.agent.support import AgentEnv, wait_for


@pytest.fixture
def env(tmp_path: Path) -> Iterator[AgentEnv]:
    e = AgentEnv(tmp_path)
    yield e
    e.stop()


def test_status_json_shape_while_signed_out(env: AgentEnv, tmp_path: Path) -> None:
    env.write_config(f'server_url = "http://127.0.0.1:9"\n[[folders]]\nlocal = "{tmp_path}/D"\n')
    env.start()
    result = env.cli("status", "--json")
    assert result.code == 0, result.err
    status = json.loads(result.out)
    assert status["state"] == "signed_out"
    assert status["issues"] == 0 and status["signed_in"] is False
    (folder,) = status["folders"]
    assert set(folder) >= {"local", "remote", "mode", "state", "pending"}
    assert folder["local"] == f"{tmp_path}/D" and folder["mode"] == "two-way"


def test_second_agent_for_the_same_home_is_refused(env: AgentEnv) -> None:
    first = env.start()
    result = env.cli("run")
    assert result.code == 5
    assert f"PID {first.pid}" in result.err and str(env.paths.socket) in result.err
    assert "Traceback" not in result.err
    with env.client() as c:
        assert c.hello()["pid"] == first.pid


def test_sigterm_stops_cleanly_and_removes_the_socket(env: AgentEnv) -> None:
    env.start()
    assert env.stop() == 0
    assert not env.paths.socket.exists()
    result = env.cli("status")
    assert result.code == 4 and "not running" in result.err
    env.start()  # the lock died with the first process


def test_ready_notification_reaches_systemd_socket(env: AgentEnv, tmp_path: Path) -> None:
    notify = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(notify))
    sock.settimeout(30)
    env.extra_env["NOTIFY_SOCKET"] = str(notify)
    with sock:
        env.start()
        assert sock.recv(256) == b"READY=1"
        os.kill(env.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        assert sock.recv(256) == b"STOPPING=1"


def test_folders_add_and_remove_edit_the_config_while_stopped(
    env: AgentEnv, tmp_path: Path
) -> None:
    env.write_config("# my settings\n")
    result = env.cli(
        "folders", "add", str(tmp_path / "Drop"), "--remote", "/in", "--mode", "upload-only"
    )
    assert result.code == 0, result.err
    assert (tmp_path / "Drop").is_dir()
    text = env.paths.config.read_text()
    assert "# my settings" in text and 'mode = "upload-only"' in text
    listed = json.loads(env.cli("folders", "list", "--json").out)
    assert [(f["local"], f["remote"]) for f in listed] == [(str(tmp_path / "Drop"), "/in")]
    assert env.cli("folders", "remove", str(tmp_path / "Drop")).code == 0
    assert json.loads(env.cli("folders", "list", "--json").out) == []


def test_folders_add_through_a_running_agent(env: AgentEnv, tmp_path: Path) -> None:
    env.write_config('server_url = "http://127.0.0.1:9"\n')
    env.start()
    result = env.cli("folders", "add", str(tmp_path / "Box"), "--remote", "/box")
    assert result.code == 0, result.err
    assert "syncing" in result.out
    with env.client() as c:
        assert [f["local"] for f in c.folders()] == [str(tmp_path / "Box")]
    dup = env.cli("folders", "add", str(tmp_path / "Box"), "--remote", "/box")
    assert dup.code == 1 and "already a sync folder" in dup.err


POLICY = """
server_url = "http://127.0.0.1:9"
locked = ["server_url"]
allow_sign_out = false
[[folders]]
local = "{root}/Managed"
remote = "/managed"
mode = "download-only"
"""


def test_locked_settings_refused_from_file_cli_and_socket(env: AgentEnv, tmp_path: Path) -> None:
    env.policy.write_text(POLICY.format(root=tmp_path))
    env.write_config('server_url = "http://127.0.0.1:1"\n')
    env.start()
    with env.client() as c:
        # File: the user's value is ignored and reported.
        assert c.settings()["server_url"] == {"value": "http://127.0.0.1:9", "locked": True}
        issues = c.issues()
        assert any("server_url: set by your administrator" in i["message"] for i in issues)
        # Socket.
        with pytest.raises(ControlError) as err:
            c.set_setting("server_url", "http://127.0.0.1:2")
        assert (err.value.code, err.value.message) == ("locked", "set by your administrator")
        with pytest.raises(ControlError) as err2:
            c.remove_folder(str(tmp_path / "Managed"))
        assert err2.value.code == "locked"
        with pytest.raises(ControlError) as err3:
            c.signout()
        assert err3.value.code == "not-allowed"
    # CLI.
    result = env.cli("folders", "remove", str(tmp_path / "Managed"))
    assert result.code == 6 and "set by your administrator" in result.err
    assert env.cli("logout").code == 6
    assert 'server_url = "http://127.0.0.1:1"' in env.paths.config.read_text()


def test_valid_config_change_applies_without_restart(env: AgentEnv) -> None:
    env.write_config("concurrency = 2\n")
    env.start()
    pid = env.proc.pid  # type: ignore[union-attr]
    with env.client() as c, c.subscribe(["config"]) as sub:
        env.write_config("# edited\nconcurrency = 7\nnotifications = false\n")
        event = next(iter(sub))
        assert event.data == {"ok": True, "error": None}
        settings = c.settings()
    assert settings["concurrency"]["value"] == 7
    assert settings["notifications"]["value"] is False
    with env.client() as c:
        assert c.hello()["pid"] == pid


def test_invalid_config_keeps_last_good_and_raises_an_issue(env: AgentEnv) -> None:
    env.write_config("concurrency = 3\n")
    env.start()
    with env.client() as c, c.subscribe(["config", "issue_raised", "issue_cleared"]) as sub:
        env.write_config('concurrency = "lots"\n')
        events = iter(sub)
        names = {next(events).name, next(events).name}
        assert names == {"config", "issue_raised"}
        assert c.settings()["concurrency"]["value"] == 3
        (issue,) = [i for i in c.issues() if i["kind"] == "config-invalid"]
        assert "concurrency" in issue["message"] and str(env.paths.config) in issue["message"]
        env.write_config("concurrency = 5\n")
        wait_for(lambda: c.settings()["concurrency"]["value"] == 5)
        assert not [i for i in c.issues() if i["kind"] == "config-invalid"]
    assert "keeping the last good one" in env.log_text()


def test_invalid_config_at_start_is_one_line_and_exit_3(env: AgentEnv) -> None:
    env.write_config('[[folders]]\nlocal = "/x"\nmode = "sideways"\n')
    result = env.cli("run")
    assert result.code == 3
    assert result.err.count("\n") == 1
    assert "agent.toml: folders[0].mode:" in result.err and "Traceback" not in result.err


def test_real_agent_survives_malformed_oversized_and_unknown_messages(env: AgentEnv) -> None:
    env.start()
    junk = [
        b"\x00\xff garbage\n",
        b'{"v": 1, "id": 1, "op": "folders.add", "args": {"local": 5}}\n',
        b'{"v": 1, "id": 2, "op": "shutdown"}\n',
        b'{"v": 9, "id": 3, "op": "status"}\n',
        b'{"v": 1, "id": 4, "op": "settings.set", "args": {"key": "colour", "value": "red"}}\n',
        b'{"v": 1, "id": 5, "op": "issues.retry", "args": {"id": 123456}}\n',
        b"{" * 2_000_000 + b"\n",
    ]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    s.connect(str(env.paths.socket))
    with s, s.makefile("rb") as f:
        for payload in junk:
            s.sendall(payload)
            reply = json.loads(f.readline())
            assert reply["ok"] is False, reply
        s.sendall(b'{"v": 1, "id": 6, "op": "status"}\n')
        assert json.loads(f.readline())["ok"] is True
    # Half a message and a hang-up do not hurt either.
    s2 = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s2.connect(str(env.paths.socket))
    s2.sendall(b'{"v": 1, "id": 7, "op": "sta')
    s2.close()
    with env.client() as c:
        assert c.status()["state"] == "error"
    assert env.proc is not None and env.proc.poll() is None


def test_start_agent_launches_a_detached_agent_once(env: AgentEnv) -> None:
    from dropline.agent.control import start_agent

    pid = start_agent(env.home, env=env.env())
    try:
        assert os.getsid(pid) == pid  # its own session: survives the caller
        assert start_agent(env.home, env=env.env()) == pid
        with env.client() as c:
            assert c.hello()["pid"] == pid
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not env.paths.socket.exists())
