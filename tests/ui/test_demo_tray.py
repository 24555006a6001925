"""The tray part of ``make demo``: started only where there is a display, stopped cleanly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.support.live import LiveServer
from tools.demo import Part, describe_tray, has_display, start_sync_agent, start_tray


def test_tray_is_started_only_with_a_display() -> None:
    assert not has_display({})
    assert has_display({"DISPLAY": ":0"})
    assert has_display({"WAYLAND_DISPLAY": "wayland-0"})
    agent = Part("agent", lambda: None, lambda: True, {"home": str(Path(".demo/agent").absolute())})
    assert "dropline-tray --home .demo/agent" in describe_tray(agent, started=False)
    assert "panel" in describe_tray(agent, started=True)


def test_demo_tray_runs_beside_the_demo_agent_and_stops(
    tmp_path: Path, live_server: LiveServer, api_key: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # the display a test machine has
    server = Part("server", lambda: None, lambda: True, {"url": live_server.url, "key": api_key})
    agent = start_sync_agent(Path(".demo"), server)
    try:
        tray = start_tray(agent)
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and tray.alive():
                time.sleep(0.1)
            assert tray.alive()  # still running: it found the agent and waits on it
        finally:
            tray.stop()
        assert not tray.alive()
        assert agent.alive()  # the tray leaves the demo's agent running
    finally:
        agent.stop()
