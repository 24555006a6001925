"""The curl walkthrough in docs/api.md, run as written (bash + curl) against a live server."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import httpx

from tests.support.live import LiveServer

API_GUIDE = Path(__file__).resolve().parents[3] / "docs" / "api.md"


def walkthrough_script() -> str:
    text = API_GUIDE.read_text(encoding="utf-8")
    block = text.split("<!-- walkthrough:start -->", 1)[1].split("<!-- walkthrough:end -->", 1)[0]
    return block.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_documented_walkthrough_works_as_written(
    live_server: LiveServer, client: httpx.Client, tmp_path: Path
) -> None:
    key = client.headers["Authorization"].split(" ", 1)[1]
    env = {**os.environ, "DROPLINE_URL": live_server.url, "DROPLINE_API_KEY": key}
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough_script()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    out = run.stdout
    assert "PATCH 204" in out
    assert "server has 1000000 bytes" in out
    assert "range matches" in out
    match = re.search(r"published as ([0-9a-f-]{36})", out)
    assert match, out
    numbers = (tmp_path / "numbers.txt").read_bytes()
    meta = client.get(f"/api/v1/files/{match.group(1)}").json()
    assert meta["path"] == "/walkthrough/numbers.txt"
    assert meta["sha256"] == hashlib.sha256(numbers).hexdigest()
    waited = json.loads((tmp_path / "waited.json").read_text())
    assert [c["action"] for c in waited["changes"]] == ["created"]
    assert waited["changes"][0]["entry"]["path"].startswith("/walkthrough/inbox-")
