"""The server side of one folder: the first full listing, then the change feed by
long-poll, each page written to the journal's queue together with its cursor (one
transaction, so a crash never skips a change nor loses one).

While the server is unreachable the poll backs off (1 s doubling to a minute) and
the folder shows offline; the first answer brings it back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections import deque

from dropline.sdk import (
    AuthenticationError,
    Change,
    ChangeAction,
    CircuitOpenError,
    CursorExpiredError,
    DroplineError,
    Entry,
    NotFoundError,
)
from dropline.sync import fs
from dropline.sync.folder_state import FolderState
from dropline.sync.records import Base, Remote
from dropline.sync.transfer import remote_of
from dropline.sync.types import FolderMode

log = logging.getLogger(__name__)

BACKOFF_MAX = 60.0
FEED_JITTER = 1.0  # seconds: a feed waiting out the breaker comes back within this after it


def remote_path(root: str, rel: str) -> str:
    """The server path of ``rel`` in a folder mapped to ``root``."""
    if not rel:
        return root
    return ("" if root == "/" else root.rstrip("/")) + "/" + rel


def rel_of(root: str, path: str) -> str | None:
    """The relative path of a server path, or None when it lies outside ``root``."""
    if root == "/":
        return path[1:]
    prefix = root.rstrip("/")
    if path == prefix:
        return ""
    if path.startswith(prefix + "/"):
        return path[len(prefix) + 1 :]
    return None


def _known(base: Base | None, remote: Remote | None) -> bool:
    if base is None or remote is None:
        return base is None and remote is None
    return base.remote_id == remote.id and base.rev == remote.rev


def _ours(uploading: str | None, remote: Remote | None) -> bool:
    """The change is the upload still running here (same content): when it finishes
    the base says so; if it was someone else's, our upload's precondition fails."""
    return uploading is not None and remote is not None and remote.sha256 == uploading


class RemoteFeed:
    def __init__(self, folder: FolderState) -> None:
        self.folder = folder
        self._task: asyncio.Task[None] | None = None
        self._helpers: set[asyncio.Task[None]] = set()
        self.resume = asyncio.Event()
        self.resume.set()
        self._online = asyncio.Event()  # the folder reached the server: stop backing off
        self._catching_up = True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"feed {self.folder.root}")

    async def stop(self) -> None:
        tasks = [t for t in (self._task, *self._helpers) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def back_online(self) -> None:
        """The folder's probe got an answer: a feed backing off polls again now."""
        self._online.set()

    async def _back_off(self, exc: DroplineError, backoff: float) -> float:
        """Wait after a failed poll; returns the next backoff. The breaker's refusal is
        waited out as it says (no doubling: it spaces the real requests itself); any
        wait ends early when the folder finds the server answering again."""
        if isinstance(exc, CircuitOpenError):
            wait = (exc.retry_after or 0.0) + random.uniform(0.1, FEED_JITTER)
        else:
            wait, backoff = backoff, min(backoff * 2, BACKOFF_MAX)
        self._online.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._online.wait(), wait)
        return 1.0 if self._online.is_set() else backoff

    def refresh(self, rel: str) -> None:
        """Fetch the server's state of one path now (after a 409/412) and queue it."""
        task = asyncio.create_task(self._refresh(rel))
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)

    async def _refresh(self, rel: str) -> None:
        folder = self.folder
        try:
            entry = await folder.hooks.client().metadata(remote_path(folder.spec.remote, rel))
            state: Remote | None = remote_of(entry)
        except NotFoundError:
            state = None
        except DroplineError as exc:
            log.info("could not refresh %s: %s", rel, exc)
            return
        folder.journal.enqueue_remote(folder.id, [(rel, state)])
        folder.queue_changed()

    def _may_run(self) -> bool:
        f = self.folder
        return not (f.user_paused or f.hooks.signed_out() or f.missing)

    async def _run(self) -> None:
        backoff = 1.0
        folder = self.folder
        while True:
            if not self._may_run():
                self.resume.clear()
                await self.resume.wait()
                continue
            try:
                cursor = folder.journal.cursor(folder.id)
                if cursor is None:
                    await self._list_all()
                    self._catching_up = True
                    self._listed()
                    continue
                client = folder.hooks.client()
                if self._catching_up:
                    page = await client.changes(cursor)
                else:
                    page = await client.wait_changes(
                        cursor, timeout=folder.hooks.settings.longpoll_timeout
                    )
                await self._apply(page.changes, page.cursor)
                self._catching_up = page.has_more
                folder.set_online()
                backoff = 1.0
            except asyncio.CancelledError:
                raise
            except CursorExpiredError:
                log.info("folder %s: change feed cursor expired; listing again", folder.root)
                folder.journal.set_cursor(folder.id, None)
            except AuthenticationError as exc:
                folder.hooks.auth_failed(exc)
            except DroplineError as exc:
                if exc.retryable:
                    folder.failed_network(exc)
                else:
                    log.warning("folder %s: change feed: %s", folder.root, exc)
                    # A listing that cannot succeed must not hold a rebuild forever: the
                    # uploads' "only if absent" precondition still guards the server.
                    self._listed()
                folder.wake()
                backoff = await self._back_off(exc, backoff)
            except Exception:
                log.exception("folder %s: change feed failed", folder.root)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _listed(self) -> None:
        if self.folder.rebuilding:
            self.folder.rebuilding = False
            self.folder.queue_changed()

    def start_listing(self) -> None:
        """An upload-only folder rebuilding its journal (it has no feed): one listing of
        the server's side, so files already there are recognised, not sent again."""
        self._task = asyncio.create_task(self._list_once(), name=f"listing {self.folder.root}")

    async def _list_once(self) -> None:
        folder = self.folder
        backoff = 1.0
        items: list[tuple[str, Remote | None]] = []
        while True:
            if not self._may_run():
                self.resume.clear()
                await self.resume.wait()
                continue
            try:
                items = await self._list_tree(folder.spec.remote)
                break
            except AuthenticationError as exc:
                folder.hooks.auth_failed(exc)
            except DroplineError as exc:
                if not exc.retryable:
                    log.warning("folder %s: listing the server: %s", folder.root, exc)
                    break
                folder.failed_network(exc)
                backoff = await self._back_off(exc, backoff)
        # Only what is here too needs comparing: the rest was handed over already.
        items = [(rel, r) for rel, r in items if os.path.lexists(fs.abspath(folder.root, rel))]
        folder.journal.enqueue_remote(folder.id, items)
        folder.set_online()
        self._listed()

    async def _list_all(self) -> None:
        """First contact (or an expired cursor): the whole remote tree against the base."""
        folder = self.folder
        client = folder.hooks.client()
        cursor = await client.latest_cursor()  # before listing: nothing can slip between
        # What the base held before listing: only that can be missing from the listing
        # because the server lost it. What the engine records meanwhile (a folder it
        # made, a file it uploaded) may simply come after the listing passed its place.
        before = folder.journal.descendants(folder.id, "")
        root = folder.spec.remote
        if root != "/":
            try:
                await client.metadata(root)
            except NotFoundError:
                if folder.spec.mode is FolderMode.DOWNLOAD_ONLY:
                    await self._store([], cursor, full=before)
                    return
                await client.create_folder(root)
        items = await self._list_tree(root)
        await self._store(items, cursor, full=before)

    async def _list_tree(self, top: str) -> list[tuple[str, Remote | None]]:
        folder = self.folder
        client = folder.hooks.client()
        items: list[tuple[str, Remote | None]] = []
        todo: deque[str] = deque([top])
        while todo:
            directory = todo.popleft()
            try:
                async for entry in client.iter_folder(directory, page_size=1000):
                    rel = rel_of(folder.spec.remote, entry.path)
                    if rel is None or not rel:
                        continue
                    items.append((rel, remote_of(entry)))
                    if entry.is_folder:
                        todo.append(entry.path)
            except NotFoundError:
                continue  # removed while we listed: the feed tells us
        return items

    async def _store(
        self,
        items: list[tuple[str, Remote | None]],
        cursor: str,
        *,
        full: dict[str, Base] | None = None,
    ) -> None:
        """Queue what the server says. ``full``: ``items`` is a whole listing, and ``full``
        the base as it was before it began (what the listing lacks of that is gone)."""
        folder, journal = self.folder, self.folder.journal
        if full is not None:
            base = journal.descendants(folder.id, "")
            seen = {rel for rel, _ in items}
            # Only what differs from the base needs a look.
            items = [
                (rel, r)
                for rel, r in items
                if r is None
                or rel not in base
                or base[rel].rev != r.rev
                or base[rel].remote_id != r.id
            ]
            items += [
                (rel, None)
                for rel, was in full.items()
                if rel not in seen and rel in base and base[rel].rev == was.rev
            ]
        else:
            # Our own uploads come back through the feed: those the base already has
            # (same id, same rev) need no look.
            items = [
                (rel, r)
                for rel, r in items
                if not _known(journal.get_base(folder.id, rel), r)
                and not _ours(folder.uploading.get(rel), r)
            ]
        with journal.transaction():
            journal.enqueue_remote(folder.id, items)
            journal.set_cursor(folder.id, cursor)
        if items:
            folder.queue_changed()

    async def _apply(self, changes: tuple[Change, ...], cursor: str) -> None:
        folder = self.folder
        root = folder.spec.remote
        items: list[tuple[str, Remote | None]] = []
        for change in changes:
            entry: Entry = change.entry
            rel = rel_of(root, entry.path)
            old = rel_of(root, change.old_path) if change.old_path else None
            if change.action is ChangeAction.MOVED and change.old_path is not None:
                if old == "":  # the folder's own root moved away: everything is gone here
                    items += [(p, None) for p in folder.journal.descendants(folder.id, "")]
                elif old is not None:
                    items.append((old, None))
                if rel and entry.is_folder and old is None:
                    # Moved in from outside: its contents arrive without changes of their own.
                    items += await self._list_tree(entry.path)
            if rel is None:
                continue
            if rel == "":
                if change.action is ChangeAction.DELETED:
                    items += [(p, None) for p in folder.journal.descendants(folder.id, "")]
                continue
            if change.action is ChangeAction.DELETED:
                items.append((rel, None))
            else:
                items.append((rel, remote_of(entry)))
        await self._store(items, cursor)
