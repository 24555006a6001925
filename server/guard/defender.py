"""The brute-force defender: repeated authentication failures from one address earn a ban.

Failures are counted in memory over a sliding window; a ban is stored in the
``bans`` table (it survives a restart and admins can list and lift it) and cached
here. Each new ban of the same address lasts four times longer than the last, up
to a day; an address that behaved for a day starts again from the first step.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from sqlalchemy import delete, select

from dropline.server.storage import schema
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)

MAX_BAN_SECONDS = 24 * 3600
STRIKE_MEMORY_SECONDS = 24 * 3600


@dataclass(frozen=True, slots=True)
class Ban:
    ip: str
    until: float
    strikes: int
    reason: str
    created_at: float

    def as_json(self) -> dict[str, object]:
        return {
            "ip": self.ip,
            "until": self.until,
            "strikes": self.strikes,
            "reason": self.reason,
            "created_at": self.created_at,
            "active": self.until > time.time(),
        }


class Defender:
    def __init__(
        self, db: Database, max_failures: int = 10, window_seconds: int = 300, ban_seconds: int = 60
    ) -> None:
        self.db = db
        self.max_failures = max_failures
        self.window = window_seconds
        self.ban_seconds = ban_seconds
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = {}
        self._bans: dict[str, Ban] = {}
        with db.read() as conn:
            for row in conn.execute(select(schema.bans)):
                self._bans[row.ip] = Ban(row.ip, row.until, row.strikes, row.reason, row.created_at)

    def banned_for(self, ip: str | None) -> int:
        """Seconds left of ``ip``'s ban (0: not banned). A dict lookup: safe on every request."""
        if ip is None:
            return 0
        ban = self._bans.get(ip)
        if ban is None:
            return 0
        left = ban.until - time.time()
        if left <= 0:
            return 0
        # Only banned addresses get here: confirm the ban was not lifted from the CLI.
        with self.db.read() as conn:
            still = conn.execute(select(schema.bans.c.ip).where(schema.bans.c.ip == ip)).first()
        if still is None:
            self._bans.pop(ip, None)
            return 0
        return int(left) + 1

    def failure(self, ip: str | None, reason: str = "authentication failures") -> Ban | None:
        """Count one failure; returns the new ban when this one crossed the threshold."""
        if ip is None:
            return None
        now = time.time()
        with self._lock:
            window = self._failures.setdefault(ip, deque())
            window.append(now)
            while window and window[0] < now - self.window:
                window.popleft()
            if len(window) < self.max_failures:
                return None
            window.clear()
            previous = self._bans.get(ip)
            strikes = 1
            if previous is not None and now - previous.until < STRIKE_MEMORY_SECONDS:
                strikes = previous.strikes + 1
            duration = min(MAX_BAN_SECONDS, self.ban_seconds * 4 ** (strikes - 1))
            ban = Ban(ip, now + duration, strikes, reason, now)
            self._bans[ip] = ban
        with self.db.write() as conn:
            conn.execute(delete(schema.bans).where(schema.bans.c.ip == ip))
            conn.execute(
                schema.bans.insert().values(
                    ip=ip, until=ban.until, strikes=strikes, reason=reason, created_at=now
                )
            )
        log.warning("banned %s for %ss after repeated authentication failures", ip, duration)
        return ban

    def bans(self) -> list[Ban]:
        return sorted(self._bans.values(), key=lambda b: b.created_at)

    def lift(self, ip: str) -> bool:
        with self._lock:
            found = self._bans.pop(ip, None) is not None
            self._failures.pop(ip, None)
        with self.db.write() as conn:
            conn.execute(delete(schema.bans).where(schema.bans.c.ip == ip))
        return found

    def reload(self) -> None:
        """Re-read the table (a ban lifted from the CLI while the server runs)."""
        with self.db.read() as conn:
            rows = conn.execute(select(schema.bans)).all()
        with self._lock:
            self._bans = {r.ip: Ban(r.ip, r.until, r.strikes, r.reason, r.created_at) for r in rows}


__all__ = ["Ban", "Defender"]
