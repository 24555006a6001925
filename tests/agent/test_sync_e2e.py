"""The CLI against a real agent running the real engine and a real server: files really move."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.agent.support import AgentEnv, wait_for
from tests.support.live import LiveServer


@pytest.fixture
def env(tmp_path: Path, live_server: LiveServer, api_key: str) -> Iterator[AgentEnv]:
    e = AgentEnv(tmp_path)
    e.extra_env["DROPLINE_API_KEY"] = api_key
    e.write_config(f'server_url = "{live_server.url}"\n')
    yield e
    e.stop()


def remote_entry(live: LiveServer, key: str, path: str) -> dict[str, Any] | None:
    resp = httpx.get(
        f"{live.url}/api/v1/metadata",
        params={"path": path},
        headers={"Authorization": f"Bearer {key}"},
    )
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    entry: dict[str, Any] = resp.json()
    return entry


def status(env: AgentEnv) -> dict[str, Any]:
    result = env.cli("status", "--json")
    assert result.code == 0, result.err
    parsed: dict[str, Any] = json.loads(result.out)
    return parsed


def test_folder_added_through_the_cli_syncs_a_file(
    env: AgentEnv, live_server: LiveServer, api_key: str, tmp_path: Path
) -> None:
    env.start()
    drop = tmp_path / "Drop"
    result = env.cli("folders", "add", str(drop), "--remote", "/drop", "--mode", "upload-only")
    assert result.code == 0, result.err
    body = b"quarterly numbers\n" * 100
    (drop / "q3.txt").write_bytes(body)
    entry = wait_for(lambda: remote_entry(live_server, api_key, "/drop/q3.txt"), timeout=60)
    assert entry["sha256"] == hashlib.sha256(body).hexdigest()
    st = wait_for(lambda: (s := status(env))["account"] and s)
    assert st["signed_in"] is True and st["state"] in {"idle", "syncing", "scanning"}
    assert st["account"] == "alice@example.com"
    assert "signed in as alice@example.com" in env.cli("status").out
    (folder,) = st["folders"]
    assert (folder["local"], folder["remote"], folder["mode"]) == (
        str(drop),
        "/drop",
        "upload-only",
    )
    rows = wait_for(
        lambda: json.loads(env.cli("history", "--json", "--limit", "5").out), timeout=30
    )
    assert rows[0]["path"].endswith("q3.txt") and rows[0]["direction"] == "up"
    assert rows[0]["result"] == "ok" and rows[0]["size"] == len(body)


def test_pause_and_resume_are_reflected_in_the_engine(
    env: AgentEnv, live_server: LiveServer, api_key: str, tmp_path: Path
) -> None:
    box = tmp_path / "Box"
    box.mkdir()
    env.write_config(
        f'server_url = "{live_server.url}"\n[[folders]]\nlocal = "{box}"\nremote = "/box"\n'
    )
    env.start()
    assert env.cli("pause").code == 0
    st = wait_for(lambda: (s := status(env))["folders"][0]["state"] == "paused" and s)
    assert st["state"] == "paused"
    (box / "later.txt").write_text("after the pause")
    assert env.cli("resume", str(box)).code == 0
    wait_for(lambda: status(env)["folders"][0]["state"] != "paused")
    entry = wait_for(lambda: remote_entry(live_server, api_key, "/box/later.txt"), timeout=60)
    assert entry["size"] == len("after the pause")
    bad = env.cli("pause", str(tmp_path / "not-a-folder"))
    assert bad.code == 1 and "not a sync folder" in bad.err


def test_sigterm_during_a_transfer_then_restart_completes_it(
    env: AgentEnv, live_server: LiveServer, api_key: str, tmp_path: Path
) -> None:
    drop = tmp_path / "Big"
    drop.mkdir()
    # A bandwidth cap keeps the upload in flight long enough to stop the agent midway.
    env.write_config(
        f'server_url = "{live_server.url}"\n[bandwidth]\nupload_kbps = 1024\n'
        f'[[folders]]\nlocal = "{drop}"\nremote = "/big"\nmode = "upload-only"\n'
    )
    body = os.urandom(12 * 1024 * 1024)
    env.start()
    with env.client() as c, c.subscribe(["progress"]) as sub:
        (drop / "video.bin").write_bytes(body)
        for event in sub:
            if 0 < event.data["bytes_done"] < event.data["bytes_total"]:
                break
    assert env.proc is not None
    os.kill(env.proc.pid, signal.SIGTERM)
    # stop() sends a second SIGTERM if the first has not finished yet: still a clean exit.
    assert env.stop() == 0
    assert remote_entry(live_server, api_key, "/big/video.bin") is None
    env.write_config(
        f'server_url = "{live_server.url}"\n'
        f'[[folders]]\nlocal = "{drop}"\nremote = "/big"\nmode = "upload-only"\n'
    )
    env.start()
    entry = wait_for(lambda: remote_entry(live_server, api_key, "/big/video.bin"), timeout=120)
    assert entry["sha256"] == hashlib.sha256(body).hexdigest()
