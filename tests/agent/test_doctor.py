"""``doctor`` against the real server: what passes, and a fix for each problem."""

from __future__ import annotations

import email.utils
import time
from pathlib import Path

import httpx
import pytest

from dropline.agent import doctor
from dropline.agent.config import AgentConfig, FolderConfig
from dropline.agent.paths import AgentPaths
from tests.support.live import LiveServer


@pytest.fixture
def paths(tmp_path: Path) -> AgentPaths:
    p = AgentPaths.resolve(tmp_path / "home")
    p.ensure()
    return p


def by_name(checks: list[doctor.Check]) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def test_healthy_setup_passes_the_server_checks(
    paths: AgentPaths,
    live_server: LiveServer,
    api_key: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("DROPLINE_API_KEY", api_key)
    monkeypatch.setenv("DROPLINE_POLICY_FILE", str(tmp_path / "none.toml"))
    (tmp_path / "Box").mkdir()
    paths.config.write_text(
        f'server_url = "{live_server.url}"\n[[folders]]\nlocal = "{tmp_path}/Box"\n'
        f'[[folders]]\nlocal = "{tmp_path}/Gone"\n'
    )
    checks = by_name(doctor.run_checks(paths))
    for name in (
        "config",
        "credentials",
        "server",
        "tls",
        "clock",
        "permissions",
        f"folder {tmp_path}/Box",
    ):
        assert checks[name].ok, checks[name]
    gone = checks[f"folder {tmp_path}/Gone"]
    assert not gone.ok and gone.fix == f"mkdir -p '{tmp_path}/Gone'"
    agent = checks["agent"]
    assert not agent.ok and "dropline-agent run" in (agent.fix or "")
    assert api_key not in repr(checks)


def test_unreachable_server_and_invalid_config(
    paths: AgentPaths, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DROPLINE_POLICY_FILE", str(tmp_path / "none.toml"))
    monkeypatch.setenv("DROPLINE_API_KEY", "dlk_x")
    paths.config.write_text('server_url = "http://127.0.0.1:9"\n')
    server = by_name(doctor.run_checks(paths))["server"]
    assert not server.ok and "check server_url" in (server.fix or "")
    paths.config.write_text("concurrency = 0\n")
    (config,) = doctor.run_checks(paths)
    assert not config.ok and "concurrency" in config.detail and config.fix


def test_clock_skew_is_reported_with_a_fix() -> None:
    # The real server's clock cannot be moved, so its Date header is played here.
    now = float(int(time.time()))
    skewed = email.utils.formatdate(now - 600, usegmt=True)
    check = doctor._clock(httpx.Response(200, headers={"date": skewed}), now)
    assert not check.ok and check.detail.startswith("+600 s") and "time sync" in (check.fix or "")
    fine = doctor._clock(
        httpx.Response(200, headers={"date": email.utils.formatdate(usegmt=True)}), time.time()
    )
    assert fine.ok


def test_inotify_limit_too_low_prints_sysctl_fix(tmp_path: Path) -> None:
    limit = tmp_path / "max_user_watches"
    limit.write_text("8192\n")
    (tmp_path / "F").mkdir()
    config = AgentConfig(folders=(FolderConfig(local=tmp_path / "F"),))
    low = doctor._inotify(config, limit, counter=lambda roots: 6000)
    assert not low.ok and "fs.inotify.max_user_watches" in (low.fix or "")
    ok = doctor._inotify(config, limit)
    assert ok.ok and "1 directories" in ok.detail


def test_home_writable_by_others_is_reported(paths: AgentPaths) -> None:
    paths.home.chmod(0o777)
    check = doctor._home_permissions(paths)
    assert not check.ok and check.fix == f"chmod go-w '{paths.home}'"
