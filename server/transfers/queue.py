"""The transfer job queue as the workers see it: claim a due job under a lease, renew
it, record progress and files done, retry later, finish. Jobs are rows; a lease
(storage.leases) says which node runs one, so every node may run workers and a job
whose node died is taken over by another, resuming at ``files_done``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, and_, or_, select, update

from dropline.server.audit.events import record_event
from dropline.server.storage import leases, schema
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)

QUEUED = "queued"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
EXPIRED = "expired"
STATES = (QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED, EXPIRED)
FINAL = frozenset({COMPLETED, FAILED, CANCELLED, EXPIRED})

T = schema.transfers
# A running job's lease: the worker renews it every third of this while it works, so
# a node killed mid-job holds the job up this long at most.
LEASE_SECONDS = 30.0


class TransferQueue:
    """The workers' side of :class:`~dropline.server.transfers.service.TransferService`."""

    db: Database
    node: str
    lease_seconds: float
    on_final: Callable[[], None]

    # -- for the workers ---------------------------------------------------------------

    def recover(self) -> int:
        """At start. Embedded (SQLite, one process per data dir): jobs a stopped process
        left running go back to the queue and resume at ``files_done``. Shared database:
        nothing here; a job whose node died is claimed again once its lease runs out.
        Returns how many jobs were queued again."""
        if not self.db.is_sqlite:
            return 0
        with self.db.write() as conn:
            leases.release_all(conn, T)
            count = conn.execute(
                update(T)
                .where(T.c.state == RUNNING)
                .values(state=QUEUED, next_attempt_at=time.time(), updated_at=time.time())
            ).rowcount
        if count:
            log.info("%s interrupted transfer(s) queued again", count)
        return int(count or 0)

    def _due(self, now: float) -> Any:
        # Queued and due, or running on a node whose lease ran out (it died).
        return or_(and_(T.c.state == QUEUED, T.c.next_attempt_at <= now), T.c.state == RUNNING)

    def claim(self) -> Any | None:
        """Lease the next due job to this node, marking it running; None when there is
        none. A job taken over from a dead node resumes at its ``files_done``."""
        now = time.time()
        with self.db.read() as conn:
            # Idle workers look without taking the write lock.
            due = conn.execute(
                select(T.c.id).where(self._due(now), leases.free(T, now)).limit(1)
            ).first()
        if due is None:
            return None
        with self.db.write() as conn:
            taken = leases.claim(
                conn,
                T,
                due=self._due(now),
                order_by=T.c.next_attempt_at,
                limit=1,
                owner=self.node,
                seconds=self.lease_seconds,
                now=now,
                values={
                    "state": RUNNING,
                    "attempts": T.c.attempts + 1,
                    "started_at": now,
                    "updated_at": now,
                },
            )
            if not taken:
                return None
            return conn.execute(select(T).where(T.c.id == taken[0])).one()

    def renew(self, transfer_id: str) -> bool:
        """Keep this node's lease on a running job; False if another node holds it now."""
        with self.db.write() as conn:
            return bool(leases.renew(conn, T, [transfer_id], self.node, self.lease_seconds))

    def release_mine(self) -> int:
        """A node stopping cleanly gives its running jobs back at once."""
        with self.db.write() as conn:
            return leases.release_owned(conn, T, self.node)

    def _mine(self, transfer_id: str) -> Any:
        """Where a worker's write applies: the job, while this node holds its lease."""
        return and_(T.c.id == transfer_id, T.c.lease_owner == self.node)

    def next_due(self) -> float | None:
        with self.db.read() as conn:
            row = conn.execute(
                select(T.c.next_attempt_at)
                .where(T.c.state == QUEUED)
                .order_by(T.c.next_attempt_at)
                .limit(1)
            ).first()
        return None if row is None else float(row.next_attempt_at)

    def load(self, transfer_id: str) -> Any:
        with self.db.read() as conn:
            return conn.execute(select(T).where(T.c.id == transfer_id)).one()

    def progress(self, transfer_id: str, bytes_done: int) -> bool:
        """Record bytes done and renew the lease; returns True if the owner asked to
        cancel meanwhile. :class:`LeaseLost` if another node holds the job now."""
        now = time.time()
        with self.db.write() as conn:
            held = conn.execute(
                update(T)
                .where(self._mine(transfer_id))
                .values(bytes_done=bytes_done, updated_at=now, lease_until=now + self.lease_seconds)
            ).rowcount
            if not held:
                raise leases.LeaseLost(transfer_id)
            row = conn.execute(select(T.c.cancel_requested).where(T.c.id == transfer_id)).one()
        return bool(row.cancel_requested)

    def file_done(
        self,
        conn: Connection,
        transfer_id: str,
        files_done: int,
        bytes_done: int,
        result: dict[str, Any],
    ) -> None:
        """Mark one more file done inside ``conn``'s transaction (with the file's own
        change), so a resumed job never does the same file twice. :class:`LeaseLost`
        (rolling the file's change back with it) if another node holds the job now: the
        file is then published once, by that node."""
        held = conn.execute(
            update(T)
            .where(self._mine(transfer_id))
            .values(
                files_done=files_done,
                bytes_done=bytes_done,
                result=json.dumps(result, sort_keys=True),
                updated_at=time.time(),
            )
        ).rowcount
        if not held:
            raise leases.LeaseLost(transfer_id)

    def retry_later(self, transfer_id: str, delay: float, error: str, code: str) -> str:
        """Back to the queue for another try after ``delay`` seconds; or, if the owner
        asked to cancel while this attempt ran, cancelled. Returns the new state."""
        now = time.time()
        with self.db.write() as conn:
            row = conn.execute(select(T.c.cancel_requested).where(self._mine(transfer_id))).first()
            if row is None:
                raise leases.LeaseLost(transfer_id)
            if row.cancel_requested:
                self._finish(conn, transfer_id, CANCELLED, None, None)
                return CANCELLED
            conn.execute(
                update(T)
                .where(T.c.id == transfer_id)
                .values(
                    state=QUEUED,
                    next_attempt_at=now + delay,
                    error=error,
                    error_code=code,
                    updated_at=now,
                    lease_owner=None,
                    lease_until=None,
                )
            )
        log.info("transfer %s will try again in %.0f s: %s", transfer_id, delay, error)
        return QUEUED

    def finish(
        self,
        transfer_id: str,
        state: str,
        *,
        error: str | None = None,
        code: str | None = None,
        conn: Connection | None = None,
    ) -> None:
        """Move a job to a final state; completed and failed jobs also write their event.
        :class:`LeaseLost` if another node holds the job now (that node finishes it)."""
        if conn is None:
            with self.db.write() as own:
                self._finish_mine(own, transfer_id, state, error, code)
        else:
            self._finish_mine(conn, transfer_id, state, error, code)
        self.on_final()

    def _finish_mine(
        self, conn: Connection, transfer_id: str, state: str, error: str | None, code: str | None
    ) -> None:
        if conn.execute(select(T.c.id).where(self._mine(transfer_id))).first() is None:
            raise leases.LeaseLost(transfer_id)
        self._finish(conn, transfer_id, state, error, code)

    @staticmethod
    def _finish(
        conn: Connection, transfer_id: str, state: str, error: str | None, code: str | None
    ) -> None:
        assert state in FINAL
        now = time.time()
        values: dict[str, Any] = {
            "state": state,
            "finished_at": now,
            "updated_at": now,
            "lease_owner": None,
            "lease_until": None,
        }
        if state == COMPLETED:
            values.update(error=None, error_code=None)
        elif error is not None:
            values.update(error=error, error_code=code)
        conn.execute(update(T).where(T.c.id == transfer_id).values(**values))
        row = conn.execute(select(T).where(T.c.id == transfer_id)).one()
        if state in (COMPLETED, FAILED):
            record_event(
                conn,
                row.tenant_id,
                f"transfer.{state}",
                {
                    "transfer_id": row.id,
                    "user_id": row.user_id,
                    "kind": row.kind,
                    "state": state,
                    "file_ids": json.loads(row.file_ids),
                    "bytes_done": row.bytes_done,
                    "error": {"code": row.error_code, "message": row.error} if row.error else None,
                },
            )
        log.info("transfer %s %s%s", transfer_id, state, f": {error}" if error else "")


__all__ = [
    "CANCELLED",
    "COMPLETED",
    "EXPIRED",
    "FAILED",
    "FINAL",
    "LEASE_SECONDS",
    "QUEUED",
    "RUNNING",
    "STATES",
    "TransferQueue",
]
