"""Expiry of uploads: expired uploads removed with their staged bytes unless a request is
using them, and staged files a stopped server left behind swept once old."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from dropline.server.uploads.live import LiveUploads
from dropline.server.uploads.rows import UploadRows
from dropline.server.uploads.staging import remove_quietly

log = logging.getLogger(__name__)

BATCH_LEFTOVER_SECONDS = 3600.0


class UploadExpiry:
    """Removes what expired; ``forget`` drops one upload's row and staged bytes."""

    def __init__(
        self,
        rows: UploadRows,
        live: LiveUploads,
        upload_dir: Path,
        forget: Callable[[str], None],
    ) -> None:
        self.rows = rows
        self.live = live
        self.upload_dir = upload_dir
        self.forget = forget

    async def cleanup(self, now: float, max_age: float) -> int:
        """Remove uploads expired at ``now`` (rows and bytes) and staged files with no
        row older than ``max_age`` seconds; returns how many went."""
        removed = 0
        for upload_id in await asyncio.to_thread(self.rows.expired_ids, now):
            live = self.live.get(upload_id)
            if live is not None and live.users > 0:
                continue  # a request is using it right now; the next round decides
            self.live.discard(upload_id)
            await self.live.run(self.forget, upload_id)
            removed += 1
        busy = self.live.ids()
        removed += await self.live.run(self._sweep_orphans, now, busy, max_age)
        if removed:
            log.info("removed %s expired uploads", removed)
        return removed

    def _sweep_orphans(self, now: float, busy: set[str], max_age: float) -> int:
        """Staged files with no upload row (a server stopped mid-POST) are removed once old."""
        known = self.rows.ids()
        removed = 0
        for path in self.upload_dir.glob("*.part"):
            upload_id = path.stem
            if upload_id in known or upload_id in busy:
                continue
            try:
                if path.stat().st_mtime < now - max_age:
                    remove_quietly(path)
                    removed += 1
            except FileNotFoundError:
                continue
        # Batch uploads (uploads.batch) stage as *.batch and finish within one request;
        # one an hour old was left by a server that stopped.
        for path in self.upload_dir.glob("*.batch"):
            try:
                if path.stat().st_mtime < now - BATCH_LEFTOVER_SECONDS:
                    remove_quietly(path)
                    removed += 1
            except FileNotFoundError:
                continue
        return removed


async def expiry_loop(cleanup: Callable[[], Awaitable[int]], interval: float) -> None:
    """Run ``cleanup`` every ``interval`` seconds until cancelled."""
    while True:
        try:
            await cleanup()
        except Exception:  # retried next round; never fatal to the server
            log.exception("upload cleanup failed")
        await asyncio.sleep(interval)
