"""A running job's progress: written every half second at most, each write also
renewing the node's lease and learning whether the owner asked to cancel."""

from __future__ import annotations

import time

import anyio.to_thread

from dropline.server.transfers.queue import TransferQueue

PROGRESS_EVERY = 0.5  # seconds between progress writes


class Cancelled(Exception):
    """The owner cancelled the job while it ran."""


class Progress:
    """Throttled progress writes; each one also learns whether a cancel was asked."""

    def __init__(self, service: TransferQueue, transfer_id: str, base: int) -> None:
        self.service = service
        self.transfer_id = transfer_id
        self.done = base
        self._last = 0.0

    async def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self._last < PROGRESS_EVERY:
            return
        self._last = now
        if await anyio.to_thread.run_sync(self.service.progress, self.transfer_id, self.done):
            raise Cancelled()


__all__ = ["PROGRESS_EVERY", "Cancelled", "Progress"]
