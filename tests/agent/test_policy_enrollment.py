"""The policy's ``enrollment`` key: how the tray offers the first sign-in, set by IT only."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropline.agent.config import ConfigError, LockedError, load
from dropline.agent.configedit import ConfigEditor


def test_enrollment_defaults_to_browser_and_takes_device(tmp_path: Path) -> None:
    user = tmp_path / "agent.toml"
    policy = tmp_path / "policy.toml"
    assert load(user, policy).enrollment == "browser"  # no policy at all
    policy.write_text('enrollment = "device"\n')
    config = load(user, policy)
    assert config.enrollment == "device"
    # Users see it, always locked: it is the administrator's choice.
    assert config.settings()["enrollment"] == {"value": "device", "locked": True}


def test_an_unknown_enrollment_names_the_file_key_and_choices(tmp_path: Path) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text('enrollment = "sms"\n')
    with pytest.raises(ConfigError) as err:
        load(tmp_path / "agent.toml", policy)
    assert (err.value.file, err.value.key) == (str(policy), "enrollment")
    assert "'browser' or 'device'" in err.value.problem and "'sms'" in err.value.problem


def test_users_cannot_set_enrollment(tmp_path: Path) -> None:
    user = tmp_path / "agent.toml"
    policy = tmp_path / "policy.toml"
    user.write_text('enrollment = "device"\n')
    with pytest.raises(ConfigError) as err:
        load(user, policy)
    assert err.value.key == "enrollment" and "not a known setting" in err.value.problem
    user.write_text("")
    with pytest.raises(LockedError):
        ConfigEditor(user, policy).set("enrollment", "device")
    assert user.read_text() == ""
