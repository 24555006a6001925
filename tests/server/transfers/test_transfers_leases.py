"""Transfer jobs are leased: a job is run by one node at a time, a node that stalls
past its lease can no longer write to the job (so a file is published once, by the
node holding it), and a dead node's job is taken over, resuming at ``files_done``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from dropline.server.files.entries import FileService
from dropline.server.storage import schema
from dropline.server.storage.db import Database
from dropline.server.storage.leases import LeaseLost
from dropline.server.storage.migrations import migrate
from dropline.server.transfers.service import COMPLETED, QUEUED, RUNNING, TransferService

T = schema.transfers


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    found = Database(f"sqlite:///{tmp_path / 'dropline.db'}")
    migrate(found)
    yield found
    found.dispose()


def queue_job(db: Database, files: int = 2) -> str:
    now = time.time()
    with db.write() as conn:
        conn.execute(
            T.insert().values(
                id="job-1",
                tenant_id="t",
                user_id="u",
                kind="folder",
                file_ids=str([f"f{n}" for n in range(files)]).replace("'", '"'),
                destination='{"path": "/copies"}',
                state=QUEUED,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
        )
    return "job-1"


def node(db: Database, name: str, lease_seconds: float = 30.0) -> TransferService:
    # The queue methods need no file service; the job rows are the whole state.
    files: FileService = None  # type: ignore[assignment]
    return TransferService(
        db, files, allow_private=True, inbox_path="/Inbox", node=name, lease_seconds=lease_seconds
    )


def row(db: Database, job_id: str) -> object:
    with db.read() as conn:
        return conn.execute(select(T).where(T.c.id == job_id)).one()


def test_a_running_job_is_claimed_by_one_node_only(db: Database) -> None:
    job_id = queue_job(db)
    a, b = node(db, "node-a"), node(db, "node-b")
    job = a.claim()
    assert job is not None and job.id == job_id and job.state == RUNNING
    assert job.lease_owner == "node-a"
    assert b.claim() is None
    assert a.renew(job_id) and not b.renew(job_id)


def test_a_dead_nodes_job_is_taken_over_and_the_stalled_node_can_write_nothing(
    db: Database,
) -> None:
    job_id = queue_job(db)
    stalled, live = node(db, "node-stalled", lease_seconds=0.5), node(db, "node-live")
    assert stalled.claim() is not None
    with db.write() as conn:  # the first file was published before the node stalled
        stalled.file_done(conn, job_id, 1, 100, {"entries": [{"id": "x", "path": "/copies/a"}]})
    time.sleep(0.6)
    taken = live.claim()
    assert taken is not None
    assert taken.lease_owner == "node-live"
    assert taken.files_done == 1  # resumes at the next file
    assert taken.attempts == 2
    # The stalled node wakes up: every write of its attempt is refused, and a file it
    # meant to record as done is rolled back with the refusal.
    with pytest.raises(LeaseLost), db.write() as conn:
        stalled.file_done(conn, job_id, 2, 200, {"entries": ["stale"]})
    with pytest.raises(LeaseLost):
        stalled.progress(job_id, 150)
    with pytest.raises(LeaseLost):
        stalled.finish(job_id, COMPLETED)
    with pytest.raises(LeaseLost):
        stalled.retry_later(job_id, 1.0, "no answer", "unavailable")
    assert not stalled.renew(job_id)
    assert row(db, job_id).files_done == 1  # type: ignore[attr-defined]
    with db.write() as conn:
        live.file_done(conn, job_id, 2, 200, {"entries": ["a", "b"]})
    live.finish(job_id, COMPLETED)
    done = row(db, job_id)
    assert done.state == COMPLETED  # type: ignore[attr-defined]
    assert done.lease_owner is None and done.lease_until is None  # type: ignore[attr-defined]


def test_a_node_stopping_cleanly_hands_its_job_over_at_once(db: Database) -> None:
    job_id = queue_job(db)
    a, b = node(db, "node-a", lease_seconds=3600), node(db, "node-b")
    assert a.claim() is not None
    assert a.release_mine() == 1
    taken = b.claim()
    assert taken is not None and taken.id == job_id and taken.lease_owner == "node-b"


def test_the_embedded_server_requeues_what_it_left_running_at_start(db: Database) -> None:
    job_id = queue_job(db)
    assert node(db, "before-the-crash", lease_seconds=3600).claim() is not None
    after = node(db, "after-restart")
    assert after.claim() is None
    assert after.recover() == 1  # SQLite: the process that held the lease is gone
    recovered = row(db, job_id)
    assert recovered.state == QUEUED and recovered.lease_owner is None  # type: ignore[attr-defined]
    assert after.claim() is not None
