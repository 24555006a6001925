"""Transfers are jobs in the database: they survive the server process dying.

The server runs as a child process (``dropline-server serve``) so it can be killed
with SIGKILL mid-transfer and started again on the same data directory.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest

from tests.server.ops_helpers import OPS_SCOPES, start_transfer, upload, wait_transfer
from tests.support.live import ServerProcess
from tests.support.nodes import migrated_with_key
from tests.support.receiver import Receiver

OPS_ENV = {"DROPLINE_ALLOW_PRIVATE_TARGETS": "1", "DROPLINE_WORKER_POLL_SECONDS": "0.05"}


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "server-data"


@pytest.fixture
def api_key(data_dir: Path) -> str:
    data_dir.mkdir(parents=True)
    return migrated_with_key(f"sqlite:///{data_dir / 'dropline.db'}", OPS_SCOPES)


@pytest.fixture
def process(data_dir: Path) -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    yield started
    for server in started:
        server.stop()


def start(started: list[ServerProcess], data_dir: Path, **env: str) -> ServerProcess:
    server = ServerProcess(data_dir, extra_env={**OPS_ENV, **env})
    server.start()
    started.append(server)
    return server


def client(url: str, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"},
        timeout=30,
    )


def test_a_queued_transfer_runs_after_a_restart(
    data_dir: Path, api_key: str, process: list[ServerProcess]
) -> None:
    first = start(process, data_dir, DROPLINE_TRANSFER_WORKERS="0")
    with client(first.url, api_key) as alice:
        source = upload(alice, "/q/report.txt", b"waiting in the queue")
        queued = start_transfer(alice, [source["id"]], {"type": "folder", "path": "/later"})
        assert alice.get(f"/api/v1/transfers/{queued['id']}").json()["state"] == "queued"
    first.kill()

    second = start(process, data_dir)
    with client(second.url, api_key) as alice:
        done = wait_transfer(alice, queued["id"])
        assert done["state"] == "completed", done
        entry = alice.get("/api/v1/metadata", params={"path": "/later/report.txt"})
        assert entry.status_code == 200
        assert entry.json()["size"] == len(b"waiting in the queue")


def test_a_transfer_killed_mid_run_resumes_at_the_next_file(
    data_dir: Path, api_key: str, process: list[ServerProcess], receiver: Receiver
) -> None:
    receiver.default.status = 201
    gate = threading.Event()
    receiver.hold["/in/b.bin"] = gate
    first = start(process, data_dir)
    try:
        with client(first.url, api_key) as alice:
            a = upload(alice, "/out/a.bin", b"A" * 4096)
            b = upload(alice, "/out/b.bin", b"B" * 4096)
            started = start_transfer(
                alice, [a["id"], b["id"]], {"type": "push", "url": receiver.url + "/in/{name}"}
            )
            # a.bin has arrived and b.bin is on its way when the server dies.
            receiver.wait_for(lambda got: any(r.path == "/in/b.bin" for r in got))
            running = alice.get(f"/api/v1/transfers/{started['id']}").json()
            assert running["state"] == "running"
            assert running["files_done"] == 1
        first.kill()
    finally:
        gate.set()

    second = start(process, data_dir)
    with client(second.url, api_key) as alice:
        done = wait_transfer(alice, started["id"])
    assert done["state"] == "completed", done
    assert done["files_done"] == 2
    assert done["attempts"] == 2
    paths = [unquote(r.path) for r in receiver.requests]
    assert paths == ["/in/a.bin", "/in/b.bin", "/in/b.bin"]
    assert receiver.requests[-1].body == b"B" * 4096
