"""How the blob store passes on damage it finds: :func:`reporting` wraps a blob reader so
damage found when it opens or on any later read goes to a report function before it is
raised. By default damage is logged; the app reports it to the audit trail too
(``audit.damage``), which this room may not import.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, BinaryIO, cast

from dropline.server.storage.integrity import BlobDamaged

log = logging.getLogger(__name__)

Report = Callable[[BlobDamaged], None]


def log_damage(damage: BlobDamaged) -> None:
    log.error("blob %s is damaged: %s", damage.blob_id, damage.reason)


class _Reporting:
    """A blob reader whose damage, found on any read, is reported before it is raised."""

    def __init__(self, inner: BinaryIO, report: Report) -> None:
        self._inner = inner
        self._report = report

    def read(self, size: int = -1) -> bytes:
        try:
            return self._inner.read(size)
        except BlobDamaged as damage:
            self._report(damage)
            raise

    def readinto(self, buffer: Any) -> int:
        try:
            return self._inner.readinto(buffer)  # type: ignore[attr-defined, no-any-return]
        except BlobDamaged as damage:
            self._report(damage)
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def __enter__(self) -> _Reporting:
        return self

    def __exit__(self, *exc: object) -> None:
        self._inner.close()

    def __iter__(self) -> Any:
        return iter(self._inner)


def reporting(open_blob: Callable[[], BinaryIO], report: Report) -> BinaryIO:
    """``open_blob()``, with damage found at open or on any later read reported."""
    try:
        handle = open_blob()
    except BlobDamaged as damage:
        report(damage)
        raise
    return cast(BinaryIO, _Reporting(handle, report))


__all__ = ["Report", "log_damage", "reporting"]
