"""The SDK example in docs/api.md runs as written against the real server."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.support.docs import ROOT, doc_block, example_env, run_example
from tests.support.live import LiveServer


def run_sdk_example(url: str, key: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The example, run by this Python with the SDK importable from the checkout."""
    env = example_env(url, key, PYTHONPATH=str(ROOT))
    return run_example([sys.executable, "-c", doc_block("sdk-example", "python")], cwd, env)


def test_the_documented_example_runs_as_written(
    live_server: LiveServer, api_key: str, tmp_path: Path
) -> None:
    done = run_sdk_example(live_server.url, api_key, tmp_path)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "signed in as alice@example.com" in out
    assert "uploaded /sdk-example/report.txt 18000 bytes" in out
    assert "file report.txt" in out
    assert re.search(r"^\d+ created /sdk-example/report.txt$", out, re.M)
    assert "gone: Not found" in out
    assert (tmp_path / "report-copy.txt").read_bytes() == (tmp_path / "report.txt").read_bytes()
    assert not list(tmp_path.glob(".*partial"))  # nothing half-done left behind


def test_the_example_reports_a_bad_key_in_one_readable_line(
    live_server: LiveServer, tmp_path: Path
) -> None:
    done = run_sdk_example(live_server.url, "dlk_not_a_real_key", tmp_path)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Invalid credentials: the credential is unknown, expired or revoked"
    ]
