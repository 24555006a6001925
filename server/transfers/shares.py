"""Share links: made by a ``link`` transfer, opened by anyone holding the URL.

The token is 256 bits from ``secrets`` and only its SHA-256 is looked up. A link
serves the file versions it was made with, until it expires, runs out of
downloads or is revoked; an optional password (argon2) and allowed networks
narrow who may open it. No web framework here.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, update

from dropline.server.audit import trail
from dropline.server.files.records import Entry
from dropline.server.files.sweeper import SweepItem
from dropline.server.identity.accounts import verify_password
from dropline.server.problems import Problem
from dropline.server.storage import schema
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)

S = schema.shares
SHARE_PREFIX = "/s/"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class SharedFile:
    id: str
    name: str
    size: int
    sha256: str
    rev: str
    mtime: float | None
    blob_id: str

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True, slots=True)
class Share:
    id: str
    tenant_id: str
    transfer_id: str
    files: list[SharedFile]
    expires_at: float | None
    max_downloads: int | None
    downloads: int

    def file(self, file_id: str) -> SharedFile:
        for shared in self.files:
            if shared.id == file_id:
                return shared
        raise Problem("not-found", "no such file in this share")

    def to_json(self, token: str) -> dict[str, Any]:
        left = None if self.max_downloads is None else max(0, self.max_downloads - self.downloads)
        return {
            "files": [
                {**f.public(), "url": f"{SHARE_PREFIX}{token}/files/{f.id}"} for f in self.files
            ],
            "expires_at": self.expires_at,
            "downloads_left": left,
        }


def create_share(
    conn: Connection,
    *,
    tenant_id: str,
    user_id: str,
    transfer_id: str,
    entries: list[Entry],
    expires_at: float | None,
    max_downloads: int | None,
    password_hash: str | None,
    allowed_cidrs: list[str] | None,
) -> str:
    """Store a share in ``conn``'s transaction; returns the token (the one time it exists
    outside the caller's answer: only its hash is stored here)."""
    token = secrets.token_urlsafe(32)
    snapshot = [
        {
            "id": e.id,
            "name": e.name,
            "size": e.size,
            "sha256": e.sha256,
            "rev": e.rev,
            "mtime": e.mtime,
            "blob_id": e.blob_id,
        }
        for e in entries
    ]
    conn.execute(
        S.insert().values(
            id=str(uuid.uuid4()),
            token_hash=token_hash(token),
            tenant_id=tenant_id,
            user_id=user_id,
            transfer_id=transfer_id,
            files=json.dumps(snapshot),
            expires_at=expires_at,
            max_downloads=max_downloads,
            downloads=0,
            password_hash=password_hash,
            allowed_cidrs=json.dumps(allowed_cidrs) if allowed_cidrs else None,
            created_at=time.time(),
        )
    )
    return token


def _share(row: Any) -> Share:
    return Share(
        id=row.id,
        tenant_id=row.tenant_id,
        transfer_id=row.transfer_id,
        files=[SharedFile(**f) for f in json.loads(row.files)],
        expires_at=row.expires_at,
        max_downloads=row.max_downloads,
        downloads=row.downloads,
    )


def _spent(row: Any, now: float) -> bool:
    if row.revoked_at is not None:
        return True
    if row.expires_at is not None and row.expires_at <= now:
        return True
    return row.max_downloads is not None and row.downloads >= row.max_downloads


class ShareService:
    def __init__(self, db: Database) -> None:
        self.db = db

    def open(self, token: str, password: str | None, client_ip: str | None) -> Share:
        """The share behind ``token`` if this caller may open it now.

        Unknown: 404. Revoked, expired or out of downloads: 410. From a network the
        link does not allow: 403. Missing or wrong password: 401.
        """
        with self.db.read() as conn:
            row = conn.execute(select(S).where(S.c.token_hash == token_hash(token))).first()
        if row is None:
            raise Problem("not-found", "no such share link")
        if _spent(row, time.time()):
            raise Problem("share-expired", "this link has expired or has no downloads left")
        if row.allowed_cidrs:
            networks = [ipaddress.ip_network(c) for c in json.loads(row.allowed_cidrs)]
            try:
                ip = ipaddress.ip_address(client_ip or "")
            except ValueError:
                ip = None
            if ip is None or not any(ip in net for net in networks):
                raise Problem("forbidden", "this link cannot be opened from your network")
        if row.password_hash is not None:
            if not password:
                raise Problem(
                    "share-password",
                    "this link needs its password",
                    headers={"WWW-Authenticate": 'Basic realm="dropline-share"'},
                )
            if not verify_password(row.password_hash, password):
                raise Problem(
                    "share-password",
                    "the password is wrong",
                    headers={"WWW-Authenticate": 'Basic realm="dropline-share"'},
                )
        return _share(row)

    def take_download(
        self, share: Share, file_id: str, audit_ctx: trail.AuditContext | None = None
    ) -> SharedFile:
        """Count one download, atomically: only while the link is still live. The
        last allowed download also marks the transfer expired. The audit row (who
        fetched what, from where) commits with the count."""
        shared = share.file(file_id)
        now = time.time()
        with self.db.write() as conn:
            row = conn.execute(select(S).where(S.c.id == share.id)).one()
            if _spent(row, now):
                raise Problem("share-expired", "this link has expired or has no downloads left")
            conn.execute(update(S).where(S.c.id == share.id).values(downloads=S.c.downloads + 1))
            if audit_ctx is not None:
                trail.record(
                    conn,
                    audit_ctx,
                    "share.download",
                    "success",
                    shared.name,
                    {
                        "share_id": share.id,
                        "transfer_id": share.transfer_id,
                        "file_id": shared.id,
                        "size": shared.size,
                        "download": row.downloads + 1,
                    },
                    tenant_id=share.tenant_id,
                )
            if row.max_downloads is not None and row.downloads + 1 >= row.max_downloads:
                conn.execute(
                    update(schema.transfers)
                    .where(
                        schema.transfers.c.id == share.transfer_id,
                        schema.transfers.c.state == "completed",
                    )
                    .values(state="expired", updated_at=now)
                )
        log.info("share %s: file %s downloaded", share.id, file_id)
        return shared

    def expire_due(self, now: float | None = None) -> int:
        """Mark link transfers whose link's time is up as expired; returns how many."""
        now = time.time() if now is None else now
        with self.db.write() as conn:
            return _expire_links(conn, _due_links(conn, now), now)


def _due_links(conn: Connection, before: float) -> list[tuple[str, str]]:
    """(share id, transfer id) of links whose time was up at ``before`` and whose
    transfer is not marked expired yet."""
    T = schema.transfers
    rows = conn.execute(
        select(S.c.id, S.c.transfer_id)
        .join(T, T.c.id == S.c.transfer_id)
        .where(S.c.expires_at <= before, T.c.kind == "link", T.c.state == "completed")
        .order_by(S.c.id)
    )
    return [(row.id, row.transfer_id) for row in rows]


def _expire_links(conn: Connection, links: list[tuple[str, str]], now: float) -> int:
    T = schema.transfers
    count = 0
    for _share_id, transfer_id in links:
        count += (
            conn.execute(
                update(T)
                .where(T.c.id == transfer_id, T.c.state == "completed")
                .values(state="expired", updated_at=now)
            ).rowcount
            or 0
        )
    return count


class EndedShareLinks:
    """The sweeper's part for share links: those whose time was up more than the grace
    period ago get their transfer marked expired (the server's own 30-second check
    normally did so already; this covers a server that was down). The versions they
    pinned are released by ``files.sweeper.KeptRevisions``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def sweep(self, now: float, grace: float, dry_run: bool) -> list[SweepItem]:
        with self.db.write() as conn:
            links = _due_links(conn, now - grace)
            if not dry_run:
                _expire_links(conn, links, now)
        return [SweepItem("share-link", share_id) for share_id, _transfer in links]


__all__ = [
    "SHARE_PREFIX",
    "EndedShareLinks",
    "Share",
    "ShareService",
    "SharedFile",
    "create_share",
    "token_hash",
]
