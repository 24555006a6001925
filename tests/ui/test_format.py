"""Sizes, speeds and times in the words the tray shows."""

from __future__ import annotations

from datetime import datetime

import pytest

from dropline.ui import format as fmt


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 bytes"),
        (1, "1 byte"),
        (1023, "1023 bytes"),
        (1024, "1.0 KB"),
        (48213, "47 KB"),
        (150 * 1024**2, "150 MB"),
        (3 * 1024**3, "3.0 GB"),
        (-5, "0 bytes"),
    ],
)
def test_size(n: int, text: str) -> None:
    assert fmt.size(n) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.42, "0.4 s"), (12.4, "12 s"), (185, "3 min 5 s"), (180, "3 min"), (7440, "2 h 4 min")],
)
def test_duration(seconds: float, text: str) -> None:
    assert fmt.duration(seconds) == text


@pytest.mark.parametrize(
    ("left", "bps", "text"),
    [
        (100, 0, ""),
        (0, 100, ""),
        (300, 100, "a few seconds left"),
        (2300, 100, "25 s left"),
        (12_000, 100, "about 2 min left"),
        (3_600_000, 500, "about 2 h left"),
    ],
)
def test_time_left(left: int, bps: float, text: str) -> None:
    assert fmt.time_left(left, bps) == text


def test_timestamp_shows_the_date_only_for_other_days() -> None:
    now = datetime(2025, 11, 26, 15, 0).timestamp()
    assert fmt.timestamp(datetime(2025, 11, 26, 9, 5, 7).timestamp(), now) == "09:05:07"
    assert fmt.timestamp(datetime(2025, 11, 21, 9, 5).timestamp(), now) == "2025-11-21 09:05"


def test_speed_and_plural() -> None:
    assert fmt.speed(0) == ""
    assert fmt.speed(2048) == "2.0 KB/s"
    assert fmt.plural(1, "file") == "1 file"
    assert fmt.plural(12, "file") == "12 files"
    assert fmt.plural(2, "entry", "entries") == "2 entries"


def test_home_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/ann")
    assert fmt.home_path("/home/ann/Reports") == "~/Reports"
    assert fmt.home_path("/home/anna/Reports") == "/home/anna/Reports"
    assert fmt.home_path("/srv/Reports") == "/srv/Reports"
