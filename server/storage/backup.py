"""Online backups of a data directory: the SQLite database through SQLite's backup API
(WAL contents included), then keys, blobs (with their checksums) and uploads in
progress, and a manifest with the version, time, counts and the SHA-256 of every file.
Restoring is in ``restore``."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dropline import __version__
from dropline.server.storage.blobs import SUMS_DIR, fsync_dir
from dropline.server.storage.migrations import check_known

MANIFEST = "manifest.json"
FORMAT = 1
DATABASE = "dropline.db"
# Keys the server can take from the environment instead of <data dir>/keys/: a backup
# cannot hold those, so the manifest and the operator are told.
ENV_KEYS = ("DROPLINE_MASTER_KEY", "DROPLINE_JWT_SIGNING_KEY", "DROPLINE_CSRF_SECRET")
_BLOB_NAME = re.compile(r"^[0-9a-f]{32}$")
_COPY_BUFFER = 4 * 1024 * 1024
PROGRESS_SECONDS = 2.0

Say = Callable[[str], None]


class BackupError(Exception):
    """A backup or restore that cannot go on; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class Manifest:
    """What a backup holds. ``files`` maps each relative path to ``[size, sha256]``."""

    version: str
    created_at: str
    migrations: list[str]
    counts: dict[str, int]
    database_sha256: str
    files: dict[str, list[int | str]]
    env_keys: list[str] = field(default_factory=list)
    format: int = FORMAT

    def write(self, dest: Path) -> None:
        temp = dest / (MANIFEST + ".tmp")
        with temp.open("w", encoding="utf-8") as fh:
            json.dump(asdict(self), fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        # Written last and renamed into place: a backup with a manifest is a whole one.
        os.replace(temp, dest / MANIFEST)
        fsync_dir(dest)

    @classmethod
    def read(cls, src: Path) -> Manifest:
        path = src / MANIFEST
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise BackupError(f"{src} is not a Dropline backup (no {MANIFEST})") from None
        except (OSError, ValueError) as exc:
            raise BackupError(f"{path} cannot be read: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise BackupError(f"{path} is not a backup this version can read")
        try:
            manifest = cls(**data)
        except TypeError as exc:
            raise BackupError(f"{path} is damaged ({exc})") from None
        for name, entry in manifest.files.items():
            if not (
                isinstance(entry, list)
                and len(entry) == 2
                and isinstance(entry[0], int)
                and isinstance(entry[1], str)
            ):
                raise BackupError(f"{path} is damaged (its entry for {name})")
        if manifest.files.get(DATABASE, [0, ""])[1] != manifest.database_sha256:
            raise BackupError(f"{path} is damaged (it does not list the database)")
        return manifest


class Progress:
    """Progress lines for a long copy, at most one every ``PROGRESS_SECONDS``."""

    def __init__(self, say: Say, verb: str, files: int, size: int) -> None:
        self.say, self.verb, self.files, self.size = say, verb, files, size
        self.done_files = 0
        self.done_bytes = 0
        self._next = time.monotonic() + PROGRESS_SECONDS

    def add(self, size: int) -> None:
        self.done_files += 1
        self.done_bytes += size
        if time.monotonic() >= self._next:
            self._next = time.monotonic() + PROGRESS_SECONDS
            mib = 1024 * 1024
            self.say(
                f"{self.verb} {self.done_files} of {self.files} files, "
                f"{self.done_bytes / mib:.0f} of {self.size / mib:.0f} MiB"
            )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as reader:
        while chunk := reader.read(_COPY_BUFFER):
            digest.update(chunk)
    return digest.hexdigest()


def copy_hashed(
    src: Path, dst: Path, limit: int | None = None, mode: int = 0o600
) -> list[int | str]:
    """Copy ``src`` (its first ``limit`` bytes) to a new ``dst``, fsynced: ``[size, sha256]``."""
    digest = hashlib.sha256()
    size = 0
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with src.open("rb") as reader, os.fdopen(fd, "wb") as writer:
        while limit is None or size < limit:
            want = _COPY_BUFFER if limit is None else min(_COPY_BUFFER, limit - size)
            chunk = reader.read(want)
            if not chunk:
                break
            digest.update(chunk)
            writer.write(chunk)
            size += len(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    return [size, digest.hexdigest()]


def _blobs(root: Path) -> Iterator[Path]:
    """Published blobs, ``<root>/<id[:2]>/<id>``; a copy still being written has another name."""
    if not root.is_dir():
        return
    for shard in sorted(root.iterdir()):
        if shard.is_dir() and len(shard.name) == 2:
            for blob in sorted(shard.iterdir()):
                if _BLOB_NAME.match(blob.name) and blob.name.startswith(shard.name):
                    yield blob


def _prepare(dest: Path) -> None:
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise BackupError(f"{dest} already exists and is not an empty directory")
    dest.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(dest, 0o700)  # it holds the keys


def _snapshot(database: Path, target: Path) -> None:
    """One consistent copy of the live database, committed WAL frames included."""
    os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))  # it holds secrets
    try:
        source = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30)
        copy = sqlite3.connect(target)
        try:
            # All pages in one step: one read transaction, so the copy is one moment of the
            # database; in steps, every commit the server makes meanwhile restarts the copy.
            source.backup(copy, pages=-1)
            # One self-contained file: the copy leaves WAL mode and keeps no -wal beside it.
            copy.execute("PRAGMA journal_mode=DELETE")
        finally:
            copy.close()
            source.close()
    except sqlite3.Error as exc:
        # Reading a WAL database needs write access to the data directory (its -shm file).
        raise BackupError(f"cannot copy the database {database}: {exc}") from None


def _read(target: Path, sql: str, *params: str) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(target)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def _has_table(database: Path, name: str) -> bool:
    return bool(_read(database, "SELECT 1 FROM sqlite_master WHERE name = ?", name))


def _copy_uploads(
    data_dir: Path, dest: Path, database: Path, files: dict[str, list[int | str]]
) -> int:
    """Uploads in progress at the snapshot: each staged file cut to the recorded offset
    (bytes past it were never acknowledged; the server rebuilds its hash from these).
    A session whose staged bytes are gone by now (finished or expired since) is dropped
    from the copy, and its client starts again."""
    (dest / "uploads").mkdir(mode=0o700)
    if not _has_table(database, "uploads"):
        return 0  # an older schema, from before uploads
    rows = _read(database, 'SELECT id, "offset" FROM uploads WHERE entry_id IS NULL')
    gone = []
    for upload_id, offset in rows:
        name = f"uploads/{upload_id}.part"
        staged = data_dir / name
        try:
            if staged.stat().st_size < offset:
                raise FileNotFoundError(staged)
            files[name] = copy_hashed(staged, dest / name, limit=offset)
        except FileNotFoundError:
            gone.append(upload_id)
    if gone:
        conn = sqlite3.connect(database)
        try:
            with conn:
                conn.executemany("DELETE FROM uploads WHERE id = ?", [(i,) for i in gone])
        finally:
            conn.close()
    return len(rows) - len(gone)


def _copy_keys(data_dir: Path, dest: Path, files: dict[str, list[int | str]]) -> int:
    keys = data_dir / "keys"
    (dest / "keys").mkdir(mode=0o700)
    count = 0
    for path in sorted(keys.iterdir()) if keys.is_dir() else []:
        if path.is_file():
            try:
                files[f"keys/{path.name}"] = copy_hashed(path, dest / "keys" / path.name)
            except FileNotFoundError:
                continue  # a signing key retired this very moment
            count += 1
    return count


def _copy_blobs(data_dir: Path, dest: Path, files: dict[str, list[int | str]], say: Say) -> int:
    blobs: list[Path] = []
    sizes: list[int] = []
    for blob in _blobs(data_dir / "blobs"):
        try:
            sizes.append(blob.stat().st_size)
        except FileNotFoundError:
            continue  # purged (trash or retention) this very moment
        blobs.append(blob)
    progress = Progress(say, "blobs: copied", len(blobs), sum(sizes))
    (dest / "blobs").mkdir(mode=0o700)
    copied = 0
    for blob in blobs:
        shard = dest / "blobs" / blob.parent.name
        shard.mkdir(mode=0o700, exist_ok=True)
        name = f"blobs/{blob.parent.name}/{blob.name}"
        try:
            files[name] = copy_hashed(blob, dest / name)
        except FileNotFoundError:
            # Purged since the listing; if the snapshot still names it, the check
            # below says so.
            (dest / name).unlink(missing_ok=True)
            continue
        copied += 1
        progress.add(int(files[name][0]))
        _copy_sums(data_dir, dest, blob, files)
    return copied


def _copy_sums(data_dir: Path, dest: Path, blob: Path, files: dict[str, list[int | str]]) -> None:
    """The blob's chunk sums (``storage.integrity``), so restored blobs are checked on read
    as before; a blob stored before sums existed has none."""
    name = f"{SUMS_DIR}/{blob.parent.name}/{blob.name}"
    if not (data_dir / name).is_file():
        return
    (dest / name).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        files[name] = copy_hashed(data_dir / name, dest / name)
    except FileNotFoundError:
        (dest / name).unlink(missing_ok=True)  # purged with its blob since


def _check_blobs_present(database: Path, files: dict[str, list[int | str]]) -> None:
    """Every blob the snapshot names must be in the backup (a blob is deleted only after
    the rows naming it, so one missing here was purged while the backup ran, or is
    missing from the data directory itself)."""
    if not _has_table(database, "revisions"):
        return
    sql = (
        "SELECT blob_id FROM entries WHERE blob_id IS NOT NULL "
        "UNION SELECT blob_id FROM revisions WHERE blob_id IS NOT NULL"
    )
    for (blob_id,) in _read(database, sql):
        name = f"blobs/{str(blob_id)[:2]}/{blob_id}"
        if name not in files:
            raise BackupError(
                f"the database names blob {blob_id}, which is not in the data directory "
                "(if the trash was purged while the backup ran, run it again)"
            )


def take_backup(data_dir: Path, dest: Path, say: Say) -> Manifest:
    """Back ``data_dir`` up into ``dest`` (new or empty) while a server may be running."""
    database = data_dir / DATABASE
    if not database.is_file():
        raise BackupError(f"no Dropline database in {data_dir}")
    _prepare(dest)
    try:
        return _take(data_dir, dest, say)
    except BaseException:
        shutil.rmtree(dest, ignore_errors=True)
        raise


def _take(data_dir: Path, dest: Path, say: Say) -> Manifest:
    started = datetime.now(UTC)
    copy = dest / DATABASE
    _snapshot(data_dir / DATABASE, copy)
    migrations = [str(name) for (name,) in _read(copy, "SELECT name FROM schema_migrations")]
    check_known(migrations)
    say(f"database copied ({copy.stat().st_size} bytes, {len(migrations)} migrations)")
    files: dict[str, list[int | str]] = {}
    counts = {"keys": _copy_keys(data_dir, dest, files)}
    # After the snapshot: every blob it names exists already; later ones are harmless.
    counts["blobs"] = _copy_blobs(data_dir, dest, files, say)
    counts["uploads"] = _copy_uploads(data_dir, dest, copy, files)
    _check_blobs_present(copy, files)
    if _read(copy, "PRAGMA quick_check") != [("ok",)]:
        raise BackupError("the database copy failed SQLite's integrity check")
    with copy.open("rb+") as fh:
        os.fsync(fh.fileno())
    files[DATABASE] = [copy.stat().st_size, sha256_file(copy)]
    for directory in (dest, dest / "keys", dest / "blobs", dest / "uploads"):
        fsync_dir(directory)
    manifest = Manifest(
        version=__version__,
        created_at=started.isoformat(timespec="seconds"),
        migrations=migrations,
        counts=counts,
        database_sha256=str(files[DATABASE][1]),
        files=files,
        env_keys=[name for name in ENV_KEYS if os.environ.get(name)],
    )
    manifest.write(dest)
    return manifest


__all__ = [
    "DATABASE",
    "MANIFEST",
    "BackupError",
    "Manifest",
    "Progress",
    "copy_hashed",
    "sha256_file",
    "take_backup",
]
