"""The curl walkthrough in docs/api.md, run as written (bash + curl) against a live server."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import httpx

from tests.support.docs import doc_block, example_env, run_shell
from tests.support.live import LiveServer


def test_the_documented_walkthrough_works_as_written(
    live_server: LiveServer, api_key: str, client: httpx.Client, tmp_path: Path
) -> None:
    env = example_env(live_server.url, api_key)
    run = run_shell(doc_block("walkthrough"), tmp_path, env)
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
