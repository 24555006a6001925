"""Encryption at rest: blobs sealed with AES-256-GCM under a per-tenant data key.

:class:`EncryptedBlobStore` wraps any ``BlobStore``. A tenant with encryption on
gets a random data key, stored only wrapped (AES-GCM) by the master key, which
comes from ``DROPLINE_MASTER_KEY_FILE`` (a 0600 file holding base64 of 32 bytes: the
preferred way), ``DROPLINE_MASTER_KEY`` (that base64 itself) or ``<data dir>/keys/master.key``
(0600, created by the first ``encryption enable``). With a shared PostgreSQL database
the key is never created: every node is given the same one, checked against a value
kept in the database (:func:`check_shared_master_key`).

A blob is a header and 1 MiB chunks, each sealed with its index and a last-chunk
flag in the nonce and associated data, so chunks cannot be reordered, swapped between
blobs or cut off unnoticed, and a Range read decrypts only the chunks it touches.
Work with no tenant in sight (background copies) is sealed under the master key
itself: nothing is ever written in plain text once a master key exists, except for
tenants that keep encryption off.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, cast

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Connection, select

from dropline.server.storage import schema
from dropline.server.storage.blobs import BlobStore
from dropline.server.storage.damage import Report, log_damage, reporting
from dropline.server.storage.db import Database
from dropline.server.storage.integrity import BlobDamaged

log = logging.getLogger(__name__)

MAGIC = b"DLBLOB1\x00"
CHUNK = 1024 * 1024
TAG = 16
ENV_MASTER_KEY = "DROPLINE_MASTER_KEY"
ENV_MASTER_KEY_FILE = "DROPLINE_MASTER_KEY_FILE"
# HMAC'd under the master key into ``key_checks``: tells a wrong key from the right one
# without storing anything that helps find it.
CHECK_CONSTANT = b"dropline master key check v1"
MASTER_REF = "master"


class EncryptionError(Exception):
    """Missing master key, or a blob that fails authentication (tampered or truncated)."""


class SealedBlobDamaged(BlobDamaged, EncryptionError):
    """A sealed chunk that fails authentication: answered like any damaged blob."""


def _master_path(data_dir: Path) -> Path:
    return data_dir / "keys" / "master.key"


def _decode_key(text: bytes | str, where: str) -> bytes:
    try:
        key = base64.b64decode(text, validate=True)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise EncryptionError(f"{where} must hold base64 of 32 bytes")
    return key


def _read_key_file(path: Path) -> bytes:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise EncryptionError(f"{ENV_MASTER_KEY_FILE}: no such file {path}") from None
    if mode & 0o077:
        raise EncryptionError(
            f"{path} is readable by others (mode {mode & 0o777:o}): chmod 600 it first"
        )
    return _decode_key(path.read_bytes().strip(), str(path))


def load_master_key(data_dir: Path, create: bool = False) -> bytes | None:
    """The master key from the settings or the data dir; ``create``: make the data
    dir's file when none is given (single node only: see :meth:`TenantKeys.enable`)."""
    key_file = os.environ.get(ENV_MASTER_KEY_FILE)
    env = os.environ.get(ENV_MASTER_KEY)
    if key_file and env:
        raise EncryptionError(f"set {ENV_MASTER_KEY_FILE} or {ENV_MASTER_KEY}, not both")
    if key_file:
        return _read_key_file(Path(key_file))
    if env:
        return _decode_key(env, ENV_MASTER_KEY)
    path = _master_path(data_dir)
    if path.exists():
        return _decode_key(path.read_bytes().strip(), str(path))
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    key = AESGCM.generate_key(bit_length=256)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(base64.b64encode(key))
    log.info("created the master key file %s", path)
    return key


def master_key_check(key: bytes) -> str:
    return hmac.new(key, CHECK_CONSTANT, hashlib.sha256).hexdigest()


def check_shared_master_key(db: Database, master: bytes | None) -> None:
    """On a database shared by several nodes, refuse a master key other than the one
    the data was sealed with, and refuse to go without one once encryption is in use.

    The first node given a key records its check value; the others compare with it.
    """
    table = schema.key_checks
    with db.read() as conn:
        row = conn.execute(select(table.c.check_value).where(table.c.name == MASTER_REF)).first()
        encrypted = conn.execute(select(schema.tenant_keys.c.tenant_id).limit(1)).first()
    if master is None:
        if row is not None or encrypted is not None:
            raise EncryptionError(
                "data in this shared database is encrypted at rest but this node has no "
                f"master key: give every node the same one ({ENV_MASTER_KEY_FILE} or "
                f"{ENV_MASTER_KEY})"
            )
        return
    if row is None:
        # Under the writer lock: of two nodes starting at once, one records its key
        # and the other compares with it.
        with db.write() as conn:
            matches = record_master_check(conn, master)
    else:
        matches = hmac.compare_digest(row.check_value, master_key_check(master))
    if not matches:
        raise EncryptionError(
            "this node's master key is not the one this shared database's data was sealed "
            f"with: give every node the same key ({ENV_MASTER_KEY_FILE} or {ENV_MASTER_KEY})"
        )


def record_master_check(conn: Connection, master: bytes) -> bool:
    """Record the check value of ``master`` in the caller's transaction unless one is
    recorded already; False when the recorded one is another key's."""
    table = schema.key_checks
    row = conn.execute(select(table.c.check_value).where(table.c.name == MASTER_REF)).first()
    if row is not None:
        return hmac.compare_digest(row.check_value, master_key_check(master))
    conn.execute(
        table.insert().values(
            name=MASTER_REF, check_value=master_key_check(master), created_at=time.time()
        )
    )
    return True


class TenantKeys:
    """Per-tenant data keys, unwrapped on first use and kept in memory."""

    def __init__(self, db: Database, data_dir: Path) -> None:
        self.db = db
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._cache: dict[str, bytes | None] = {}
        self._master = load_master_key(data_dir)
        if db.is_postgres:
            check_shared_master_key(db, self._master)

    @property
    def master(self) -> bytes | None:
        return self._master

    def enable(self, tenant_id: str) -> bool:
        """Give the tenant a data key (creating the master key file if needed).

        Returns False when it already had one. Existing blobs stay readable as they are;
        new ones are sealed.
        """
        if self._master is None and self.db.is_postgres:
            # A key made here would be this node's alone: the others could not read.
            raise EncryptionError(
                "no master key: with a shared database give every node the same one "
                f"({ENV_MASTER_KEY_FILE} or {ENV_MASTER_KEY}) before turning encryption on"
            )
        if self._master is None:
            self._master = load_master_key(self.data_dir, create=True)
        assert self._master is not None
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(12)
        wrapped = nonce + AESGCM(self._master).encrypt(nonce, data_key, tenant_id.encode())
        with self.db.write() as conn:
            exists = conn.execute(
                select(schema.tenant_keys.c.tenant_id).where(
                    schema.tenant_keys.c.tenant_id == tenant_id
                )
            ).first()
            if exists:
                return False
            conn.execute(
                schema.tenant_keys.insert().values(
                    tenant_id=tenant_id,
                    wrapped_key=base64.b64encode(wrapped).decode(),
                    created_at=time.time(),
                )
            )
        with self._lock:
            self._cache.pop(tenant_id, None)
        return True

    def key(self, ref: str) -> bytes | None:
        """The data key for a tenant id (None: the tenant keeps encryption off)."""
        if self._master is None:
            # The CLI may have created the master key since this process started.
            self._master = load_master_key(self.data_dir)
        if ref == MASTER_REF:
            return self._master
        with self._lock:
            if ref in self._cache:
                return self._cache[ref]
        with self.db.read() as conn:
            row = conn.execute(
                select(schema.tenant_keys.c.wrapped_key).where(
                    schema.tenant_keys.c.tenant_id == ref
                )
            ).first()
        key: bytes | None = None
        if row is not None:
            if self._master is None:
                raise EncryptionError(
                    f"tenant data is encrypted but no master key is set ({ENV_MASTER_KEY_FILE}, "
                    f"{ENV_MASTER_KEY} or {_master_path(self.data_dir)})"
                )
            wrapped = base64.b64decode(row.wrapped_key)
            key = AESGCM(self._master).decrypt(wrapped[:12], wrapped[12:], ref.encode())
        if key is not None:
            # Only keys are cached: a tenant that turns encryption on (from the CLI, in
            # another process) is sealed from its next upload on.
            with self._lock:
                self._cache[ref] = key
        return key


def _header(ref: str, prefix: bytes) -> bytes:
    raw = ref.encode()
    return MAGIC + bytes([len(raw)]) + raw + struct.pack(">I", CHUNK) + prefix


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">I", index | (0x80000000 if last else 0))


def _aad(header: bytes, index: int, last: bool) -> bytes:
    return header + struct.pack(">I?", index, last)


def seal_file(plain: Path, sealed: Path, key: bytes, ref: str) -> None:
    """Write ``plain`` to ``sealed`` encrypted, fsynced (at least one chunk, even if empty)."""
    aead = AESGCM(key)
    prefix = os.urandom(8)
    header = _header(ref, prefix)
    size = plain.stat().st_size
    chunks = max(1, -(-size // CHUNK))
    with plain.open("rb") as src, sealed.open("wb") as dst:
        dst.write(header)
        for index in range(chunks):
            last = index == chunks - 1
            data = src.read(CHUNK)
            dst.write(aead.encrypt(_nonce(prefix, index, last), data, _aad(header, index, last)))
        dst.flush()
        os.fsync(dst.fileno())


class _SealedReader(io.RawIOBase):
    """Plain bytes of a sealed blob from ``offset`` on, one chunk decrypted at a time."""

    def __init__(
        self,
        blob_id: str,
        handle: BinaryIO,
        header: bytes,
        prefix: bytes,
        key: bytes,
        size: int,
        offset: int,
    ) -> None:
        super().__init__()
        self._blob_id = blob_id
        self._handle = handle
        self._header = header
        self._prefix = prefix
        self._aead = AESGCM(key)
        self._size = size
        self._chunks = max(1, -(-size // CHUNK))
        self._pos = min(offset, size)
        self._index = -1
        self._plain = b""
        if self._pos < size:
            self._load(self._pos // CHUNK)  # damage where the read starts: an error answer

    def readable(self) -> bool:
        return True

    def _load(self, index: int) -> None:
        last = index == self._chunks - 1
        self._handle.seek(len(self._header) + index * (CHUNK + TAG))
        sealed = self._handle.read(CHUNK + TAG)
        try:
            self._plain = self._aead.decrypt(
                _nonce(self._prefix, index, last), sealed, _aad(self._header, index, last)
            )
        except Exception as exc:  # cryptography's InvalidTag carries no message
            raise SealedBlobDamaged(
                self._blob_id, f"sealed chunk {index} failed authentication"
            ) from exc
        self._index = index

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._pos >= self._size:
            return 0
        index = self._pos // CHUNK
        if index != self._index:
            self._load(index)
        start = self._pos - index * CHUNK
        piece = self._plain[start : start + len(buffer)]
        buffer[: len(piece)] = piece
        self._pos += len(piece)
        return len(piece)

    def close(self) -> None:
        self._handle.close()
        super().close()


def _read_header(handle: BinaryIO) -> tuple[bytes, str, bytes] | None:
    start = handle.read(len(MAGIC) + 1)
    if len(start) < len(MAGIC) + 1 or not start.startswith(MAGIC):
        return None
    ref_len = start[-1]
    rest = handle.read(ref_len + 4 + 8)
    ref = rest[:ref_len].decode()
    prefix = rest[ref_len + 4 :]
    return start + rest, ref, prefix


class EncryptedBlobStore:
    """A ``BlobStore`` that seals new blobs of tenants with a data key and opens any blob.

    Being the store every reader goes through, it also passes on damaged blobs (found
    by the inner store's sums or by a sealed chunk's authentication) to ``report``: a
    log line by default; the app sets ``audit.damage.DamageLog.report``.
    """

    def __init__(
        self,
        inner: BlobStore,
        keys: TenantKeys,
        tenant_of: Callable[[], str | None],
        report: Report | None = None,
    ) -> None:
        self.inner = inner
        self.keys = keys
        self.tenant_of = tenant_of
        self.report = report or log_damage

    def _key(self) -> tuple[str, bytes | None]:
        tenant = self.tenant_of()
        # A tenant's own key (None: that tenant keeps encryption off); with no tenant in
        # sight, the master key (None: encryption is not configured at all).
        return (tenant, self.keys.key(tenant)) if tenant else (MASTER_REF, self.keys.master)

    def put(self, blob_id: str, staged: Path, sums: bytes | None = None) -> None:
        ref, key = self._key()
        if key is None:
            self.inner.put(blob_id, staged, sums)
            return
        # Sealed: the stored bytes differ from the plain ones the sums were taken of.
        sealed = staged.with_name(staged.name + ".sealed")
        try:
            seal_file(staged, sealed, key, ref)
            self.inner.put(blob_id, sealed)
        except BaseException:
            sealed.unlink(missing_ok=True)
            raise
        staged.unlink(missing_ok=True)

    def put_many(self, items: Sequence[tuple[str, Path]]) -> None:
        ref, key = self._key()  # one key lookup for the whole set
        if key is None:
            self.inner.put_many(items)
            return
        sealed = [(blob_id, staged.with_name(staged.name + ".sealed")) for blob_id, staged in items]
        try:
            for (_blob_id, staged), (_same, target) in zip(items, sealed, strict=True):
                seal_file(staged, target, key, ref)
            self.inner.put_many(sealed)
        except BaseException:
            for _blob_id, target in sealed:
                target.unlink(missing_ok=True)
            raise
        for _blob_id, staged in items:
            staged.unlink(missing_ok=True)

    def _open_sealed(self, blob_id: str) -> tuple[BinaryIO, tuple[bytes, str, bytes] | None]:
        # Through the inner store's check: damage in the header's chunk is an error here.
        handle = self.inner.open(blob_id)
        try:
            return handle, _read_header(handle)
        except BaseException:
            handle.close()
            raise

    def _unchecked(self, blob_id: str, checked: BinaryIO) -> BinaryIO:
        """AES-GCM authenticates every chunk of a sealed blob, its header included: read it
        past the inner store's sums (a second SHA-256 of every byte) when the store can."""
        opener = getattr(self.inner, "open_unchecked", None)
        if opener is None:
            return checked
        checked.close()
        return cast(BinaryIO, opener(blob_id))

    def open(self, blob_id: str, offset: int = 0) -> BinaryIO:
        return reporting(lambda: self._open(blob_id, offset), self.report)

    def _open(self, blob_id: str, offset: int) -> BinaryIO:
        handle, header = self._open_sealed(blob_id)
        if header is None:
            if not offset:
                handle.seek(0)
                return handle
            # Opened again at the offset, so the inner store checks the chunk the read
            # starts in now, while an error can still be the answer.
            handle.close()
            return self.inner.open(blob_id, offset)
        raw, ref, prefix = header
        try:
            key = self.keys.key(ref)
            if key is None:
                raise EncryptionError(f"no key for sealed blob {blob_id}")
            handle = self._unchecked(blob_id, handle)
            size = self._plain_size(self.inner.size(blob_id), len(raw))
            reader = _SealedReader(blob_id, handle, raw, prefix, key, size, offset)
        except BaseException:
            handle.close()
            raise
        return io.BufferedReader(reader, buffer_size=CHUNK)

    @staticmethod
    def _plain_size(stored: int, header_len: int) -> int:
        body = stored - header_len
        chunks = max(1, -(-body // (CHUNK + TAG)))
        return body - chunks * TAG

    def size(self, blob_id: str) -> int:
        handle, header = self._open_sealed(blob_id)
        handle.close()
        stored = self.inner.size(blob_id)
        return stored if header is None else self._plain_size(stored, len(header[0]))

    def delete(self, blob_id: str) -> None:
        self.inner.delete(blob_id)


__all__ = [
    "EncryptedBlobStore",
    "EncryptionError",
    "SealedBlobDamaged",
    "TenantKeys",
    "check_shared_master_key",
    "load_master_key",
    "record_master_check",
    "seal_file",
]
