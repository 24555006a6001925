"""The tray's at-a-glance words and icon for each agent state, and the icons behind them."""

from __future__ import annotations

from typing import Any

import pytest

from dropline.ui import icons, status
from dropline.ui.status import Moving, summarize


def agent_status(state: str, **extra: Any) -> dict[str, Any]:
    return {
        "state": state,
        "folders": [
            {
                "local": "/d/Reports",
                "remote": "/",
                "mode": "two-way",
                "state": state,
                "pending": 0,
                "last_error": extra.pop("last_error", None),
            }
        ],
        "issues": 0,
        "uploading": 0,
        "downloading": 0,
        "bytes_left": 0,
        "signed_in": state != "signed_out",
        "server_url": "http://127.0.0.1:8600",
        **extra,
    }


def test_up_to_date() -> None:
    s = summarize(agent_status("idle"), 0, Moving())
    assert (s.icon, s.headline, s.tooltip) == (status.IDLE, "Up to date", "Dropline: Up to date")


def test_issues_turn_idle_into_attention() -> None:
    s = summarize(agent_status("idle"), 2, Moving())
    assert s.icon == status.ATTENTION
    assert s.headline == "2 files need attention"
    assert summarize(agent_status("idle"), 1, Moving()).headline == "1 file needs attention"


def test_uploading_says_how_many_and_how_much_is_left() -> None:
    s = summarize(
        agent_status("syncing"),
        0,
        Moving(uploading=3, bytes_left=12 * 1024**2, bytes_per_second=1024**2),
    )
    assert s.icon == status.SYNCING
    assert s.headline == "Uploading 3 files, 12 MB left"
    assert s.detail == "10 s left"


def test_syncing_falls_back_to_the_agents_counts() -> None:
    s = summarize(agent_status("syncing", downloading=1, bytes_left=2048), 1, Moving())
    assert s.headline == "Downloading 1 file, 2.0 KB left"
    assert s.detail == "1 file needs attention"


def test_both_directions() -> None:
    assert status.moving_words(Moving(uploading=1, downloading=2)) == (
        "Uploading 1 file and downloading 2 files"
    )


@pytest.mark.parametrize(
    ("state", "icon", "headline"),
    [
        ("paused", status.PAUSED, "Paused"),
        ("offline", status.OFFLINE, "Offline"),
        ("signed_out", status.SIGNED_OUT, "Signed out"),
        ("scanning", status.SYNCING, "Checking for changes…"),
    ],
)
def test_each_state_has_its_icon(state: str, icon: str, headline: str) -> None:
    s = summarize(agent_status(state), 0, Moving())
    assert (s.icon, s.headline) == (icon, headline)


def test_error_shows_the_folders_error() -> None:
    s = summarize(agent_status("error", last_error="The folder was removed."), 0, Moving())
    assert (s.icon, s.detail) == (status.ERROR, "The folder was removed.")


def test_not_connected_says_connecting() -> None:
    s = summarize(None, 0, Moving(), "The Dropline service is not running.")
    assert s.icon == status.OFFLINE
    assert s.headline.startswith("Connecting")
    assert "not running" in s.tooltip


@pytest.mark.parametrize("name", status.ICONS)
def test_every_state_icon_is_packaged_at_tray_sizes(name: str) -> None:
    icon = icons.tray_icon(name)
    sizes = {(s.width(), s.height()) for s in icon.availableSizes()}
    assert {(16, 16), (22, 22), (32, 32), (44, 44), (64, 64)} <= sizes


def test_app_icon_has_large_sizes() -> None:
    assert (256, 256) in {(s.width(), s.height()) for s in icons.app_icon().availableSizes()}
