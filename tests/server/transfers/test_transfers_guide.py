"""The transfer examples in docs/api.md, run as written against a live server: the curl
block with bash, the SDK block with this Python."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.server.ops_helpers import OPS_SCOPES
from tests.support.live import LiveServer

API_GUIDE = Path(__file__).resolve().parents[3] / "docs" / "api.md"


def doc_block(name: str, fence: str) -> str:
    """The fenced block between ``<!-- name:start -->`` and ``<!-- name:end -->``."""
    text = API_GUIDE.read_text(encoding="utf-8")
    block = text.split(f"<!-- {name}:start -->", 1)[1].split(f"<!-- {name}:end -->", 1)[0]
    return block.split(f"```{fence}\n", 1)[1].split("```", 1)[0]


def test_the_transfer_examples_work_as_written(ops_server: LiveServer, tmp_path: Path) -> None:
    key = ops_server.new_key(scopes=OPS_SCOPES)
    ops_server.new_key(email="bob@example.com")  # the SDK example's inbox recipient
    env = {
        **os.environ,
        "DROPLINE_URL": ops_server.url,
        "DROPLINE_API_KEY": key,
        "RECIPIENT": "bob@example.com",
    }
    shell = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", doc_block("transfers-example", "sh")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
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
    sdk = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert sdk.returncode == 0, sdk.stderr
    lines = sdk.stdout.splitlines()
    assert lines[0].startswith("share link: completed " + ops_server.url + "/s/")
    assert (
        lines[1] == "copy: [{'id': '" + lines[1].split("'")[3] + "', 'path': '/archive/note.txt'}]"
    )
    assert lines[2] == "inbox: completed None"
    with httpx.Client(base_url=ops_server.url, headers={"Authorization": f"Bearer {key}"}) as c:
        assert c.get("/api/v1/metadata", params={"path": "/archive/note.txt"}).status_code == 200
