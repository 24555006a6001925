"""The agent part of ``make demo``: a dropped file reaches the server; no key in any file."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.agent.support import wait_for
from tests.support.live import LiveServer
from tools.demo import Part, describe_agent, start_sync_agent


def test_demo_agent_syncs_a_dropped_file(
    tmp_path: Path, live_server: LiveServer, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    server = Part("server", lambda: None, lambda: True, {"url": live_server.url, "key": api_key})
    agent = start_sync_agent(Path(".demo"), server)
    try:
        assert agent.alive()
        (tmp_path / ".demo" / "Dropline" / "hello.txt").write_text("hello from the demo")

        def arrived() -> bool:
            resp = httpx.get(
                f"{live_server.url}/api/v1/metadata",
                params={"path": "/hello.txt"},
                headers={"Authorization": f"Bearer {api_key}"},
            )
            return resp.status_code == 200

        wait_for(arrived, timeout=60)
        text = describe_agent(agent, server)
        assert "dropline-agent status --home .demo/agent" in text
    finally:
        agent.stop()
    assert not agent.alive()
    config = (tmp_path / ".demo" / "agent" / "agent.toml").read_text()
    assert live_server.url in config and api_key not in config
    logs = "".join(p.read_text() for p in (tmp_path / ".demo" / "agent" / "logs").glob("*.log"))
    assert api_key not in logs
    # A second start reuses the config and follows a server that moved.
    moved = Part(
        "server", lambda: None, lambda: True, {"url": "http://127.0.0.1:9", "key": api_key}
    )
    again = start_sync_agent(Path(".demo"), moved)
    again.stop()
    config = (tmp_path / ".demo" / "agent" / "agent.toml").read_text()
    assert 'server_url = "http://127.0.0.1:9"' in config and "# The demo agent" in config
    assert config.count("[[folders]]") == 1
