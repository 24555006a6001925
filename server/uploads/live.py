"""Uploads in progress in this process: each one's lock and running whole-file hash,
kept while requests use it, and the worker pool their disk work runs on."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dropline.server.problems import Problem

LOCK_WAIT_SECONDS = 10.0  # how long a request waits for another one on the same upload

T = TypeVar("T")


@dataclass
class LiveUpload:
    """In-memory state of one upload: its lock and the running whole-file hash."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    hasher: Any = None  # hashlib object covering bytes [0, offset); None: rebuild from disk
    # Chunk sums of bytes [0, offset) (storage.integrity), kept while the upload stays in
    # memory from its creation on; None: the blob store computes them at publish.
    sums: Any = None
    offset: int = -1
    # With uploads staged in the object store: the part this node's copy of bytes
    # [0, offset) ends with (None: unknown, or none at 0), so that after other nodes'
    # PATCHes it fetches only the parts that came after it (``uploads.shared_staging``).
    part: str | None = None
    users: int = 0  # requests holding or waiting for the lock; forgotten only at zero


class LiveUploads:
    """The uploads some request is using, by id, and the pool for upload disk work."""

    def __init__(self) -> None:
        self._uploads: dict[str, LiveUpload] = {}
        # Our own pool: a slow disk must not starve the request thread pool, and
        # pipelined writes need a future we can start and await later.
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="upload-io")

    def close(self) -> None:
        self.executor.shutdown(wait=True)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on the upload pool."""
        # The request's context (request id, source address for audit rows) goes along.
        ctx = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self.executor, ctx.run, fn, *args)

    def add(self, upload_id: str, live: LiveUpload) -> None:
        self._uploads[upload_id] = live

    def get(self, upload_id: str) -> LiveUpload | None:
        return self._uploads.get(upload_id)

    def discard(self, upload_id: str) -> None:
        self._uploads.pop(upload_id, None)

    def ids(self) -> set[str]:
        return set(self._uploads)

    def in_use(self) -> set[str]:
        """The uploads a request holds or waits for now (safe from another thread: the
        copy is one C call, never interleaved with the event loop's changes)."""
        return {upload_id for upload_id, live in self._uploads.copy().items() if live.users > 0}

    async def lock(self, upload_id: str) -> LiveUpload:
        """The upload's state, its lock held (a 409 ``conflict`` after waiting too long)."""
        live = self._uploads.setdefault(upload_id, LiveUpload())
        live.users += 1
        try:
            await asyncio.wait_for(live.lock.acquire(), LOCK_WAIT_SECONDS)
        except TimeoutError:
            self._unuse(upload_id, live, keep=True)
            raise Problem("conflict", "another request is writing to this upload; retry") from None
        return live

    def release(self, upload_id: str, live: LiveUpload, keep: bool) -> None:
        """Release the lock; without ``keep`` the state goes once no request uses it."""
        live.lock.release()
        self._unuse(upload_id, live, keep)

    def _unuse(self, upload_id: str, live: LiveUpload, keep: bool) -> None:
        live.users -= 1
        if not keep and live.users == 0 and self._uploads.get(upload_id) is live:
            self._uploads.pop(upload_id, None)
