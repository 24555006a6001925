"""History rows to a CSV file that spreadsheets open safely."""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from dropline.agent.control.protocol import HistoryRowJSON

HEADER = (
    "time_utc",
    "folder",
    "path",
    "direction",
    "size_bytes",
    "duration_s",
    "bytes_per_second",
    "result",
    "error",
)
# A cell starting with one of these is run as a formula by spreadsheet programs; a
# file named "=HYPERLINK(...)" must stay text (OWASP "CSV injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(text: str) -> str:
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def write_history_csv(rows: Iterable[HistoryRowJSON], path: Path) -> int:
    """Write ``rows`` to ``path`` (replaced atomically); returns the number written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".export-", suffix=".csv", dir=path.parent)
    count = 0
    try:
        # utf-8-sig: spreadsheet programs on Windows read the BOM and keep accents intact.
        with os.fdopen(fd, "w", encoding="utf-8-sig", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(HEADER)
            for row in rows:
                speed = row["size"] / row["duration"] if row["duration"] > 0 else 0
                writer.writerow(
                    [
                        datetime.fromtimestamp(row["time"], UTC).isoformat(timespec="seconds"),
                        _cell(row["folder"]),
                        _cell(row["path"]),
                        row["direction"],
                        row["size"],
                        f"{row['duration']:.3f}",
                        round(speed),
                        row["result"],
                        _cell(row["error"] or ""),
                    ]
                )
                count += 1
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count
