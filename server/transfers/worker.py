"""The transfer worker pool: asyncio tasks that take queued jobs from the database and
run them (folder copy or move, inbox delivery, share link, push to an HTTPS endpoint).

A job's progress is stored as it goes; each finished file is recorded in the same
transaction as the file's own change, so a job interrupted by a restart resumes at
the next file and never does one twice. Transient failures (no answer, 408, 429,
5xx) go back to the queue on the retry schedule; anything else fails the job.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import os
import random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio.to_thread

from dropline.server.files.entries import FileService
from dropline.server.files.names import join_path, split_path
from dropline.server.files.records import Entry
from dropline.server.guard import outbound, policy
from dropline.server.guard.security import RequestFacts, Security, request_facts
from dropline.server.identity.accounts import Principal
from dropline.server.metrics import Metrics
from dropline.server.problems import Problem
from dropline.server.storage import leases
from dropline.server.storage.blobs import BlobStore, new_blob_id
from dropline.server.transfers.progress import Cancelled, Progress
from dropline.server.transfers.requests import push_host
from dropline.server.transfers.service import (
    CANCELLED,
    COMPLETED,
    FAILED,
    TransferService,
    worker_principal,
)
from dropline.server.transfers.shares import SHARE_PREFIX, ShareService, create_share

log = logging.getLogger(__name__)

# 1 MiB pieces: bigger ones were slower here (fresh large buffers are costly to touch).
CHUNK = 1024 * 1024
MAX_RENAME_TRIES = 1000
EXPIRE_LINKS_EVERY = 30.0
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class Refused(Exception):
    """The other side said no for good (a 4xx other than 408/425/429)."""


class Transient(Exception):
    """Worth trying again later; ``retry_after`` (seconds) if the other side said so."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def numbered(name: str, n: int) -> str:
    """``report.pdf`` -> ``report (2).pdf``; a leading dot is part of the name, not a suffix."""
    stem, dot, ext = name.rpartition(".")
    if not dot or not stem:
        return f"{name} ({n})"
    return f"{stem} ({n}).{ext}"


class TransferWorkers:
    def __init__(
        self,
        service: TransferService,
        files: FileService,
        blobs: BlobStore,
        shares: ShareService,
        *,
        staging_dir: Path,
        workers: int,
        retry_schedule: Sequence[float],
        poll_seconds: float,
        allow_private: bool,
        push_timeout: float,
        metrics: Metrics | None = None,
        wake_webhooks: Callable[[], None] | None = None,
    ) -> None:
        self.service = service
        self.files = files
        self.blobs = blobs
        self.shares = shares
        self.staging_dir = staging_dir
        self.workers = workers
        self.retry_schedule = tuple(retry_schedule)
        self.poll_seconds = poll_seconds
        self.allow_private = allow_private
        self.push_timeout = push_timeout
        self.metrics = metrics
        self.wake_webhooks = wake_webhooks or (lambda: None)
        # The security layer (policy hooks, audit), plugged in by dropline.server.http.operations.
        self.security: Security | None = None
        self.rng = random.Random()
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def wake(self) -> None:
        """A job was queued; callable from any thread."""
        loop, event = self._loop, self._event
        if loop is None or event is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is shutting down
            loop.call_soon_threadsafe(event.set)

    async def run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._event = asyncio.Event()
        self.staging_dir.mkdir(parents=True, exist_ok=True)
        await anyio.to_thread.run_sync(self.service.recover)
        await anyio.to_thread.run_sync(self._clear_staging)
        tasks = [
            asyncio.create_task(self._worker(i), name=f"transfer-worker-{i}")
            for i in range(self.workers)
        ]
        tasks.append(asyncio.create_task(self._housekeeping(), name="transfer-links"))
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            # Stopping cleanly: another node may take this one's jobs at once.
            with contextlib.suppress(Exception):
                self.service.release_mine()

    def _clear_staging(self) -> None:
        # Partial copies of interrupted jobs: the job starts that file again.
        for leftover in self.staging_dir.glob("*.part"):
            leftover.unlink(missing_ok=True)

    async def _housekeeping(self) -> None:
        while True:
            try:
                await anyio.to_thread.run_sync(self.shares.expire_due)
            except Exception:
                log.exception("expiring share links failed; trying again later")
            await asyncio.sleep(EXPIRE_LINKS_EVERY)

    async def _worker(self, index: int) -> None:
        assert self._event is not None
        while True:
            self._event.clear()
            try:
                job = await anyio.to_thread.run_sync(self.service.claim)
            except Exception:
                log.exception("transfer worker %s could not claim a job", index)
                job = None
            if job is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._event.wait(), self.poll_seconds)
                continue
            await self.execute(job)

    # -- one job -----------------------------------------------------------------------

    async def execute(self, job: Any) -> None:
        """Run one job under this node's lease, renewed while it runs; a job whose lease
        another node took (this one stalled past it) is left to that node."""

        async def renew() -> bool:
            return await anyio.to_thread.run_sync(self.service.renew, job.id)

        every = self.service.lease_seconds / 3
        try:
            held = await leases.run_while_held(self._execute(job), renew, every)
        except leases.LeaseLost:
            held = False
        if not held:
            log.warning("transfer %s is held by another node now; left to it", job.id)

    async def _execute(self, job: Any) -> None:
        """Run one job as its own "request" for the security layer: its file hooks then
        know the tenant (whose key seals the copies) and defer a denial's audit row and
        ``policy.violated`` event until the job's transaction is over, as in a request."""
        if self.security is None:
            await self._run(job)
            return
        facts = RequestFacts(
            request_id=f"transfer:{job.id}",
            client_ip=None,
            method="TRANSFER",
            via_mtls=False,
            tenant_id=job.tenant_id,
        )
        token = request_facts.set(facts)
        try:
            await self._run(job)
        finally:
            request_facts.reset(token)
            if facts.pending:
                writes, facts.pending = facts.pending, []
                await anyio.to_thread.run_sync(self.security.write_all, writes)
                self.wake_webhooks()

    async def _run(self, job: Any) -> None:
        handlers = {
            "folder": self._folder,
            "inbox": self._inbox,
            "link": self._link,
            "push": self._push,
        }
        log.info("transfer %s running (%s, attempt %s)", job.id, job.kind, job.attempts)
        final: str | None = None
        try:
            await handlers[job.kind](job)
            final = COMPLETED
        except Cancelled:
            await self._finish(job, CANCELLED)
            final = CANCELLED
        except Problem as problem:
            await self._finish(job, FAILED, problem.detail or problem.title, problem.slug)
            final = FAILED
        except Refused as exc:
            await self._finish(job, FAILED, str(exc), "endpoint-refused")
            final = FAILED
        except outbound.TargetRefused as exc:
            await self._finish(job, FAILED, str(exc), "target-refused")
            final = FAILED
        except (Transient, OSError, outbound.OutboundError) as exc:
            final = await self._retry_or_fail(job, exc)
        except (asyncio.CancelledError, leases.LeaseLost):
            # The server is stopping (its jobs go back to the queue), or another node
            # holds this job now: either way this node writes nothing more to it.
            raise
        except Exception:
            log.exception("transfer %s failed unexpectedly", job.id)
            await self._finish(job, FAILED, "internal error; see the server log", "internal")
            final = FAILED
        if final is not None and self.metrics is not None:
            self.metrics.transfers_finished.labels(job.kind, final).inc()

    async def _finish(
        self, job: Any, state: str, error: str | None = None, code: str | None = None
    ) -> None:
        # A denial's audit row commits with the final state, so whoever sees the job
        # failed finds the row too.
        facts = request_facts.get()
        writes = list(facts.pending) if facts is not None else []

        def finish() -> None:
            with self.service.db.write() as conn:
                for write in writes:
                    write(conn)
                self.service.finish(job.id, state, error=error, code=code, conn=conn)

        await anyio.to_thread.run_sync(finish)
        if facts is not None:
            del facts.pending[: len(writes)]
        self.wake_webhooks()

    async def _retry_or_fail(self, job: Any, exc: Exception) -> str | None:
        message = str(exc) or type(exc).__name__
        attempts = int(job.attempts)
        if attempts > len(self.retry_schedule):
            await self._finish(
                job, FAILED, f"gave up after {attempts} attempts: {message}", "unavailable"
            )
            return FAILED
        delay = self.retry_schedule[attempts - 1] * self.rng.uniform(0.8, 1.2)
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            delay = max(delay, min(retry_after, 24 * 3600.0))
        state = await anyio.to_thread.run_sync(
            self.service.retry_later, job.id, delay, message, "unavailable"
        )
        return CANCELLED if state == CANCELLED else None

    # -- copying (folder copy, inbox) ----------------------------------------------------

    async def _copy_bytes(self, job: Any, entry: Entry, progress: Progress) -> Path:
        """Copy ``entry``'s blob to a staged file (fsynced) and check its SHA-256."""
        if entry.blob_id is None:
            raise Problem("conflict", f"{entry.path} has no content")
        staged = self.staging_dir / f"{job.id}.part"
        blob_id = entry.blob_id
        digest = hashlib.sha256()
        source = await anyio.to_thread.run_sync(self.blobs.open, blob_id)
        try:
            with staged.open("wb", buffering=0) as out:

                def step() -> int:
                    # Read, hash and write in one trip to a worker thread; hashlib frees
                    # the GIL on big buffers, so the event loop keeps serving meanwhile.
                    chunk = source.read(CHUNK)
                    if chunk:
                        digest.update(chunk)
                        out.write(chunk)
                    return len(chunk)

                while copied := await anyio.to_thread.run_sync(step):
                    await progress.add(copied)
                await anyio.to_thread.run_sync(os.fsync, out.fileno())
        except BaseException:
            staged.unlink(missing_ok=True)
            raise
        finally:
            source.close()
        if digest.hexdigest() != entry.sha256:
            staged.unlink(missing_ok=True)
            raise Problem("integrity", f"the stored content of {entry.path} fails its checksum")
        return staged

    @staticmethod
    def _target(folder: str, name: str, n: int) -> str:
        candidate = name if n == 1 else numbered(name, n)
        return join_path(folder, candidate)

    def _publish_copy(
        self,
        job: Any,
        principal: Principal,
        folder: str,
        entry: Entry,
        staged: Path,
        on_conflict: str,
        index: int,
        base: int,
        result: dict[str, Any],
    ) -> Entry:
        """Store the staged bytes as a blob and publish them at the first free name (or
        over the existing file), marking the file done in the same transaction."""
        blob_id = new_blob_id()
        self.blobs.put(blob_id, staged)
        try:
            for n in range(1, MAX_RENAME_TRIES + 1):
                target = self._target(folder, entry.name, n)
                if_rev = None if on_conflict == "overwrite" else "none"

                def mark(conn: Any, published: Entry) -> None:
                    done = {
                        **result,
                        "entries": [
                            *result.get("entries", []),
                            {"id": published.id, "path": published.path},
                        ],
                    }
                    done["bytes_committed"] = base + entry.size
                    self.service.file_done(conn, job.id, index + 1, base + entry.size, done)

                try:
                    return self.files.publish(
                        principal,
                        target,
                        blob_id=blob_id,
                        size=entry.size,
                        sha256=str(entry.sha256),
                        mtime=entry.mtime,
                        if_rev=if_rev,
                        in_transaction=mark,
                    )
                except Problem as problem:
                    taken = problem.slug in ("precondition-failed", "already-exists")
                    if not taken or on_conflict != "rename":
                        if taken:
                            raise Problem(
                                "already-exists", f"something is already at {target}"
                            ) from None
                        raise
            raise Problem("conflict", f"no free name for {entry.name} in {folder}")
        except BaseException:
            self.blobs.delete(blob_id)
            raise

    async def _copy_all(self, job: Any, target: Principal, folder: str, on_conflict: str) -> None:
        owner = worker_principal(job)
        file_ids: list[str] = json.loads(job.file_ids)
        result: dict[str, Any] = json.loads(job.result)
        base = int(result.get("bytes_committed", 0))
        for index in range(int(job.files_done), len(file_ids)):
            entry = await anyio.to_thread.run_sync(self.files.get, owner, file_ids[index])
            progress = Progress(self.service, job.id, base)
            staged = await self._copy_bytes(job, entry, progress)
            try:
                published = await anyio.to_thread.run_sync(
                    self._publish_copy,
                    job,
                    target,
                    folder,
                    entry,
                    staged,
                    on_conflict,
                    index,
                    base,
                    result,
                )
            finally:
                staged.unlink(missing_ok=True)
            result.setdefault("entries", []).append({"id": published.id, "path": published.path})
            base += entry.size
            result["bytes_committed"] = base
        await self._finish(job, COMPLETED)

    async def _folder(self, job: Any) -> None:
        dest = json.loads(job.destination)
        if dest.get("mode") == "move":
            await self._move_all(job, dest["path"], dest.get("on_conflict", "rename"))
        else:
            await self._copy_all(
                job, worker_principal(job), dest["path"], dest.get("on_conflict", "rename")
            )

    async def _inbox(self, job: Any) -> None:
        secrets = json.loads(job.secrets)
        recipient = worker_principal(job, user_id=secrets["recipient_id"])
        await self._copy_all(job, recipient, self.service.inbox_path, "rename")

    async def _move_all(self, job: Any, folder: str, on_conflict: str) -> None:
        owner = worker_principal(job)
        file_ids: list[str] = json.loads(job.file_ids)
        result: dict[str, Any] = json.loads(job.result)
        moved = list(result.get("entries", []))

        def move_one(file_id: str) -> Entry:
            entry = self.files.get(owner, file_id)
            if split_path(entry.path)[0] == folder:
                return entry  # already there (a resumed job, or a no-op)
            for n in range(1, MAX_RENAME_TRIES + 1):
                target = self._target(folder, entry.name, n)
                try:
                    return self.files.move(owner, file_id, path=target)
                except Problem as problem:
                    # A move cannot overwrite: "overwrite" fails like "fail" does.
                    if problem.slug != "already-exists" or on_conflict != "rename":
                        raise
            raise Problem("conflict", f"no free name for {entry.name} in {folder}")

        done_bytes = int(job.bytes_done)
        for index in range(int(job.files_done), len(file_ids)):
            entry = await anyio.to_thread.run_sync(move_one, file_ids[index])
            moved.append({"id": entry.id, "path": entry.path})
            done_bytes += entry.size
            result["entries"] = moved

            def mark(i: int = index, total: int = done_bytes) -> None:
                with self.service.db.write() as conn:
                    self.service.file_done(conn, job.id, i + 1, total, result)

            await anyio.to_thread.run_sync(mark)
        await self._finish(job, COMPLETED)

    # -- share links -------------------------------------------------------------------

    async def _link(self, job: Any) -> None:
        owner = worker_principal(job)
        dest = json.loads(job.destination)
        secrets = json.loads(job.secrets)
        file_ids: list[str] = json.loads(job.file_ids)

        def make() -> None:
            entries = [self.files.get(owner, file_id) for file_id in file_ids]
            now = time.time()
            expires_at = now + float(dest["expires_in"])
            with self.service.db.write() as conn:
                token = create_share(
                    conn,
                    tenant_id=job.tenant_id,
                    user_id=job.user_id,
                    transfer_id=job.id,
                    entries=entries,
                    expires_at=expires_at,
                    max_downloads=dest.get("max_downloads"),
                    password_hash=secrets.get("password_hash"),
                    allowed_cidrs=dest.get("allowed_cidrs"),
                )
                url = f"{secrets['link_base']}{SHARE_PREFIX}{token}"
                result = {
                    "url": url,
                    "expires_at": expires_at,
                    "max_downloads": dest.get("max_downloads"),
                    "files": [{"id": e.id, "name": e.name, "size": e.size} for e in entries],
                }
                total = sum(e.size for e in entries)
                self.service.file_done(conn, job.id, len(entries), total, result)
                self.service.finish(job.id, COMPLETED, conn=conn)

        await anyio.to_thread.run_sync(make)
        self.wake_webhooks()

    # -- push to an HTTPS endpoint -------------------------------------------------------

    async def _check_push_policy(self, owner: Principal, url: str) -> None:
        """The push allow-list read again when the push runs: a host taken off the list
        since the transfer was created is refused now, not only at creation."""
        host = push_host(url)

        def check() -> None:
            with self.service.db.read() as conn:
                rules = policy.effective(conn, owner.tenant_id, owner.user_id)
            policy.check_push_host(rules, host)

        try:
            await anyio.to_thread.run_sync(check)
        except policy.PolicyDenied as denied:
            if self.security is not None:
                raise self.security.deny(None, owner, denied, resource=host) from None
            raise Problem("policy-denied", denied.detail) from None

    async def _push(self, job: Any) -> None:
        owner = worker_principal(job)
        dest = json.loads(job.destination)
        await self._check_push_policy(owner, str(dest["url"]))
        secrets = json.loads(job.secrets)
        file_ids: list[str] = json.loads(job.file_ids)
        result: dict[str, Any] = json.loads(job.result)
        base = int(result.get("bytes_committed", 0))
        for index in range(int(job.files_done), len(file_ids)):
            entry = await anyio.to_thread.run_sync(self.files.get, owner, file_ids[index])
            progress = Progress(self.service, job.id, base)
            status = await self._push_one(job, entry, dest, secrets.get("headers", {}), progress)
            base += entry.size
            result.setdefault("responses", []).append(
                {"file_id": entry.id, "name": entry.name, "status_code": status}
            )
            result["bytes_committed"] = base

            def mark(i: int = index, total: int = base) -> None:
                with self.service.db.write() as conn:
                    self.service.file_done(conn, job.id, i + 1, total, result)

            await anyio.to_thread.run_sync(mark)
        await self._finish(job, COMPLETED)

    async def _push_one(
        self,
        job: Any,
        entry: Entry,
        dest: dict[str, Any],
        extra_headers: dict[str, str],
        progress: Progress,
    ) -> int:
        if entry.blob_id is None or entry.sha256 is None:
            raise Problem("conflict", f"{entry.path} has no content")
        url = str(dest["url"]).replace("{name}", quote(entry.name, safe=""))
        digest = bytes.fromhex(entry.sha256)
        headers = {
            "Content-Type": "application/octet-stream",
            **extra_headers,
            "Content-Length": str(entry.size),
            "Content-Digest": f"sha-256=:{base64.b64encode(digest).decode()}:",
            "Dropline-Transfer-Id": job.id,
            "Dropline-File-Name": quote(entry.name, safe=""),
            "Dropline-File-Sha256": entry.sha256,
        }
        answer = await outbound.send(
            str(dest.get("method", "PUT")),
            url,
            allow_private=self.allow_private,
            timeout=self.push_timeout,
            headers=headers,
            content=self._read_blob(entry.blob_id, progress),
        )
        status = answer.status_code
        if 200 <= status < 300:
            return status
        message = f"the endpoint answered {status} for {entry.name}"
        excerpt = answer.body_excerpt.strip()
        if excerpt:
            message += f": {excerpt[:200]}"
        if status in TRANSIENT_STATUS:
            raise Transient(
                message, outbound.retry_after_seconds(answer.headers.get("retry-after"))
            )
        raise Refused(message)

    async def _read_blob(self, blob_id: str, progress: Progress) -> AsyncIterator[bytes]:
        handle = await anyio.to_thread.run_sync(self.blobs.open, blob_id)
        try:
            while True:
                chunk = await anyio.to_thread.run_sync(handle.read, CHUNK)
                if not chunk:
                    return
                yield chunk
                await progress.add(len(chunk))
        finally:
            handle.close()


__all__ = ["TransferWorkers", "numbered"]
