"""A node hitting a shared rate limit: ``python -m tests.server.guard.shared_hits URL
SPEC HITS`` takes HITS tokens for one key and prints how many were allowed."""

from __future__ import annotations

import sys

from dropline.server.guard.shared_limits import SharedRateLimiter
from dropline.server.storage.db import Database


def main() -> None:
    db = Database(sys.argv[1])
    try:
        limiter = SharedRateLimiter(db, {"credential": sys.argv[2]})
        allowed = sum(limiter.hit("credential", "key-1").allowed for _ in range(int(sys.argv[3])))
    finally:
        db.dispose()
    print(allowed)


if __name__ == "__main__":
    main()
