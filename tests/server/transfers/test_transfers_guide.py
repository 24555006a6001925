"""The transfer examples in docs/api.md, run as written against a live server: the curl
block with bash, the SDK block with this Python."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx

from tests.server.ops_helpers import OPS_SCOPES
from tests.support.docs import doc_block, example_env, run_example, run_shell
from tests.support.live import LiveServer


def test_the_transfer_examples_work_as_written(ops_server: LiveServer, tmp_path: Path) -> None:
    key = ops_server.new_key(scopes=OPS_SCOPES)
    ops_server.new_key(email="bob@example.com")  # the SDK example's inbox recipient
    env = example_env(ops_server.url, key, RECIPIENT="bob@example.com")
    shell = run_shell(doc_block("transfers-example"), tmp_path, env)
    assert shell.returncode == 0, shell.stderr
    assert shell.stdout.splitlines() == [
        "transfer completed",
        "link download matches",
        "copy 202",
        "folder",
    ]
    assert (tmp_path / "received.txt").read_bytes() == b"hello, partner\n"

    script = tmp_path / "transfers_example.py"
    script.write_text(doc_block("transfers-sdk-example", "python"), encoding="utf-8")
    sdk = run_example([sys.executable, str(script)], tmp_path, env)
    assert sdk.returncode == 0, sdk.stderr
    lines = sdk.stdout.splitlines()
    assert lines[0].startswith("share link: completed " + ops_server.url + "/s/")
    assert (
        lines[1] == "copy: [{'id': '" + lines[1].split("'")[3] + "', 'path': '/archive/note.txt'}]"
    )
    assert lines[2] == "inbox: completed None"
    with httpx.Client(base_url=ops_server.url, headers={"Authorization": f"Bearer {key}"}) as c:
        assert c.get("/api/v1/metadata", params={"path": "/archive/note.txt"}).status_code == 200
