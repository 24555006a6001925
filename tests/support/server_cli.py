"""``dropline-server`` in tests: as a child process, the way an operator runs it, or in
this process for setting up (the same code, without a second of interpreter start-up)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import subprocess
import sys
from pathlib import Path

from dropline.server.cli import main


def run(data: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """``dropline-server ARGS --data-dir DATA``; with ``ok``, it must succeed."""
    done = subprocess.run(
        [sys.executable, "-m", "dropline.server.cli", *args, "--data-dir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DROPLINE_PASSWORD": "long enough pw"},
    )
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def run_here(data: Path, *args: str) -> str:
    """The same command in this process; it must succeed. Returns its stdout."""
    out = io.StringIO()
    handlers = logging.root.handlers[:]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        assert main([*args, "--data-dir", str(data)]) == 0
    logging.root.handlers[:] = handlers  # main() sets logging up for a process of its own
    return out.getvalue()
