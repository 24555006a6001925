"""Restoring a backup: the manifest checked first, every file copied and verified into a
staging folder, and only then swapped in, with the data directory locked throughout."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from dropline.server.storage.backup import (
    DATABASE,
    BackupError,
    Manifest,
    Progress,
    Say,
    copy_hashed,
    sha256_file,
)
from dropline.server.storage.blobs import SUMS_DIR, fsync_dir
from dropline.server.storage.lock import LOCK_NAME, DataDirLock
from dropline.server.storage.migrations import check_known

STAGING = ".restore"
# What a data directory holds for the server; --force replaces these and nothing else.
SERVER_STATE = (
    DATABASE,
    DATABASE + "-wal",
    DATABASE + "-shm",
    "blobs",
    SUMS_DIR,
    "keys",
    "uploads",
    "transfers",
)


def verify_manifest(src: Path) -> Manifest:
    """The manifest, after checking it names a known schema, that every file it lists is
    there at its size, and that the database matches its SHA-256 (blobs are checked as
    they are copied)."""
    manifest = Manifest.read(src)
    check_known(manifest.migrations)
    for name, (size, _sha256) in manifest.files.items():
        path = src / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BackupError(f"the manifest of {src} names a path outside it: {name}")
        try:
            actual = path.stat().st_size
        except FileNotFoundError:
            raise BackupError(f"{path} is missing from the backup") from None
        if actual != size:
            raise BackupError(f"{path} is {actual} bytes; the manifest says {size}")
    if sha256_file(src / DATABASE) != manifest.database_sha256:
        raise BackupError(f"{src / DATABASE} does not match the manifest's SHA-256")
    return manifest


def _stage(src: Path, staging: Path, manifest: Manifest, say: Say) -> None:
    sizes = [int(size) for size, _sha in manifest.files.values()]
    progress = Progress(say, "restore: copied", len(sizes), sum(sizes))
    staging.mkdir(mode=0o700)
    for directory in ("keys", "blobs", "uploads"):
        (staging / directory).mkdir(mode=0o700)
    for name, (_size, sha256) in sorted(manifest.files.items()):
        target = staging / name
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        size, actual = copy_hashed(src / name, target)
        if actual != sha256:
            raise BackupError(f"{src / name} does not match the manifest's SHA-256")
        progress.add(int(size))
    for folder in sorted({(staging / n).parent for n in manifest.files}, reverse=True):
        fsync_dir(folder)


def _owner_like(root: Path, data_dir: Path) -> None:
    """Run as root, the restored files take the data directory's owner (the service user),
    so the server can still read its own keys."""
    if os.geteuid() != 0:
        return
    st = data_dir.stat()
    for dirpath, dirnames, filenames in os.walk(root):
        os.chown(dirpath, st.st_uid, st.st_gid)
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), st.st_uid, st.st_gid)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def restore_backup(src: Path, data_dir: Path, *, force: bool, say: Say) -> Manifest:
    """Restore ``src`` into ``data_dir``: refused while a server holds it, and refused if it
    holds anything unless ``force`` (which replaces the server's state, nothing else)."""
    manifest = verify_manifest(src)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    staging = data_dir / STAGING
    with DataDirLock(data_dir, "restore"):
        # A restore that stopped half-way left only its staging folder: never the live state.
        if staging.exists():
            shutil.rmtree(staging)
        present = sorted(p.name for p in data_dir.iterdir() if p.name != LOCK_NAME)
        if present and not force:
            raise BackupError(
                f"{data_dir} is not empty ({', '.join(present[:3])}"
                f"{', ...' if len(present) > 3 else ''}); --force replaces its contents"
            )
        try:
            _stage(src, staging, manifest, say)
            _owner_like(staging, data_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        # Everything is verified: only now is the old state removed and the new moved in.
        for name in SERVER_STATE:
            _remove(data_dir / name)
        for entry in sorted(staging.iterdir()):
            os.replace(entry, data_dir / entry.name)
        staging.rmdir()
        fsync_dir(data_dir)
    return manifest


__all__ = ["restore_backup", "verify_manifest"]
