"""Expiry of uploads: expired uploads removed with their staged bytes unless a request is
using them, and staged files a stopped server left behind swept once old; and the
sweeper's part for uploads (:class:`ExpiredUploads`), which waits a grace period more."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

from dropline.server.files.sweeper import SweepItem
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


class ExpiredUploads:
    """The sweeper's part: uploads expired more than the grace period ago (row and staged
    bytes), and files in the upload directory (staged bytes, batch uploads, sealed
    copies) that no upload row owns, untouched for the grace period. ``busy`` names the
    uploads requests of this process are using; they are never touched."""

    def __init__(
        self, rows: UploadRows, upload_dir: Path, busy: Callable[[], set[str]] = set
    ) -> None:
        self.rows = rows
        self.upload_dir = upload_dir
        self.busy = busy

    def _size(self, path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0

    def sweep(self, now: float, grace: float, dry_run: bool) -> list[SweepItem]:
        cutoff = now - grace
        busy = self.busy()
        expired = [u for u in self.rows.expired_ids(cutoff) if u not in busy]
        known = self.rows.ids() | busy
        items = [SweepItem("upload", u, self._size(self.upload_dir / f"{u}.part")) for u in expired]
        strays: list[Path] = []
        for path in sorted(self.upload_dir.iterdir()):
            # <id>.part, <id>.part.sealed, <name>.batch: the upload id comes first.
            if path.name.split(".", 1)[0] in known or not path.is_file():
                continue
            try:
                if path.stat().st_mtime >= cutoff:
                    continue
            except FileNotFoundError:
                continue
            strays.append(path)
            items.append(SweepItem("staged-file", path.name, self._size(path)))
        if not dry_run:
            for upload_id in expired:
                self.rows.delete(upload_id)
                remove_quietly(self.upload_dir / f"{upload_id}.part")
            for path in strays:
                remove_quietly(path)
        return items


async def expiry_loop(cleanup: Callable[[], Awaitable[int]], interval: float) -> None:
    """Run ``cleanup`` every ``interval`` seconds until cancelled."""
    while True:
        try:
            await cleanup()
        except Exception:  # retried next round; never fatal to the server
            log.exception("upload cleanup failed")
        await asyncio.sleep(interval)
