"""The examples in docs/api.md, run as written: a fenced block found by its markers, run
with bash (``set -euo pipefail``) or Python the way a reader would run it."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
API_GUIDE = ROOT / "docs" / "api.md"


def doc_block(name: str, fence: str = "sh") -> str:
    """The fenced block between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    text = API_GUIDE.read_text(encoding="utf-8")
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    assert start in text and end in text, f"docs/api.md has no {name!r} block between markers"
    block = text.split(start, 1)[1].split(end, 1)[0]
    return block.split(f"```{fence}\n", 1)[1].split("```", 1)[0]


def example_env(url: str, key: str, **more: str) -> dict[str, str]:
    """This process's environment with the server and key the examples read (and ``more``)."""
    return {**os.environ, "DROPLINE_URL": url, "DROPLINE_API_KEY": key, **more}


def run_example(
    args: Sequence[str], cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``args`` run in ``cwd`` with ``env``; its output captured as text."""
    return subprocess.run(
        list(args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def run_shell(
    script: str, cwd: Path, env: dict[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``script`` run with ``bash -euo pipefail``: any command that fails fails the run."""
    return run_example(["bash", "-euo", "pipefail", "-c", script], cwd, env, timeout)
