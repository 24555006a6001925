"""The webhook dispatcher: fans the durable events outbox out to subscriptions and
delivers each message, signed, with retries on a schedule of about three days.

Everything it knows lives in the database (the outbox position, each delivery's next
attempt), so a restart loses nothing and sends nothing twice that had succeeded.
Every node may run a dispatcher: an attempt is sent under a lease on its delivery
(storage.leases), so live nodes never send one message twice, and one a dead node
was sending goes out again (at least once) when its lease runs out.
A 2xx answer is success; 410 disables the endpoint; anything else, or no answer
within the timeout, is retried after the schedule's next delay with jitter, or
later if the receiver's ``Retry-After`` asks for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from sqlalchemy import Connection, and_, delete, select, update

from dropline.server.guard import outbound
from dropline.server.metrics import Metrics
from dropline.server.storage import leases, schema
from dropline.server.storage.db import Database
from dropline.server.webhooks.subscriptions import (
    CANCELLED,
    FAILED,
    PENDING,
    SUCCEEDED,
    enqueue,
    sign,
    signing_secrets,
)

log = logging.getLogger(__name__)

W = schema.webhook_endpoints
D = schema.webhook_deliveries
A = schema.webhook_attempts
CURSOR = "outbox"
FAN_OUT_BATCH = 500
CLAIM_BATCH = 50
# A receiver may ask for a later retry, but not for one further off than this.
MAX_RETRY_AFTER = 24 * 3600.0
LOG_RETENTION_SECONDS = 30 * 24 * 3600
PRUNE_EVERY = 3600.0


@dataclass(frozen=True, slots=True)
class Claimed:
    id: str
    endpoint_id: str
    tenant_id: str
    event_type: str
    body: str
    attempts: int
    url: str
    secrets: list[str]


def next_delay(
    schedule: Sequence[float], attempts: int, retry_after: float | None, rng: random.Random
) -> float | None:
    """Seconds until the next attempt after ``attempts`` failed ones, or None when the
    schedule is spent. Jitter (±20 %) keeps a recovering receiver from a thundering herd."""
    if attempts > len(schedule):
        return None
    delay = schedule[attempts - 1] * rng.uniform(0.8, 1.2)
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    return delay


class WebhookDispatcher:
    def __init__(
        self,
        db: Database,
        *,
        schedule: Sequence[float],
        timeout: float,
        allow_private: bool,
        poll_seconds: float,
        concurrency: int = 8,
        metrics: Metrics | None = None,
        node: str = leases.NODE_ID,
        lease_seconds: float | None = None,
    ) -> None:
        self.db = db
        self.schedule = tuple(schedule)
        self.timeout = timeout
        self.allow_private = allow_private
        self.poll_seconds = poll_seconds
        self.concurrency = max(1, concurrency)
        self.metrics = metrics
        self.rng = random.Random()
        self.node = node
        # Long enough for one attempt (its timeout) and recording it, with room to spare.
        self.lease_seconds = lease_seconds or timeout * 2 + 30
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_prune = 0.0

    # -- waking ------------------------------------------------------------------------

    def wake(self) -> None:
        """Look for work now; callable from any thread (services run in worker threads)."""
        loop, event = self._loop, self._event
        if loop is None or event is None or loop.is_closed():
            return
        if _running_loop() is loop:
            event.set()
        else:
            with contextlib.suppress(RuntimeError):  # the loop is shutting down
                loop.call_soon_threadsafe(event.set)

    # -- the loop ----------------------------------------------------------------------

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        slots = asyncio.Semaphore(self.concurrency)
        tasks: set[asyncio.Task[None]] = set()
        await anyio.to_thread.run_sync(self.recover)
        try:
            while True:
                self._event.clear()
                try:
                    await anyio.to_thread.run_sync(self.fan_out)
                    free = self.concurrency - len(tasks)
                    claimed = await anyio.to_thread.run_sync(self.claim_due, free) if free else []
                    if time.time() - self._last_prune > PRUNE_EVERY:
                        await anyio.to_thread.run_sync(self.prune)
                except Exception:
                    log.exception("webhook dispatcher pass failed; trying again shortly")
                    claimed = []
                for item in claimed:
                    task = asyncio.create_task(self._deliver_guarded(item, slots))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), self.poll_seconds)
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            # Stopping cleanly: another node may send what this one had claimed at once.
            with contextlib.suppress(Exception), self.db.write() as conn:
                leases.release_owned(conn, D, self.node)

    def recover(self) -> None:
        """Embedded shape only (SQLite: one process per data dir): a lease found at start
        was left by a process that is gone, so it is freed now instead of running out."""
        if self.db.is_sqlite:
            with self.db.write() as conn:
                leases.release_all(conn, D)

    async def _deliver_guarded(self, item: Claimed, slots: asyncio.Semaphore) -> None:
        async with slots:
            try:
                await self.deliver(item)
            except Exception:
                log.exception("delivery %s failed unexpectedly", item.id)
            finally:
                self.wake()

    # -- fan-out -----------------------------------------------------------------------

    def fan_out(self) -> int:
        """Turn new outbox events into one pending delivery per matching subscription,
        and move the outbox position, in one transaction. Returns deliveries made."""
        made = 0
        if not self._outbox_has_news():
            return 0  # the common case, answered without taking the write lock
        with self.db.write() as conn:
            row = conn.execute(
                select(schema.webhook_cursor.c.last_event_id).where(
                    schema.webhook_cursor.c.name == CURSOR
                )
            ).first()
            after = int(row.last_event_id) if row is not None else 0
            events = conn.execute(
                select(schema.events)
                .where(schema.events.c.id > after)
                .order_by(schema.events.c.id)
                .limit(FAN_OUT_BATCH)
            ).all()
            if not events:
                return 0
            tenants = {e.tenant_id for e in events if e.tenant_id is not None}
            endpoints = (
                conn.execute(
                    select(W).where(W.c.tenant_id.in_(tenants), W.c.active.is_(True))
                ).all()
                if tenants
                else []
            )
            for event in events:
                for endpoint in endpoints:
                    if not _wants(endpoint, event):
                        continue
                    enqueue(
                        conn,
                        endpoint_id=endpoint.id,
                        tenant_id=endpoint.tenant_id,
                        event_id=event.id,
                        event_type=event.type,
                        data=json.loads(event.payload),
                        at=event.created_at,
                    )
                    made += 1
            last = int(events[-1].id)
            if row is None:
                conn.execute(schema.webhook_cursor.insert().values(name=CURSOR, last_event_id=last))
            else:
                conn.execute(
                    update(schema.webhook_cursor)
                    .where(schema.webhook_cursor.c.name == CURSOR)
                    .values(last_event_id=last)
                )
        if made:
            log.debug("fanned out %s deliveries", made)
        return made

    def _outbox_has_news(self) -> bool:
        with self.db.read() as conn:
            row = conn.execute(
                select(schema.webhook_cursor.c.last_event_id).where(
                    schema.webhook_cursor.c.name == CURSOR
                )
            ).first()
            after = int(row.last_event_id) if row is not None else 0
            newer = conn.execute(
                select(schema.events.c.id).where(schema.events.c.id > after).limit(1)
            ).first()
        return newer is not None

    # -- claiming and delivering -------------------------------------------------------

    def claim_due(self, limit: int) -> list[Claimed]:
        """Lease up to ``limit`` due pending deliveries to this node, soonest first."""
        now = time.time()
        due = and_(D.c.state == PENDING, D.c.next_attempt_at <= now)
        with self.db.read() as conn:
            # The common case, answered without taking the write lock.
            if (
                conn.execute(select(D.c.id).where(due, leases.free(D, now)).limit(1)).first()
                is None
            ):
                return []
        with self.db.write() as conn:
            ids = leases.claim(
                conn,
                D,
                due=due,
                order_by=D.c.next_attempt_at,
                limit=limit,
                owner=self.node,
                seconds=self.lease_seconds,
                now=now,
            )
            if not ids:
                return []
            rows = conn.execute(
                select(
                    D,
                    W.c.url,
                    W.c.active,
                    W.c.secret,
                    W.c.previous_secret,
                    W.c.previous_secret_expires_at,
                )
                .join(W, W.c.id == D.c.endpoint_id)
                .where(D.c.id.in_(ids))
                .order_by(D.c.next_attempt_at)
            ).all()
        claimed: list[Claimed] = []
        for row in rows:
            claimed.append(
                Claimed(
                    id=row.id,
                    endpoint_id=row.endpoint_id,
                    tenant_id=row.tenant_id,
                    event_type=row.event_type,
                    body=row.body,
                    attempts=int(row.attempts),
                    url=row.url,
                    secrets=signing_secrets(row, now),
                )
            )
        return claimed

    async def deliver(self, item: Claimed) -> str:
        """One attempt; records it and schedules what follows. Returns the outcome."""
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": item.id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(item.secrets, item.id, timestamp, item.body),
        }
        status: int | None = None
        error: str | None = None
        latency: float | None = None
        retry_after: float | None = None
        started = time.perf_counter()
        try:
            answer = await outbound.send(
                "POST",
                item.url,
                allow_private=self.allow_private,
                timeout=self.timeout,
                headers=headers,
                content=item.body.encode("utf-8"),
            )
            status = answer.status_code
            latency = answer.latency_ms
            retry_after = outbound.retry_after_seconds(answer.headers.get("retry-after"))
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except (outbound.TargetRefused, outbound.OutboundError) as exc:
            error = str(exc)
            latency = (time.perf_counter() - started) * 1000
        if status is not None and 200 <= status < 300:
            outcome = "success"
        elif status == 410:
            outcome = "disabled"
        else:
            outcome = "retry"
        attempts = item.attempts + 1
        delay = next_delay(self.schedule, attempts, retry_after, self.rng)
        if outcome == "retry" and delay is None:
            outcome = "failed"
        await anyio.to_thread.run_sync(
            self._record, item, attempts, outcome, status, latency, error, delay
        )
        if self.metrics is not None:
            self.metrics.webhook_outcomes.labels(outcome).inc()
            if latency is not None and status is not None:
                self.metrics.webhook_latency.observe(latency / 1000)
        log.info(
            "webhook delivery %s (%s) attempt %s to endpoint %s: %s%s",
            item.id,
            item.event_type,
            attempts,
            item.endpoint_id,
            outcome,
            f" ({error})" if error else "",
        )
        return outcome

    def _record(
        self,
        item: Claimed,
        attempts: int,
        outcome: str,
        status: int | None,
        latency: float | None,
        error: str | None,
        delay: float | None,
    ) -> None:
        now = time.time()
        values: dict[str, Any] = {
            "attempts": attempts,
            "last_status_code": status,
            "last_latency_ms": latency,
            "last_error": error,
            "updated_at": now,
        }
        if outcome == "success":
            values.update(state=SUCCEEDED, next_attempt_at=None, delivered_at=now)
        elif outcome == "retry":
            assert delay is not None
            values.update(state=PENDING, next_attempt_at=now + delay)
        else:
            values.update(state=FAILED, next_attempt_at=None)
        with self.db.write() as conn:
            if conn.execute(select(D.c.id).where(D.c.id == item.id)).first() is None:
                return  # the subscription was deleted while this attempt ran
            conn.execute(
                A.insert().values(
                    delivery_id=item.id,
                    endpoint_id=item.endpoint_id,
                    attempt=attempts,
                    at=now,
                    outcome=outcome,
                    status_code=status,
                    latency_ms=latency,
                    error=error,
                )
            )
            # Only a delivery still pending is moved on: one cancelled meanwhile stays so.
            conn.execute(update(D).where(D.c.id == item.id, D.c.state == PENDING).values(**values))
            leases.release(conn, D, item.id, self.node)
            if outcome == "disabled":
                self._disable(conn, item.endpoint_id, now)

    @staticmethod
    def _disable(conn: Connection, endpoint_id: str, now: float) -> None:
        conn.execute(
            update(W)
            .where(W.c.id == endpoint_id)
            .values(
                active=False,
                disabled_reason="the receiver answered 410 Gone",
                updated_at=now,
            )
        )
        conn.execute(
            update(D)
            .where(D.c.endpoint_id == endpoint_id, D.c.state == PENDING)
            .values(state=CANCELLED, next_attempt_at=None, updated_at=now)
        )
        log.warning("webhook endpoint %s disabled: the receiver answered 410", endpoint_id)

    def prune(self) -> None:
        """Drop finished deliveries (and their attempts) past the log's retention, and
        outbox events as old that were fanned out already (nothing reads them again)."""
        self._last_prune = time.time()
        cutoff = self._last_prune - LOG_RETENTION_SECONDS
        with self.db.write() as conn:
            old = select(D.c.id).where(D.c.state != PENDING, D.c.updated_at < cutoff)
            conn.execute(delete(A).where(A.c.delivery_id.in_(old)))
            conn.execute(delete(D).where(D.c.state != PENDING, D.c.updated_at < cutoff))
            position = conn.execute(
                select(schema.webhook_cursor.c.last_event_id).where(
                    schema.webhook_cursor.c.name == CURSOR
                )
            ).first()
            if position is not None:
                conn.execute(
                    delete(schema.events).where(
                        schema.events.c.id <= position.last_event_id,
                        schema.events.c.created_at < cutoff,
                    )
                )


def _wants(endpoint: Any, event: Any) -> bool:
    """Same tenant, a chosen type, and not older than the subscription."""
    if endpoint.tenant_id != event.tenant_id:
        return False
    if event.created_at < endpoint.created_at:
        return False
    return str(event.type) in json.loads(endpoint.event_types)


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


__all__ = ["WebhookDispatcher", "next_delay"]
