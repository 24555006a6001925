"""The SDK example in docs/api.md runs as written against the real server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.live import LiveServer

ROOT = Path(__file__).resolve().parents[2]


def sdk_example() -> str:
    text = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    match = re.search(
        r"<!-- sdk-example:start -->\s*```python\n(.*?)```\s*<!-- sdk-example:end -->", text, re.S
    )
    assert match, "docs/api.md has no SDK example between its markers"
    return match.group(1)


def test_the_documented_example_runs_as_written(
    live_server: LiveServer, api_key: str, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "DROPLINE_URL": live_server.url,
        "DROPLINE_API_KEY": api_key,
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", sdk_example()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
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
    env = {
        **os.environ,
        "DROPLINE_URL": live_server.url,
        "DROPLINE_API_KEY": "dlk_not_a_real_key",
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [sys.executable, "-c", sdk_example()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Invalid credentials: the credential is unknown, expired or revoked"
    ]
