"""``autostart enable|disable`` writes and removes a systemd user unit that runs this agent."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropline.agent import autostart
from dropline.agent.paths import AgentPaths


@pytest.fixture(autouse=True)
def _config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("DROPLINE_AGENT_HOME", raising=False)
    # No user systemd here: the unit file is written and the systemctl calls are skipped.
    monkeypatch.setenv("PATH", str(tmp_path / "empty-path"))


def test_enable_writes_a_notify_unit_for_this_home_and_disable_removes_it(tmp_path: Path) -> None:
    home = tmp_path / "agent home"
    paths = AgentPaths.resolve(home)
    unit = autostart.enable(paths, home, None)
    assert unit.parent == tmp_path / "xdg" / "systemd" / "user"
    assert unit.name.startswith("dropline-agent-") and unit.suffix == ".service"
    text = unit.read_text()
    assert "Type=notify" in text and "WantedBy=default.target" in text
    assert f'--home "{home}"' in text and " -m dropline.agent run" in text
    assert "DROPLINE_API_KEY=" not in text.replace("# DROPLINE_API_KEY=...", "")
    assert autostart.disable(paths, home) == unit
    assert not unit.exists()
    assert autostart.disable(paths, home) is None


def test_default_home_gets_the_plain_unit_name(tmp_path: Path) -> None:
    paths = AgentPaths.resolve(None)
    assert autostart.unit_path(paths, None).name == "dropline-agent.service"
