"""Signing keys shared by every node of one PostgreSQL database (``signing_keys``).

Each node reads the live keys from the table: the newest signs, all of them verify
and are published in the JWKS, so a token signed by one node verifies on any other.
A node re-reads the table every ``refresh_seconds`` and, rate-limited, as soon as it
meets a token naming a ``kid`` it does not know (a rotation on another node is
honoured at once). The private JWK is sealed with the master key (AES-GCM, the
``kid`` as associated data) when the nodes are given one; without a master key it is
stored as is, protected like the rest of the database (its access control and
backups), since there is then no node-independent secret to seal it with.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import time
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from joserfc.jwk import ECKey
from sqlalchemy import Connection, select

from dropline.server.identity.tokens import SigningKeys
from dropline.server.storage import schema
from dropline.server.storage.db import Database
from dropline.server.storage.encryption import EncryptionError, load_master_key

log = logging.getLogger(__name__)

DEFAULT_REFRESH_SECONDS = 30.0
_table = schema.signing_keys


def _aad(kid: str) -> bytes:
    return f"dropline signing key {kid}".encode()


def seal_private_jwk(master: bytes | None, kid: str, text: str) -> tuple[str, bool]:
    """A private JWK as the table stores it, and whether it is sealed (only with a master
    key). Also used by ``storage.transplant`` to carry a single node's key files over."""
    if master is None:
        return text, False
    nonce = os.urandom(12)
    sealed = nonce + AESGCM(master).encrypt(nonce, text.encode(), _aad(kid))
    return base64.b64encode(sealed).decode(), True


class TableSigningKeys(SigningKeys):
    """The key ring in the shared database; same interface as the file-backed one."""

    def __init__(
        self, data_dir: Path, db: Database, refresh_seconds: float = DEFAULT_REFRESH_SECONDS
    ) -> None:
        self.db = db
        self.refresh_seconds = refresh_seconds
        self._master = load_master_key(data_dir)
        self._loaded_at = 0.0
        super().__init__(data_dir)

    def _seal(self, kid: str, text: str) -> tuple[str, bool]:
        return seal_private_jwk(self._master, kid, text)

    def _open(self, kid: str, stored: str, sealed: bool) -> ECKey:
        if sealed:
            if self._master is None:
                raise EncryptionError(
                    "the signing keys in the database are sealed with a master key this "
                    "node was not given (DROPLINE_MASTER_KEY_FILE or DROPLINE_MASTER_KEY)"
                )
            raw = base64.b64decode(stored)
            try:
                stored = AESGCM(self._master).decrypt(raw[:12], raw[12:], _aad(kid)).decode()
            except InvalidTag:
                raise EncryptionError(
                    f"signing key {kid} does not open with this node's master key"
                ) from None
        return ECKey.import_key(json.loads(stored))

    def _select_live(self) -> list[tuple[float, ECKey]]:
        with self.db.read() as conn:
            rows = conn.execute(
                select(_table.c.kid, _table.c.private_jwk, _table.c.sealed, _table.c.created_at)
                .where(_table.c.retired_at.is_(None))
                .order_by(_table.c.created_at, _table.c.kid)
            ).all()
        return [(float(r.created_at), self._open(r.kid, r.private_jwk, r.sealed)) for r in rows]

    def _read_keys(self) -> list[tuple[float, ECKey]]:
        keys = self._select_live()
        if not keys:
            # Under the writer lock every node takes: of several nodes starting at once
            # on an empty table, the first creates the key and the others find it.
            with self.db.write() as conn:
                live = conn.execute(
                    select(_table.c.kid).where(_table.c.retired_at.is_(None)).limit(1)
                ).first()
                if live is None:
                    self._insert(conn)
            keys = self._select_live()
        self._loaded_at = time.monotonic()
        return keys

    def _insert(self, conn: Connection) -> tuple[float, ECKey]:
        created, key = self._new_key()
        kid = str(key.kid)
        stored, sealed = self._seal(kid, json.dumps(key.as_dict(private=True)))
        conn.execute(
            _table.insert().values(
                kid=kid, private_jwk=stored, sealed=sealed, created_at=created, retired_at=None
            )
        )
        log.info("created signing key %s in the shared database", kid)
        return created, key

    def _create(self) -> tuple[float, ECKey]:
        with self.db.write() as conn:
            return self._insert(conn)

    def _stale(self) -> bool:
        return time.monotonic() - self._loaded_at >= self.refresh_seconds

    def _remove(self, kid: str) -> None:
        with self.db.write() as conn:
            conn.execute(
                _table.update()
                .where(_table.c.kid == kid, _table.c.retired_at.is_(None))
                .values(retired_at=time.time())
            )


def signing_keys_for(
    data_dir: Path, db: Database, refresh_seconds: float = DEFAULT_REFRESH_SECONDS
) -> SigningKeys:
    """The shared table with PostgreSQL (several nodes), the data dir's files with SQLite."""
    if db.is_postgres:
        return TableSigningKeys(data_dir, db, refresh_seconds)
    return SigningKeys(data_dir)


__all__ = ["TableSigningKeys", "seal_private_jwk", "signing_keys_for"]
