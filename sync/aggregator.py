"""Folds a stream of file-system events into batches of paths to look at.

Pure and clocked from outside: the caller passes ``now`` with every call. Events are
coalesced per path (an editor's save-by-rename dance is one entry), a burst is held
until the folder has been quiet for :data:`DEBOUNCE` (10,000 creates become one
batch), a directory with too many events folds into one rescan of that directory,
and too many paths in all fold into a rescan of the whole folder. A file created or
written but not yet closed is held back until its close arrives (or :data:`OPEN_WAIT`
passes), so a file still being copied in is not scanned half-written. A file renamed
into place (moved in, or saved by rename) arrives done: a rename sends no close.

The limits are module variables so tests can shrink them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

DEBOUNCE = 0.2  # seconds of quiet before a burst is handed on
MAX_DELAY = 1.0  # a burst that never goes quiet is handed on after this long anyway
OPEN_WAIT = 15.0  # a file opened for writing is waited for this long without a close
MAX_PER_DIR = 1000  # more pending paths than this in one directory: rescan the directory
MAX_PATHS = 50_000  # more than this in total: rescan the whole folder


class Kind(Enum):
    WRITING = "writing"  # created or written, not closed yet
    CLOSED = "closed"  # closed after writing: the writer is done with it
    DONE = "done"  # moved, deleted, or a directory event


@dataclass(frozen=True, slots=True)
class Batch:
    paths: frozenset[str]  # look at each of these paths
    dirs: frozenset[str] = frozenset()  # rescan each of these directories, recursively
    full: bool = False  # rescan the whole folder
    closed: frozenset[str] = frozenset()  # paths whose last event was a close after writing

    def __len__(self) -> int:
        return len(self.paths) + len(self.dirs) + int(self.full)


@dataclass(slots=True)
class _Pending:
    first: float
    last: float
    writing: bool
    closed: bool = False


@dataclass
class Aggregator:
    _paths: dict[str, _Pending] = field(default_factory=dict)
    _dirs: dict[str, _Pending] = field(default_factory=dict)
    _per_dir: dict[str, int] = field(default_factory=dict)
    _full: _Pending | None = None
    _last_event: float = 0.0

    def add(self, rel: str, kind: Kind, now: float) -> None:
        self._last_event = now
        if self._full is not None:
            self._full.last = now
            return
        folded = self._folded_into(rel)
        if folded is not None:
            folded.last = now
            return
        entry = self._paths.get(rel)
        if entry is None:
            self._paths[rel] = _Pending(now, now, kind is Kind.WRITING, kind is Kind.CLOSED)
            parent = rel.rpartition("/")[0]
            count = self._per_dir.get(parent, 0) + 1
            self._per_dir[parent] = count
            if count > MAX_PER_DIR:
                self._fold_dir(parent, now)
            elif len(self._paths) > MAX_PATHS:
                self.rescan_all(now)
        else:
            entry.last = now
            entry.writing = kind is Kind.WRITING
            entry.closed = kind is Kind.CLOSED

    def rescan_dir(self, rel: str, now: float) -> None:
        self._last_event = now
        if self._full is None and self._folded_into(rel) is None:
            self._fold_dir(rel, now)

    def rescan_all(self, now: float) -> None:
        """After an overflow or a lost watch: everything is suspect."""
        self._last_event = now
        first = min((p.first for p in (*self._paths.values(), *self._dirs.values())), default=now)
        self._full = _Pending(first, now, False)
        self._paths.clear()
        self._dirs.clear()
        self._per_dir.clear()

    def _folded_into(self, rel: str) -> _Pending | None:
        if not self._dirs:
            return None
        parts = rel.split("/")
        for i in range(len(parts), -1, -1):
            hit = self._dirs.get("/".join(parts[:i]))
            if hit is not None:
                return hit
        return None

    def _fold_dir(self, directory: str, now: float) -> None:
        first = now
        prefix = directory + "/" if directory else ""
        for path in [p for p in self._paths if p == directory or p.startswith(prefix)]:
            first = min(first, self._paths.pop(path).first)
        for d in [d for d in self._dirs if d.startswith(prefix) and d != directory]:
            first = min(first, self._dirs.pop(d).first)
        self._per_dir.pop(directory, None)
        self._dirs[directory] = _Pending(first, now, False)

    def pending(self) -> int:
        return len(self._paths) + len(self._dirs) + (1 if self._full else 0)

    def _oldest(self) -> float | None:
        firsts = [p.first for p in (*self._paths.values(), *self._dirs.values())]
        if self._full is not None:
            firsts.append(self._full.first)
        return min(firsts, default=None)

    def next_deadline(self) -> float | None:
        """When :meth:`pop` may next return something (None: nothing pending)."""
        oldest = self._oldest()
        if oldest is None:
            return None
        deadline = min(self._last_event + DEBOUNCE, oldest + MAX_DELAY)
        held = [p.last + OPEN_WAIT for p in self._paths.values() if p.writing]
        if held and len(held) == len(self._paths) and not self._dirs and self._full is None:
            deadline = max(deadline, min(held))
        return deadline

    def pop(self, now: float) -> Batch | None:
        """The batch that is due at ``now``, or None."""
        oldest = self._oldest()
        if oldest is None:
            return None
        # A hair of slack so a caller that sleeps exactly until next_deadline() gets it.
        now += 1e-6
        if now - self._last_event < DEBOUNCE and now - oldest < MAX_DELAY:
            return None
        if self._full is not None:
            self._full = None
            self._paths.clear()
            self._dirs.clear()
            self._per_dir.clear()
            return Batch(frozenset(), frozenset(), True)
        ready = [p for p, e in self._paths.items() if not e.writing or now - e.last >= OPEN_WAIT]
        closed = frozenset(p for p in ready if self._paths[p].closed)
        for p in ready:
            del self._paths[p]
            parent = p.rpartition("/")[0]
            left = self._per_dir.get(parent, 1) - 1
            if left:
                self._per_dir[parent] = left
            else:
                self._per_dir.pop(parent, None)
        dirs = frozenset(self._dirs)
        self._dirs.clear()
        if not ready and not dirs:
            return None
        return Batch(frozenset(ready), dirs, closed=closed)
