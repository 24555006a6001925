"""Several server nodes on one PostgreSQL database, each running transfer workers: a
job whose node is killed with SIGKILL mid-job is taken over by another node when its
lease runs out, resumes at the next file, and completes, publishing each file once."""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import pytest
from sqlalchemy import select

from dropline.server.storage import schema
from dropline.server.storage.db import Database
from tests.server.ops_helpers import OPS_SCOPES, start_transfer, upload, wait_transfer
from tests.support.live import ServerProcess
from tests.support.nodes import migrated_with_key, running_nodes
from tests.support.receiver import Receiver, wait_until

LEASE_SECONDS = 2


@pytest.fixture
def api_key(postgres_url: str) -> str:
    return migrated_with_key(postgres_url, OPS_SCOPES)


@pytest.fixture
def nodes(tmp_path: Path, postgres_url: str) -> Iterator[list[ServerProcess]]:
    env = {
        "DROPLINE_ALLOW_PRIVATE_TARGETS": "1",
        "DROPLINE_WORKER_POLL_SECONDS": "0.05",
        "DROPLINE_WORK_LEASE_SECONDS": str(LEASE_SECONDS),
    }
    with running_nodes(tmp_path, postgres_url, 2, env) as started:
        yield started


def client(url: str, key: str) -> httpx.Client:
    return httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {key}", "Tus-Resumable": "1.0.0"},
        timeout=30,
    )


def holder_pid(postgres_url: str, transfer_id: str) -> int | None:
    """The process id in the job's lease owner (``host-pid-random``); None when free."""
    db = Database(postgres_url)
    try:
        with db.read() as conn:
            owner = conn.execute(
                select(schema.transfers.c.lease_owner).where(schema.transfers.c.id == transfer_id)
            ).scalar_one()
    finally:
        db.dispose()
    return None if owner is None else int(str(owner).rsplit("-", 2)[1])


def test_a_job_whose_node_is_killed_mid_job_completes_on_another_node(
    nodes: list[ServerProcess], api_key: str, postgres_url: str, receiver: Receiver
) -> None:
    receiver.default.status = 201
    gate = threading.Event()
    receiver.hold["/in/b.bin"] = gate
    try:
        with client(nodes[0].url, api_key) as alice:
            a = upload(alice, "/out/a.bin", b"A" * 4096)
            b = upload(alice, "/out/b.bin", b"B" * 4096)
            started = start_transfer(
                alice, [a["id"], b["id"]], {"type": "push", "url": receiver.url + "/in/{name}"}
            )
        # a.bin has arrived and b.bin is on its way when the node running the job dies.
        receiver.wait_for(lambda got: any(r.path == "/in/b.bin" for r in got))
        pid = holder_pid(postgres_url, started["id"])
        running = [node for node in nodes if node.proc is not None and node.proc.pid == pid]
        assert len(running) == 1, "the job's lease names one of the nodes"
        victim = running[0]
        victim.kill()
    finally:
        gate.set()
    survivor = next(node for node in nodes if node is not victim)
    with client(survivor.url, api_key) as alice:
        assert alice.get(f"/api/v1/transfers/{started['id']}").json()["state"] == "running"
        done = wait_transfer(alice, started["id"], timeout=60)
    assert done["state"] == "completed", done
    assert done["files_done"] == 2
    assert done["attempts"] == 2
    # a.bin went once; b.bin, cut off by the kill, went again from the other node.
    paths = [unquote(r.path) for r in receiver.requests]
    assert paths == ["/in/a.bin", "/in/b.bin", "/in/b.bin"]
    assert receiver.requests[-1].body == b"B" * 4096
    assert wait_until(lambda: holder_pid(postgres_url, started["id"]) is None)


def transfer_row(postgres_url: str, transfer_id: str) -> object:
    db = Database(postgres_url)
    try:
        with db.read() as conn:
            return conn.execute(
                select(schema.transfers).where(schema.transfers.c.id == transfer_id)
            ).one()
    finally:
        db.dispose()


def test_a_folder_copy_whose_node_is_killed_mid_copy_publishes_each_file_once(
    nodes: list[ServerProcess], api_key: str, postgres_url: str
) -> None:
    big = os.urandom(192 * 1024 * 1024)
    with client(nodes[0].url, api_key) as alice:
        first = upload(alice, "/out/big.bin", big)
        second = upload(alice, "/out/small.txt", b"small")
        started = start_transfer(
            alice, [first["id"], second["id"]], {"type": "folder", "path": "/copies"}
        )
    # Kill the node copying big.bin once it has reported some of it, none published.
    deadline = time.monotonic() + 60
    while True:
        row = transfer_row(postgres_url, started["id"])
        assert row.files_done == 0, "the copy ended before the node could be killed"  # type: ignore[attr-defined]
        if row.lease_owner is not None and row.bytes_done > 0:  # type: ignore[attr-defined]
            break
        assert time.monotonic() < deadline
        time.sleep(0.01)
    pid = holder_pid(postgres_url, started["id"])
    victim = next(node for node in nodes if node.proc is not None and node.proc.pid == pid)
    victim.kill()
    survivor = next(node for node in nodes if node is not victim)
    with client(survivor.url, api_key) as alice:
        done = wait_transfer(alice, started["id"], timeout=120)
        assert done["state"] == "completed", done
        assert done["files_done"] == 2 and done["attempts"] == 2
        listing = alice.get("/api/v1/files", params={"path": "/copies"}).json()
        names = sorted(entry["name"] for entry in listing["entries"])
        assert names == ["big.bin", "small.txt"]  # no "big (2).bin": published once
        copy = next(e for e in listing["entries"] if e["name"] == "big.bin")
        assert copy["sha256"] == hashlib.sha256(big).hexdigest()
        body = alice.get(f"/api/v1/files/{copy['id']}/content").content
        assert hashlib.sha256(body).hexdigest() == copy["sha256"]
