"""The versions-and-trash example in docs/api.md, run as written with bash against a live
server: it prints what the guide says it prints."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.support.docs import doc_block, example_env, run_shell
from tests.support.live import LiveServer


def test_the_versions_and_trash_example_works_as_written(
    live_server: LiveServer, tmp_path: Path
) -> None:
    key = live_server.new_key(email="guide@example.com")
    shell = run_shell(doc_block("undo-example"), tmp_path, example_env(live_server.url, key))
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.splitlines() == [
        "first draft",
        "restore 200",
        "first draft",
        "/undo-example",
        "13",
        "purge 204",
    ]
    # Purged for good: nothing in the trash, nothing at the path, no bytes counted.
    with httpx.Client(base_url=live_server.url, headers={"Authorization": f"Bearer {key}"}) as c:
        assert c.get("/api/v1/trash").json()["items"] == []
        assert c.get("/api/v1/metadata", params={"path": "/undo-example"}).status_code == 404
        assert c.get("/api/v1/me").json()["storage"]["used"] == 0
