"""The control protocol's undo operations: a file's versions, the trash, and conflicts.

A local path is resolved here to its sync folder and server path, the server is asked
through the engine's SDK client, and the server's problems become control errors at
one boundary (:func:`server_calls`). What comes back to the folder comes through
ordinary sync: these operations only tell the folder to sync now.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import os
import shutil
import tempfile
import time
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from dropline.agent.config import AgentConfig, FolderConfig, normalise_local
from dropline.agent.control import protocol as p
from dropline.agent.paths import AgentPaths
from dropline.sdk import (
    AuthenticationError,
    AuthorizationError,
    ConflictError,
    DroplineClient,
    DroplineError,
    Entry,
    NotFoundError,
    PreconditionFailedError,
    Revision,
    TooLargeError,
    TrashItem,
    ValidationError,
    download_file,
)
from dropline.sdk.hashing import sha256_file
from dropline.sync.remote import rel_of, remote_path
from dropline.sync.types import FolderMode, Issue

log = logging.getLogger(__name__)

COPY_DAYS = 7  # copies of earlier versions older than this are cleared from the cache
SIGN_IN_HINT = "sign in with 'dropline-agent login'"


class UndoEngine(Protocol):
    """The part of the engine the undo operations use."""

    def client(self) -> DroplineClient: ...
    def sync_now(self, local: Path | None = None) -> Any: ...
    def issues(self) -> Any: ...
    def dismiss_issue(self, issue_id: int) -> Any: ...


class UndoHost(Protocol):
    """What the agent service lends: its config, its engine (None when not signed in)."""

    @property
    def paths(self) -> AgentPaths: ...
    @property
    def config(self) -> AgentConfig: ...
    @property
    def engine(self) -> UndoEngine | None: ...
    @property
    def not_running_reason(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Located:
    """A local path inside a sync folder, and where it is on the server."""

    folder: FolderConfig
    local: Path
    rel: str  # "" for the folder itself
    remote: str


# -- the one boundary for the server's problems -------------------------------------------


def control_error(err: DroplineError) -> p.ControlError:
    """The control error for an SDK error, with the server's own message."""
    if isinstance(err, AuthenticationError):
        return p.ControlError(
            p.UNAVAILABLE, f"the agent is not signed in ({err.message}): " + SIGN_IN_HINT
        )
    if isinstance(err, AuthorizationError):
        return p.ControlError(p.NOT_ALLOWED, err.message)
    if isinstance(err, NotFoundError):
        return p.ControlError(p.NOT_FOUND, err.message)
    if isinstance(err, ConflictError | PreconditionFailedError):
        return p.ControlError(p.CONFLICT, err.message)
    if isinstance(err, ValidationError | TooLargeError):
        return p.ControlError(p.INVALID, err.message)
    if err.retryable:
        return p.ControlError(p.UNAVAILABLE, f"the server cannot be reached: {err.message}")
    return p.ControlError(p.UNAVAILABLE, f"the server could not do it: {err.message}")


@contextlib.asynccontextmanager
async def server_calls() -> AsyncIterator[None]:
    try:
        yield
    except DroplineError as err:
        raise control_error(err) from None


# -- records as the protocol's JSON -------------------------------------------------------


def entry_json(e: Entry) -> dict[str, Any]:
    return {
        "id": e.id,
        "name": e.name,
        "path": e.path,
        "type": str(e.type),
        "size": e.size,
        "sha256": e.sha256,
        "rev": e.rev,
        "mtime": e.mtime,
        "parent_id": e.parent_id,
    }


def revision_json(r: Revision) -> dict[str, Any]:
    return {
        "rev": r.rev,
        "size": r.size,
        "sha256": r.sha256,
        "mtime": r.mtime,
        "created_at": r.created_at,
        "user": None if r.user is None else {"id": r.user.id, "email": r.user.email},
        "client": r.client,
        "current": r.current,
    }


def trash_json(item: TrashItem, folder: FolderConfig, local: Path) -> dict[str, Any]:
    return {
        "id": item.id,
        "name": item.name,
        "path": item.path,
        "type": str(item.type),
        "size": item.size,
        "sha256": item.sha256,
        "rev": item.rev,
        "trashed_at": item.trashed_at,
        "files": item.files,
        "path_taken": item.path_taken,
        "folder": str(folder.local),
        "local": str(local),
    }


# -- local paths --------------------------------------------------------------------------


def locate(folders: Sequence[FolderConfig], path: str) -> Located:
    """The sync folder holding the local ``path`` (which need not exist), or ``invalid``."""
    if not os.path.isabs(path):
        raise p.ControlError(p.INVALID, f"{path} is not an absolute path", key="path")
    target = normalise_local(path)
    found = _inside(folders, target, lambda f: f.local)
    if found is None:
        # The same place reached through a symbolic link on either side.
        real = target.resolve()
        found = _inside(folders, real, lambda f: f.local.resolve())
        target = real
    if found is None:
        raise p.ControlError(p.INVALID, f"{path} is not inside a synced folder", key="path")
    folder, rel = found
    remote = unicodedata.normalize("NFC", remote_path(folder.remote, rel))
    return Located(folder, target if rel == "" else folder.local / rel, rel, remote)


def _inside(
    folders: Sequence[FolderConfig], target: Path, root_of: Callable[[FolderConfig], Path]
) -> tuple[FolderConfig, str] | None:
    for folder in folders:
        root = root_of(folder)
        if target == root:
            return folder, ""
        if target.is_relative_to(root):
            return folder, target.relative_to(root).as_posix()
    return None


def owner_of(folders: Iterable[FolderConfig], server_path: str) -> tuple[FolderConfig, str] | None:
    """The sync folder whose remote path holds ``server_path`` (the deepest one), and the
    path inside it."""
    best: tuple[FolderConfig, str] | None = None
    for folder in folders:
        rel = rel_of(folder.remote, server_path)
        if rel is not None and (best is None or len(folder.remote) > len(best[0].remote)):
            best = (folder, rel)
    return best


def copy_name(name: str, created_at: float) -> str:
    """``report (version 2026-03-14 0930).pdf``: the name of an opened earlier version."""
    dot = name.rfind(".")
    stem, ext = (name, "") if dot <= 0 else (name[:dot], name[dot:])
    when = time.strftime("%Y-%m-%d %H%M", time.localtime(created_at))
    return f"{stem} (version {when}){ext}"


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


# -- the operations -----------------------------------------------------------------------


class UndoOps:
    """``versions.*``, ``trash.*`` and ``conflicts.resolve``, for the agent service."""

    def __init__(self, host: UndoHost) -> None:
        self.host = host

    def _engine(self) -> UndoEngine:
        engine = self.host.engine
        if engine is None:
            reason = self.host.not_running_reason or "not signed in"
            if reason == "not signed in":
                raise p.ControlError(p.UNAVAILABLE, f"the agent is not signed in: {SIGN_IN_HINT}")
            raise p.ControlError(p.UNAVAILABLE, f"the agent is not connected: {reason}")
        return engine

    def _locate(self, path: str) -> Located:
        return locate(self.host.config.folders, path)

    def _sync_now(self, folder: FolderConfig) -> None:
        engine = self.host.engine
        if engine is not None:
            with contextlib.suppress(KeyError):  # the folder was removed meanwhile
                engine.sync_now(folder.local)

    async def _file(self, client: DroplineClient, at: Located) -> Entry:
        """The server's entry for a file; ``not-found`` or ``invalid`` in words."""
        try:
            entry = await client.metadata(at.remote)
        except NotFoundError:
            raise p.ControlError(
                p.NOT_FOUND,
                f"{at.local} is not on the server (it may not have synced yet)",
                key="path",
            ) from None
        if entry.is_folder:
            raise p.ControlError(
                p.INVALID, f"{at.local} is a folder; versions are kept for files", key="path"
            )
        return entry

    async def op_versions_list(self, args: p.PathArgs) -> dict[str, Any]:
        at = self._locate(args.path)
        client = self._engine().client()
        async with server_calls():
            entry = await self._file(client, at)
            revisions = await client.revisions(entry.id)
        return {
            "file": {"path": str(at.local), "remote": entry.path, "id": entry.id},
            "revisions": [revision_json(r) for r in revisions],
        }

    async def op_versions_restore(self, args: p.VersionArgs) -> dict[str, Any]:
        at = self._locate(args.path)
        client = self._engine().client()
        async with server_calls():
            entry = await self._file(client, at)
            restored = await client.restore_revision(entry.id, args.rev)
        log.info("restored %s to revision %s (now %s)", entry.path, args.rev, restored.rev)
        self._sync_now(at.folder)
        return {"entry": entry_json(restored)}

    async def op_versions_open_copy(self, args: p.VersionArgs) -> dict[str, Any]:
        at = self._locate(args.path)
        client = self._engine().client()
        async with server_calls():
            entry = await self._file(client, at)
            revision = await client.revision(entry.id, args.rev)
            dest = self._copy_path(entry, revision)
            if not await asyncio.to_thread(_holds, dest, revision):
                await download_file(client, entry, dest, rev=revision)
        return {"copy": str(dest)}

    def _copy_path(self, entry: Entry, revision: Revision) -> Path:
        """Where an opened earlier version goes: the agent's cache, outside every sync
        folder, one directory per revision so two versions never share a name."""
        base = self.host.paths.cache / "versions"
        if locate_or_none(self.host.config.folders, base) is not None:
            base = Path(tempfile.gettempdir()) / f"dropline-{os.getuid()}-versions"
        _clear_old_copies(base)
        key = hashlib.sha256(f"{entry.id}\0{revision.rev}".encode()).hexdigest()[:16]
        where = base / key
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.utime(where)  # opened now: kept for another COPY_DAYS
        return where / copy_name(entry.name, revision.created_at)

    async def op_trash_list(self, args: p.TrashListArgs) -> dict[str, Any]:
        folders = list(self.host.config.folders)
        if args.folder is not None:
            one = self.host.config.folder(args.folder)
            if one is None:
                raise p.ControlError(
                    p.NOT_FOUND, f"{args.folder} is not a sync folder", key="folder"
                )
            folders = [one]
        client = self._engine().client()
        found: dict[str, TrashItem] = {}
        async with server_calls():
            for root in _outermost({f.remote for f in folders}):
                for item in await client.trash(path=root):
                    found[item.id] = item
        needle = (args.search or "").casefold()
        items = []
        for item in sorted(found.values(), key=lambda i: i.trashed_at, reverse=True):
            owner = owner_of(folders, item.path)
            if owner is None:
                continue
            folder, rel = owner
            local = folder.local / rel if rel else folder.local
            if needle and needle not in f"{item.path}\0{local}".casefold():
                continue
            items.append(trash_json(item, folder, local))
        return {"items": items}

    async def op_trash_restore(self, args: p.TrashRestoreArgs) -> dict[str, Any]:
        target: str | None = None
        if args.path is not None:
            at = self._locate(args.path)
            if not at.rel:
                raise p.ControlError(
                    p.INVALID,
                    f"{args.path} is a sync folder itself; give a path inside it",
                    key="path",
                )
            target = at.remote
        client = self._engine().client()
        async with server_calls():
            entry = await client.restore_from_trash(args.id, target)
        log.info("brought %s back from the trash", entry.path)
        owner = owner_of(self.host.config.folders, entry.path)
        if owner is not None:
            self._sync_now(owner[0])
        return {"entry": entry_json(entry)}

    async def op_conflicts_resolve(self, args: p.ConflictResolveArgs) -> dict[str, Any]:
        engine = self._engine()
        issues: list[Issue] = list(await _maybe_await(engine.issues()))
        issue = next((i for i in issues if i.id == args.id), None)
        if issue is None:
            raise p.ControlError(p.NOT_FOUND, f"there is no issue {args.id}", key="id")
        if issue.kind != "conflict" or len(issue.related_paths) < 2:
            raise p.ControlError(p.INVALID, f"issue {args.id} is not a conflict", key="id")
        folder = self.host.config.folder(issue.folder)
        if folder is None:
            raise p.ControlError(p.NOT_FOUND, f"{issue.folder} is no longer a sync folder")
        if args.keep != "both":
            await self._settle(engine, folder, issue, args.keep)
        await _maybe_await(engine.dismiss_issue(issue.id))
        self._sync_now(folder)
        return {}

    async def _settle(
        self, engine: UndoEngine, folder: FolderConfig, issue: Issue, keep: str
    ) -> None:
        """Keep mine (the copy replaces the file) or theirs (the copy is deleted)."""
        original = folder.local / issue.related_paths[0]
        copy = folder.local / issue.related_paths[1]
        if folder.mode is not FolderMode.TWO_WAY:
            raise p.ControlError(
                p.INVALID,
                f"in a {folder.mode} folder both files stay on the server; keep both, "
                "or remove the one you do not need",
            )
        if not copy.exists():
            if keep == "theirs":
                return  # gone already: what was asked
            raise p.ControlError(p.NOT_FOUND, f"the conflict copy {copy} is gone", key="path")
        if copy.is_dir() or original.is_dir():
            raise p.ControlError(
                p.INVALID,
                "this conflict is between a file and a folder; keep both, "
                "and remove the one you do not need",
            )
        if keep == "mine":
            if not original.exists():
                raise p.ControlError(
                    p.UNAVAILABLE,
                    f"the server's version of {original} has not arrived yet; "
                    "try again once the folder is in sync",
                )
            # The server keeps theirs as an earlier revision once this goes up.
            os.replace(copy, original)
            log.info("conflict on %s settled: kept the local copy", original)
            return
        await self._check_on_server(engine.client(), folder, issue.related_paths[1], copy)
        copy.unlink()
        log.info("conflict on %s settled: deleted the local copy %s", original, copy.name)

    async def _check_on_server(
        self, client: DroplineClient, folder: FolderConfig, rel: str, copy: Path
    ) -> None:
        """Deleting the copy can be undone only once the server holds these very bytes."""
        waiting = p.ControlError(
            p.UNAVAILABLE,
            f"the conflict copy {copy.name} has not reached the server yet, so deleting it "
            "could not be undone; try again in a moment",
        )
        async with server_calls():
            try:
                entry = await client.metadata(remote_path(folder.remote, rel))
            except NotFoundError:
                raise waiting from None
        if entry.sha256 != await asyncio.to_thread(sha256_file, copy):
            raise waiting


def locate_or_none(folders: Sequence[FolderConfig], path: Path) -> Located | None:
    try:
        return locate(folders, str(path))
    except p.ControlError:
        return None


def _outermost(roots: set[str]) -> list[str]:
    """The remote roots no other root holds (one trash listing covers what is under it)."""
    return sorted(r for r in roots if not any(o != r and rel_of(o, r) is not None for o in roots))


def _holds(dest: Path, revision: Revision) -> bool:
    """``dest`` is already that revision (opened before): no need to download it again."""
    try:
        if dest.stat().st_size != revision.size:
            return False
        return sha256_file(dest) == revision.sha256
    except OSError:
        return False


def _clear_old_copies(base: Path) -> None:
    cutoff = time.time() - COPY_DAYS * 86400
    with contextlib.suppress(OSError):
        for old in base.iterdir():
            with contextlib.suppress(OSError):
                if old.is_dir() and old.stat().st_mtime < cutoff:
                    shutil.rmtree(old)
