"""What ``dropline-agent`` commands share for their output: sizes and times in words, and
the one error type a command raises for a readable one-line failure."""

from __future__ import annotations

import time

FAILED = 1  # dropline.agent.cli.FAILED: the operation failed


class CliError(Exception):
    """A failure to print as one line on stderr, with the exit code to end with."""

    def __init__(self, message: str, code: int = FAILED) -> None:
        super().__init__(message)
        self.code = code


def size_text(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


def when_text(epoch: float) -> str:
    """A moment in local time, to the minute."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch))
