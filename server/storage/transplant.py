"""Moving a single node's backup into a shared database and blob store (``dropline-server
import``): the backup verified as ``restore`` verifies it, its database brought to this
release's schema in a scratch copy, every blob copied as it is stored (sealed blobs stay
sealed) with its chunk sums, then every row copied in one transaction of the target and
PostgreSQL's sequences moved past the largest ids.

A failed import leaves the target without a row of the backup: the rows go in one
transaction, and the blobs stored before it are deleted again (any the store would not
delete then are unnamed leftovers, which the sweeper removes after its grace period).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from sqlalchemy import Connection, Table, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from dropline.server.storage import schema
from dropline.server.storage.backup import (
    DATABASE,
    PROGRESS_SECONDS,
    BackupError,
    Manifest,
    Progress,
    Say,
    copy_hashed,
)
from dropline.server.storage.blobs import SUMS_DIR, BlobStore, check_blob_id
from dropline.server.storage.db import Database
from dropline.server.storage.encryption import (
    ENV_MASTER_KEY_FILE,
    TenantKeys,
    record_master_check,
)
from dropline.server.storage.migrations import migrate, pending
from dropline.server.storage.restore import verify_manifest

# Rows per INSERT: few round trips, bounded memory.
BATCH = 1000
MASTER_KEY_FILE = "keys/master.key"
# Tables a node writes as soon as it starts, before any tenant exists: a target holding
# rows in these still counts as empty. Its signing keys stay (beside the backup's); the
# master key's check value is compared with the key given; the others are replaced.
NODE_STATE = {"signing_keys", "key_checks", "webhook_cursor", "rate_buckets"}
REPLACED = {"webhook_cursor", "rate_buckets"}
NOT_COPIED = {"key_checks"}  # written for the target's key by _record_master

# Turns the backup's key files into ``signing_keys`` rows (``identity.key_import``).
KeyRows = Callable[[Path, bytes | None], list[dict[str, Any]]]


class TransplantError(BackupError):
    """An import that cannot go on; one line for the operator. Nothing was imported."""


@dataclass(frozen=True, slots=True)
class Imported:
    """What an import moved: rows per table, blobs, signing keys; and the uploads in
    progress it left behind (their clients start them again)."""

    manifest: Manifest
    rows: dict[str, int]
    blobs: int
    signing_keys: int
    uploads_left: int


def import_backup(
    src: Path, target: Database, store: BlobStore, key_rows: KeyRows, say: Say
) -> Imported:
    """Import the backup ``src`` into ``target`` (an empty database) and ``store`` (the
    target's raw blob store: blobs go in as stored, never sealed or unsealed again)."""
    manifest = verify_manifest(src)
    _check_small_files(src, manifest)
    with tempfile.TemporaryDirectory(prefix="dropline-import-") as work_dir:
        work = Path(work_dir)
        scratch = work / DATABASE
        shutil.copyfile(src / DATABASE, scratch)
        source = Database(f"sqlite:///{scratch}")
        try:
            todo = migrate(source)
            if todo:
                say(
                    f"the backup's database brought up to date in a scratch copy "
                    f"({len(todo)} migrations)"
                )
            uploads_left = _drop_uploads_in_progress(source)
            # The target's key, from DROPLINE_MASTER_KEY_FILE or DROPLINE_MASTER_KEY: the
            # scratch folder has no keys/ to fall back on.
            master = _check_master(src, manifest, TenantKeys(source, work))
            keys = key_rows(src / "keys", master)
            pending(target)  # a newer target schema is refused before anything is written
            with target.read() as conn:
                _refuse_unless_empty(conn)
            applied = migrate(target)
            if applied:
                say(f"target database migrated ({len(applied)} migrations)")
            stored: list[str] = []
            try:
                _copy_blobs(src, manifest, store, work, stored, say)
                rows = _copy_rows(source, target, master, keys, say)
            except BaseException:
                _remove_blobs(store, stored, say)
                raise
        finally:
            source.dispose()
    return Imported(manifest, rows, len(stored), len(keys), uploads_left)


def _check_small_files(src: Path, manifest: Manifest) -> None:
    """The keys are read from the backup itself: check their SHA-256 first (the database
    was checked by ``verify_manifest``, blobs are checked as they are copied)."""
    for name in manifest.files:
        if name.startswith("keys/"):
            _check_sha256(
                src, manifest, name, hashlib.sha256((src / name).read_bytes()).hexdigest()
            )


def _drop_uploads_in_progress(source: Database) -> int:
    """Uploads in progress are staged on the old node's disk; the nodes stage theirs in
    the object store, part by part, so these are left behind (a client asking for one is
    told it does not exist and starts it again)."""
    uploads = schema.uploads
    with source.write() as conn:
        result = conn.execute(uploads.delete().where(uploads.c.entry_id.is_(None)))
    return int(result.rowcount or 0)


def _check_master(src: Path, manifest: Manifest, keys: TenantKeys) -> bytes | None:
    """The master key the target was given, after checking it opens the backup's data:
    equal to the backup's ``keys/master.key`` (if it has one) and unwrapping every
    tenant's data key. Refused when the backup has sealed data and no key was given."""
    given = keys.master
    with keys.db.read() as conn:
        tenants = [row.tenant_id for row in conn.execute(select(schema.tenant_keys.c.tenant_id))]
    own = src / MASTER_KEY_FILE if MASTER_KEY_FILE in manifest.files else None
    if given is None:
        if own is None and not tenants:
            return None
        hint = f"the backup's own is {own}" if own else "the backup names none: use the old node's"
        raise TransplantError(
            "the backup holds data encrypted at rest: give this command, as every node, the "
            f"master key with {ENV_MASTER_KEY_FILE} ({hint}; keep a copy at mode 0600)"
        )
    wrong = TransplantError(
        "the master key given is not the one the backup's data was sealed with: point "
        f"{ENV_MASTER_KEY_FILE} at the backup's keys/master.key (or a copy of it)"
    )
    if own is not None:
        try:
            stored = base64.b64decode(own.read_bytes().strip(), validate=True)
        except ValueError:
            stored = b""
        if not hmac.compare_digest(stored, given):
            raise wrong
    for tenant_id in tenants:
        try:
            keys.key(tenant_id)
        except InvalidTag:
            raise wrong from None
    return given


def _refuse_unless_empty(conn: Connection) -> None:
    """Refuse a target holding anything but what a node writes when it merely starts."""
    if not conn.dialect.has_table(conn, schema.tenants.name):
        return  # not even migrated: empty
    names = [row.name for row in conn.execute(select(schema.tenants.c.name).limit(4))]
    if names:
        listed = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        raise TransplantError(
            f"the target database already holds tenants ({listed}): import goes into an "
            "empty database only; nothing was changed"
        )
    for table in schema.metadata.sorted_tables:
        if table.name in NODE_STATE or not conn.dialect.has_table(conn, table.name):
            continue
        if conn.execute(select(1).select_from(table).limit(1)).first() is not None:
            raise TransplantError(
                f"the target database is not empty (its table {table.name} has rows): "
                "import goes into an empty database only; nothing was changed"
            )


def _blob_files(manifest: Manifest) -> Iterator[tuple[str, str, str | None]]:
    """(blob id, its file, its sums file or None) for every blob in the backup."""
    for name in sorted(manifest.files):
        if name.startswith("blobs/"):
            blob_id = name.rsplit("/", 1)[1]
            check_blob_id(blob_id)
            sums = f"{SUMS_DIR}/{blob_id[:2]}/{blob_id}"
            yield blob_id, name, sums if sums in manifest.files else None


def _copy_blobs(
    src: Path, manifest: Manifest, store: BlobStore, work: Path, stored: list[str], say: Say
) -> None:
    """Every blob as it is stored (sealed for tenants with encryption at rest, which the
    target's encrypting store opens with the same keys), with its sums; each checked
    against the manifest on the way. ``stored`` gets each id once it is in the store."""
    blobs = list(_blob_files(manifest))
    total = sum(int(manifest.files[name][0]) for _id, name, _sums in blobs)
    progress = Progress(say, "blobs: copied", len(blobs), total)
    for blob_id, name, sums_name in blobs:
        sums = None
        if sums_name is not None:
            sums = (src / sums_name).read_bytes()
            _check_sha256(src, manifest, sums_name, hashlib.sha256(sums).hexdigest())
        staged = work / blob_id
        size, sha256 = copy_hashed(src / name, staged)
        try:
            _check_sha256(src, manifest, name, str(sha256))
            store.put(blob_id, staged, sums)
        finally:
            staged.unlink(missing_ok=True)  # the store took it, or it is not wanted
        stored.append(blob_id)
        progress.add(int(size))
    say(f"blobs: {len(stored)} copied to the target store")


def _check_sha256(src: Path, manifest: Manifest, name: str, sha256: str) -> None:
    if sha256 != manifest.files[name][1]:
        raise TransplantError(f"{src / name} does not match the manifest's SHA-256")


def _remove_blobs(store: BlobStore, stored: list[str], say: Say) -> None:
    left = 0
    for blob_id in stored:
        try:
            store.delete(blob_id)
        except OSError:
            left += 1
    if left:
        say(
            f"{left} blobs copied before the failure are left in the store; "
            "the sweeper removes them"
        )


def _copy_rows(
    source: Database,
    target: Database,
    master: bytes | None,
    keys: list[dict[str, Any]],
    say: Say,
) -> dict[str, int]:
    """Every table's rows, parents before children, in one transaction of the target.
    ``schema.metadata`` holds the server's tables only: Alembic's ``alembic_version`` and
    the old ``schema_migrations`` are the target's own, written by its migration."""
    counts: dict[str, int] = {}
    next_note = time.monotonic() + PROGRESS_SECONDS
    try:
        with source.read() as src, target.write() as dst:
            _refuse_unless_empty(dst)  # again, under the writer lock every node takes
            _record_master(dst, master)
            for table in schema.metadata.sorted_tables:
                if table.name in NOT_COPIED:
                    continue
                if table.name in REPLACED:
                    dst.execute(table.delete())
                counts[table.name] = 0
                for batch in _batches(src, table):
                    dst.execute(table.insert(), batch)
                    counts[table.name] += len(batch)
                    if time.monotonic() >= next_note:
                        next_note = time.monotonic() + PROGRESS_SECONDS
                        say(f"rows: {sum(counts.values())} copied so far ({table.name})")
            known = {row.kid for row in dst.execute(select(schema.signing_keys.c.kid))}
            new_keys = [row for row in keys if row["kid"] not in known]
            if new_keys:
                dst.execute(schema.signing_keys.insert(), new_keys)
            _move_sequences(src, dst)
    except SQLAlchemyError as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise TransplantError(f"the rows could not be copied, nothing was: {reason}") from exc
    say(f"rows: {sum(counts.values())} copied in {sum(1 for n in counts.values() if n)} tables")
    return counts


def _batches(src: Connection, table: Table) -> Iterator[list[dict[str, Any]]]:
    query = select(table).order_by(*table.primary_key.columns)
    result = src.execution_options(yield_per=BATCH).execute(query)
    for part in result.mappings().partitions(BATCH):
        yield [dict(row) for row in part]


def _record_master(dst: Connection, master: bytes | None) -> None:
    """The master key's check value, as the first node given a key records it; a target
    recording another key is refused."""
    if master is not None and not record_master_check(dst, master):
        raise TransplantError(
            "the target database records another master key than the one given: "
            "give this command the key its nodes were given"
        )


def _sequence_floors(src: Connection) -> Mapping[str, int]:
    """SQLite's AUTOINCREMENT high-water marks: numbers handed out and since deleted
    (change-feed rows pruned by retention) must not be handed out again."""
    if not src.dialect.has_table(src, "sqlite_sequence"):
        return {}
    return {
        str(name): int(seq)
        for name, seq in src.execute(text("SELECT name, seq FROM sqlite_sequence"))
    }


def _move_sequences(src: Connection, dst: Connection) -> None:
    """Rows came with their ids: each PostgreSQL sequence behind an integer key is set
    past the largest, so the next row a node writes gets a new one (the change feed's
    next ``seq`` is above every cursor a client holds)."""
    if dst.dialect.name != "postgresql":
        return
    floors = _sequence_floors(src)
    for table in schema.metadata.sorted_tables:
        key = list(table.primary_key.columns)
        if len(key) != 1:
            continue
        sequence = dst.execute(
            text("SELECT pg_get_serial_sequence(:table, :column)"),
            {"table": table.name, "column": key[0].name},
        ).scalar()
        if sequence is None:
            continue
        top = max(
            int(dst.execute(select(func.max(key[0]))).scalar() or 0), floors.get(table.name, 0)
        )
        if top:
            dst.execute(text("SELECT setval(:sequence, :top)"), {"sequence": sequence, "top": top})


__all__ = ["Imported", "TransplantError", "import_backup"]
