"""Numbers and times in the words the tray shows: sizes, speeds, durations, time left."""

from __future__ import annotations

import os
import time
from datetime import datetime

_UNITS = ("bytes", "KB", "MB", "GB", "TB", "PB")


def size(n: int | float) -> str:
    """``48213`` -> ``"47.1 KB"``. Binary multiples with the short names people know."""
    if n < 0:
        n = 0
    if n < 1024:
        return "1 byte" if n == 1 else f"{int(n)} bytes"
    value = float(n)
    unit = 0
    while value >= 1024 and unit < len(_UNITS) - 1:
        value /= 1024
        unit += 1
    # One decimal only where it carries information: "3.4 MB", but "47 KB".
    text = f"{value:.1f}" if value < 10 else f"{value:.0f}"
    return f"{text} {_UNITS[unit]}"


def speed(bytes_per_second: float) -> str:
    if bytes_per_second <= 0:
        return ""
    return f"{size(bytes_per_second)}/s"


def duration(seconds: float) -> str:
    """A short span: ``"0.4 s"``, ``"12 s"``, ``"3 min 5 s"``, ``"2 h 4 min"``."""
    if seconds < 0:
        seconds = 0
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def time_left(bytes_left: int, bytes_per_second: float) -> str:
    """``"about 2 min left"``, or ``""`` while the speed is unknown."""
    if bytes_left <= 0 or bytes_per_second <= 0:
        return ""
    return seconds_left(bytes_left / bytes_per_second)


def seconds_left(seconds: float) -> str:
    """``"about 2 min left"``, rounded the way people estimate."""
    if seconds <= 0:
        return ""
    if seconds < 5:
        return "a few seconds left"
    if seconds < 60:
        return f"{round(seconds / 5) * 5} s left"
    minutes = round(seconds / 60)
    if minutes < 60:
        return f"about {minutes} min left"
    hours, minutes = divmod(minutes, 60)
    return f"about {hours} h {minutes} min left" if minutes else f"about {hours} h left"


def timestamp(epoch: float, now: float | None = None) -> str:
    """Today's times as ``14:05``, other days as ``2025-11-21 14:05``."""
    when = datetime.fromtimestamp(epoch)
    today = datetime.fromtimestamp(time.time() if now is None else now).date()
    if when.date() == today:
        return when.strftime("%H:%M:%S")
    return when.strftime("%Y-%m-%d %H:%M")


def home_path(path: str) -> str:
    """``/home/ann/Reports`` -> ``~/Reports``: shorter, and how people think of it."""
    home = os.path.expanduser("~").rstrip("/")
    if home and (path == home or path.startswith(home + "/")):
        return "~" + path[len(home) :]
    return path


def plural(n: int, one: str, many: str | None = None) -> str:
    """``plural(1, "file")`` -> ``"1 file"``; ``plural(3, "file")`` -> ``"3 files"``."""
    word = one if n == 1 else (many or one + "s")
    return f"{n} {word}"


def sentence(text: str) -> str:
    """The agent's lower-case messages as a sentence for a window."""
    text = text.strip()
    if not text:
        return "Something went wrong."
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
