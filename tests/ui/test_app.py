"""``dropline-tray`` as a process: starts without an agent, says so, and quits on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.agent.support import ROOT


def test_tray_process_waits_for_the_agent_and_quits_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONPATH": str(ROOT)}
    env.pop("DROPLINE_API_KEY", None)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dropline.ui.app",
            "--home",
            str(tmp_path / "agent"),
            "--no-start-agent",
            "--log-level",
            "INFO",
        ],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=ROOT,
        text=True,
    )
    assert proc.stderr is not None
    seen = []
    try:
        for line in proc.stderr:
            seen.append(line)
            if "agent link down" in line:
                break
        assert any("tray running" in line for line in seen), seen
        assert "The Dropline service is not running." in seen[-1]
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        rest = proc.stderr.read()
        assert "Traceback" not in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stderr.close()


def test_help_names_the_agent_home_option() -> None:
    answer = subprocess.run(
        [sys.executable, "-m", "dropline.ui.app", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
        timeout=60,
        check=False,
    )
    assert answer.returncode == 0
    assert "--home" in answer.stdout and "--no-start-agent" in answer.stdout
