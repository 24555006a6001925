"""What the tray says at a glance: the icon to show, the status line and the tooltip.

Pure: it takes the agent's last status (or none while connecting), the issue
count and what is moving, so every wording is unit tested.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dropline.ui import format as fmt

# Icon names, as in assets/tray-<name>.svg.
IDLE = "idle"
SYNCING = "syncing"
PAUSED = "paused"
OFFLINE = "offline"
ATTENTION = "attention"
ERROR = "error"
SIGNED_OUT = "signed-out"
ICONS = (IDLE, SYNCING, PAUSED, OFFLINE, ATTENTION, ERROR, SIGNED_OUT)


@dataclass(frozen=True, slots=True)
class Moving:
    """Transfers running now, as the tray's transfers model counts them."""

    uploading: int = 0
    downloading: int = 0
    bytes_left: int = 0
    bytes_per_second: float = 0.0


@dataclass(frozen=True, slots=True)
class Summary:
    icon: str
    headline: str  # the status line at the top of the menu
    detail: str = ""  # a second line for the tooltip

    @property
    def tooltip(self) -> str:
        return f"Dropline: {self.headline}" + (f"\n{self.detail}" if self.detail else "")


def moving_words(moving: Moving) -> str:
    """``"Uploading 3 files, 12 MB left"``; both directions when both are busy."""
    parts = []
    if moving.uploading:
        parts.append(f"Uploading {fmt.plural(moving.uploading, 'file')}")
    if moving.downloading:
        verb = "downloading" if parts else "Downloading"
        parts.append(f"{verb} {fmt.plural(moving.downloading, 'file')}")
    if not parts:
        return ""
    text = " and ".join(parts)
    if moving.bytes_left > 0:
        text += f", {fmt.size(moving.bytes_left)} left"
    return text


def attention_words(issues: int) -> str:
    """``"1 file needs attention"``, ``"3 files need attention"``."""
    return f"{fmt.plural(issues, 'file')} need{'s' if issues == 1 else ''} attention"


def summarize(
    status: dict[str, Any] | None, issues: int, moving: Moving, connecting_reason: str = ""
) -> Summary:
    """The tray's face for the agent's ``status`` (None: not connected yet or lost)."""
    if status is None:
        return Summary(OFFLINE, "Connecting to the Dropline service…", connecting_reason)
    state = status.get("state", "idle")
    issue_words = attention_words(issues)
    if state == "signed_out":
        return Summary(SIGNED_OUT, "Signed out", "Sign in again to continue; nothing is lost.")
    if state == "error":
        errors = [f["last_error"] for f in status.get("folders", []) if f.get("last_error")]
        return Summary(ERROR, "Something went wrong", errors[0] if errors else "See Issues.")
    if state == "offline":
        return Summary(OFFLINE, "Offline", "Waiting for the server; changes are kept.")
    if state == "paused":
        return Summary(PAUSED, "Paused", "Resume to sync your changes.")
    if state in ("syncing", "scanning") or moving.uploading or moving.downloading:
        if not (moving.uploading or moving.downloading):
            moving = Moving(
                uploading=int(status.get("uploading", 0)),
                downloading=int(status.get("downloading", 0)),
                bytes_left=int(status.get("bytes_left", 0)),
            )
        words = moving_words(moving)
        if not words:
            words = "Checking for changes…" if state == "scanning" else "Syncing…"
        detail = fmt.time_left(moving.bytes_left, moving.bytes_per_second)
        if issues:
            detail = f"{detail}; {issue_words}" if detail else issue_words
        return Summary(SYNCING, words, detail)
    if issues:
        return Summary(ATTENTION, issue_words.capitalize(), "Open Issues to see what to do.")
    return Summary(IDLE, "Up to date")
