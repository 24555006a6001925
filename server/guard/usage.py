"""What files take in storage, as retention counts it: the current files, the earlier
versions retention keeps, and the trash retention keeps. The storage quota counts
their sum, and ``GET /api/v1/me`` shows each.

A version is the content a file had before a later revision replaced it; several
revisions with one blob (a restore brings an old blob back) count once, and none that
shares the file's current blob counts at all. Retention keeps a version while it is
among the file's ``max_versions`` newest revisions and was replaced within
``version_retention_days``; trash within ``trash_retention_days`` of its deletion.
The housekeeping job (``files.housekeeping``) deletes by the same rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select, true

from dropline.server.storage import schema

E = schema.entries
R = schema.revisions
DAY = 86400.0


@dataclass(frozen=True, slots=True)
class Retention:
    """The retention rules of a policy; None keeps forever (or every version)."""

    version_days: int | None = None
    max_versions: int | None = None
    trash_days: int | None = None

    @classmethod
    def of(cls, rules: Any) -> Retention:
        """From a ``policy.Rules`` (or anything with the three attributes)."""
        return cls(
            getattr(rules, "version_retention_days", None),
            getattr(rules, "max_versions", None),
            getattr(rules, "trash_retention_days", None),
        )

    @property
    def keeps_replaced(self) -> bool:
        """Whether content a new upload replaces stays as a version (and so counts)."""
        return self.max_versions != 1 and self.version_days != 0


@dataclass(frozen=True, slots=True)
class Usage:
    current: int
    versions: int
    trash: int

    @property
    def used(self) -> int:
        return self.current + self.versions + self.trash

    def to_json(self) -> dict[str, int]:
        return {
            "used": self.used,
            "current": self.current,
            "versions": self.versions,
            "trash": self.trash,
        }


def measure(
    conn: Connection, tenant_id: str, space_id: str | None, retention: Retention, now: float
) -> Usage:
    """Usage of one user's space, or (``space_id`` None) of the whole tenant, at ``now``."""
    owned: list[Any] = [E.c.tenant_id == tenant_id, E.c.type == "file"]
    if space_id is not None:
        owned.append(E.c.space_id == space_id)
    # An entry retention keeps: live, or trashed within the trash retention.
    entry_kept: Any = true()
    trashed: Any = E.c.trashed_at.is_not(None)
    if retention.trash_days is not None:
        in_time = E.c.trashed_at >= now - retention.trash_days * DAY
        entry_kept = or_(E.c.trashed_at.is_(None), in_time)
        trashed = and_(trashed, in_time)
    total = func.coalesce(func.sum(E.c.size), 0)
    current = conn.execute(select(total).where(*owned, E.c.trashed_at.is_(None))).scalar_one()
    trash = conn.execute(select(total).where(*owned, trashed)).scalar_one()

    ranked = (
        select(
            R.c.entry_id,
            R.c.blob_id,
            R.c.size,
            E.c.blob_id.label("current_blob"),
            func.row_number().over(partition_by=R.c.entry_id, order_by=R.c.id.desc()).label("n"),
            # When the next newer revision replaced this one.
            func.lag(R.c.created_at)
            .over(partition_by=R.c.entry_id, order_by=R.c.id.desc())
            .label("replaced_at"),
        )
        .join(E, E.c.id == R.c.entry_id)
        .where(*owned, entry_kept)
        .subquery()
    )
    kept: list[Any] = [ranked.c.n > 1, ranked.c.blob_id != ranked.c.current_blob]
    if retention.max_versions is not None:
        kept.append(ranked.c.n <= retention.max_versions)
    if retention.version_days is not None:
        kept.append(ranked.c.replaced_at >= now - retention.version_days * DAY)
    distinct = (
        select(func.max(ranked.c.size).label("size"))
        .where(*kept)
        .group_by(ranked.c.entry_id, ranked.c.blob_id)
        .subquery()
    )
    versions = conn.execute(select(func.coalesce(func.sum(distinct.c.size), 0))).scalar_one()
    return Usage(int(current), int(versions), int(trash))


__all__ = ["DAY", "Retention", "Usage", "measure"]
