"""What the planner takes and gives: the three states of a path, the actions it plans,
the problems it reports and the plan that holds them. Plain records, no logic.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NONE_REV = "none"  # upload precondition: "only if nothing is there yet"


@dataclass(frozen=True, slots=True)
class Base:
    is_dir: bool
    size: int
    mtime_ns: int
    inode: int
    sha256: str | None
    remote_id: str
    rev: str


@dataclass(frozen=True, slots=True)
class Local:
    is_dir: bool
    size: int
    mtime_ns: int
    inode: int
    sha256: str | None = None  # files: always set when the stat differs from the base


@dataclass(frozen=True, slots=True)
class Remote:
    id: str
    is_dir: bool
    size: int
    sha256: str | None
    rev: str
    mtime: float | None = None


@dataclass(frozen=True, slots=True)
class PathState:
    """The three states of one path, each ``None`` when absent:

    * ``base``: what both sides agreed on at the last sync (the journal);
    * ``local``: what is on disk now (size, mtime_ns, inode, and the SHA-256 once hashed);
    * ``remote``: what the server has now (from the change feed, or the base if no
      change arrived).
    """

    path: str
    base: Base | None
    local: Local | None
    remote: Remote | None


# Actions. Each carries what the executor must re-check before touching anything.


@dataclass(frozen=True, slots=True)
class Upload:
    path: str
    local: Local
    if_rev: str  # the base rev, or NONE_REV for a new file


@dataclass(frozen=True, slots=True)
class Download:
    path: str
    remote: Remote
    expect: Local | None  # the local file must still be this (or absent) when placed


@dataclass(frozen=True, slots=True)
class MkdirRemote:
    path: str
    local: Local


@dataclass(frozen=True, slots=True)
class MkdirLocal:
    path: str
    remote: Remote


@dataclass(frozen=True, slots=True)
class DeleteRemote:
    path: str
    base: Base  # carries the rev: a file changed remotely is never deleted


@dataclass(frozen=True, slots=True)
class DeleteLocal:
    path: str
    expect: Local  # only if the local entry is still exactly this


@dataclass(frozen=True, slots=True)
class MoveRemote:
    src: str
    dst: str
    base: Base
    local: Local


@dataclass(frozen=True, slots=True)
class MoveLocal:
    src: str
    dst: str
    expect: Local
    remote: Remote


@dataclass(frozen=True, slots=True)
class ConflictCopy:
    """Rename the local version aside; the next pass brings the other version in and
    (in two-way folders) uploads the copy, so both survive."""

    path: str
    copy: str
    expect: Local


@dataclass(frozen=True, slots=True)
class RecordBase:
    """Only the journal changes: both sides already agree (or both are gone)."""

    path: str
    base: Base | None


@dataclass(frozen=True, slots=True)
class RecordMove:
    """Only the journal changes: both sides already hold ``src`` (and everything under
    it) at ``dst``, a move that reached the server before the journal heard of it."""

    src: str
    dst: str
    base: Base


@dataclass(frozen=True, slots=True)
class Problem:
    path: str
    kind: str
    message: str
    hint: str
    related: tuple[str, ...] = ()


Action = (
    Upload
    | Download
    | MkdirRemote
    | MkdirLocal
    | DeleteRemote
    | DeleteLocal
    | MoveRemote
    | MoveLocal
    | ConflictCopy
    | RecordBase
    | RecordMove
)


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    deferred: list[str] = field(default_factory=list)  # plan these again after this plan ran
    mass_delete: Problem | None = None  # set: nothing in ``actions`` may run; pause the folder
