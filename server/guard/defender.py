"""The brute-force defender: repeated authentication failures from one address earn a ban.

Failures are counted in memory over a sliding window; a ban is stored in the
``bans`` table (it survives a restart and admins can list and lift it) and cached
here. Each new ban of the same address lasts four times longer than the last, up
to a day; an address that behaved for a day starts again from the first step.

On a shared database (several nodes) failures are counted in a shared token bucket
instead (guard.shared_limits: ``max_failures`` tokens refilled over the window, so a
burst of that many failures earns a ban on whichever nodes they land), and each node
reads the ban list again at most every :data:`SYNC_SECONDS`: a ban made by one node
holds on the others within that time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass

from sqlalchemy import delete, select

from dropline.server.guard.shared_limits import take
from dropline.server.storage import schema
from dropline.server.storage.db import Database

log = logging.getLogger(__name__)

MAX_BAN_SECONDS = 24 * 3600
STRIKE_MEMORY_SECONDS = 24 * 3600
SYNC_SECONDS = 1.0


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
        self,
        db: Database,
        max_failures: int = 10,
        window_seconds: int = 300,
        ban_seconds: int = 60,
        *,
        shared: bool | None = None,
    ) -> None:
        self.db = db
        # Shared by default on a shared database; the embedded one has one process.
        self.shared = not db.is_sqlite if shared is None else shared
        self._synced = time.monotonic()
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
        if self.shared and time.monotonic() - self._synced > SYNC_SECONDS:
            self.reload()  # bans other nodes made
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
        if self.shared:
            return self._shared_failure(ip, reason)
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

    def _shared_failure(self, ip: str, reason: str) -> Ban | None:
        now = time.time()
        key = f"defender:{ip}"
        with self.db.write() as conn:
            capacity = float(self.max_failures)
            left, taken = take(conn, key, capacity, capacity / self.window, now)
            if taken and left >= 1:
                return None  # as in memory, the failure that reaches the limit bans
            conn.execute(delete(schema.rate_buckets).where(schema.rate_buckets.c.key == key))
            previous = conn.execute(select(schema.bans).where(schema.bans.c.ip == ip)).first()
            strikes = 1
            if previous is not None and now - previous.until < STRIKE_MEMORY_SECONDS:
                strikes = int(previous.strikes) + 1
            duration = min(MAX_BAN_SECONDS, self.ban_seconds * 4 ** (strikes - 1))
            ban = Ban(ip, now + duration, strikes, reason, now)
            conn.execute(delete(schema.bans).where(schema.bans.c.ip == ip))
            conn.execute(
                schema.bans.insert().values(
                    ip=ip, until=ban.until, strikes=strikes, reason=reason, created_at=now
                )
            )
        with self._lock:
            self._bans[ip] = ban
        log.warning("banned %s for %ss after repeated authentication failures", ip, duration)
        return ban

    def bans(self) -> list[Ban]:
        if self.shared:
            self.reload()
        return sorted(self._bans.values(), key=lambda b: b.created_at)

    def lift(self, ip: str) -> bool:
        with self._lock:
            found = self._bans.pop(ip, None) is not None
            self._failures.pop(ip, None)
        with self.db.write() as conn:
            conn.execute(delete(schema.bans).where(schema.bans.c.ip == ip))
            if self.shared:  # its failures start again from none, as in memory
                key = f"defender:{ip}"
                conn.execute(delete(schema.rate_buckets).where(schema.rate_buckets.c.key == key))
        return found

    def reload(self) -> None:
        """Re-read the table (a ban lifted from the CLI while the server runs)."""
        with self.db.read() as conn:
            rows = conn.execute(select(schema.bans)).all()
        with self._lock:
            self._bans = {r.ip: Ban(r.ip, r.until, r.strikes, r.reason, r.created_at) for r in rows}
            self._synced = time.monotonic()


__all__ = ["Ban", "Defender"]
