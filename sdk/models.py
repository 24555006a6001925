"""The API's wire records (entries, changes, upload sessions, revisions, trash) and their
parsing from JSON.

Parsing is strict: a missing or mistyped field raises :class:`dropline.sdk.errors.ProtocolError`
naming the record and the field, so a drift between server and SDK is loud.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from dropline.sdk.errors import ProtocolError


class EntryType(StrEnum):
    FILE = "file"
    FOLDER = "folder"


class ChangeAction(StrEnum):
    CREATED = "created"
    MODIFIED = "modified"
    MOVED = "moved"
    DELETED = "deleted"


def _field(doc: Mapping[str, Any], record: str, name: str, kinds: tuple[type, ...]) -> Any:
    if name not in doc:
        raise ProtocolError(f"{record} is missing the field {name!r}")
    value = doc[name]
    # bool is an int in Python, but never a valid number on this wire.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ProtocolError(
            f"{record}.{name} has the wrong type ({type(value).__name__}): {value!r:.80}"
        )
    return value


def _str(doc: Mapping[str, Any], record: str, name: str) -> str:
    value: str = _field(doc, record, name, (str,))
    return value


def _opt_str(doc: Mapping[str, Any], record: str, name: str) -> str | None:
    value: str | None = _field(doc, record, name, (str, type(None)))
    return value


def _int(doc: Mapping[str, Any], record: str, name: str) -> int:
    value: int = _field(doc, record, name, (int,))
    return value


def _object(doc: object, record: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise ProtocolError(f"{record} is not a JSON object ({type(doc).__name__})")
    return doc


def _list(doc: Mapping[str, Any], record: str, name: str) -> list[Any]:
    value: list[Any] = _field(doc, record, name, (list,))
    return value


@dataclass(frozen=True, slots=True)
class Entry:
    """A file or folder on the server."""

    id: str
    name: str
    path: str
    type: EntryType
    size: int
    sha256: str | None
    rev: str
    mtime: float | None
    parent_id: str | None

    @property
    def is_folder(self) -> bool:
        return self.type is EntryType.FOLDER

    @classmethod
    def from_json(cls, doc: object) -> Entry:
        d = _object(doc, "Entry")
        kind = _str(d, "Entry", "type")
        try:
            entry_type = EntryType(kind)
        except ValueError:
            raise ProtocolError(f"Entry.type is {kind!r}, not 'file' or 'folder'") from None
        mtime = _field(d, "Entry", "mtime", (int, float, type(None)))
        return cls(
            id=_str(d, "Entry", "id"),
            name=_str(d, "Entry", "name"),
            path=_str(d, "Entry", "path"),
            type=entry_type,
            size=_int(d, "Entry", "size"),
            sha256=_opt_str(d, "Entry", "sha256"),
            rev=_str(d, "Entry", "rev"),
            mtime=None if mtime is None else float(mtime),
            parent_id=_opt_str(d, "Entry", "parent_id"),
        )


@dataclass(frozen=True, slots=True)
class Change:
    """One row of the change feed; for ``deleted`` the entry is as it was."""

    seq: int
    action: ChangeAction
    old_path: str | None
    entry: Entry

    @classmethod
    def from_json(cls, doc: object) -> Change:
        d = _object(doc, "Change")
        action = _str(d, "Change", "action")
        try:
            change_action = ChangeAction(action)
        except ValueError:
            raise ProtocolError(f"Change.action is {action!r}, not a known action") from None
        return cls(
            seq=_int(d, "Change", "seq"),
            action=change_action,
            old_path=_opt_str(d, "Change", "old_path"),
            entry=Entry.from_json(_field(d, "Change", "entry", (Mapping,))),
        )


@dataclass(frozen=True, slots=True)
class ChangePage:
    changes: tuple[Change, ...]
    cursor: str
    has_more: bool

    @classmethod
    def from_json(cls, doc: object) -> ChangePage:
        d = _object(doc, "ChangePage")
        rows = _list(d, "ChangePage", "changes")
        return cls(
            changes=tuple(Change.from_json(row) for row in rows),
            cursor=_str(d, "ChangePage", "cursor"),
            has_more=bool(_field(d, "ChangePage", "has_more", (bool,))),
        )


@dataclass(frozen=True, slots=True)
class EntryPage:
    """One page of a folder listing."""

    entries: tuple[Entry, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, doc: object) -> EntryPage:
        d = _object(doc, "EntryPage")
        rows = _list(d, "EntryPage", "entries")
        return cls(
            entries=tuple(Entry.from_json(row) for row in rows),
            next_cursor=_opt_str(d, "EntryPage", "next_cursor"),
        )


def _number(doc: Mapping[str, Any], record: str, name: str) -> float:
    return float(_field(doc, record, name, (int, float)))


def _opt_number(doc: Mapping[str, Any], record: str, name: str) -> float | None:
    value = _field(doc, record, name, (int, float, type(None)))
    return None if value is None else float(value)


def _entry_type(doc: Mapping[str, Any], record: str) -> EntryType:
    kind = _str(doc, record, "type")
    try:
        return EntryType(kind)
    except ValueError:
        raise ProtocolError(f"{record}.type is {kind!r}, not 'file' or 'folder'") from None


@dataclass(frozen=True, slots=True)
class Storage:
    """What an account's files take on the server, in bytes. ``used`` is what the quota
    counts: the current files, the earlier revisions kept, and the trash."""

    used: int
    quota: int | None  # None: no quota
    current: int
    versions: int
    trash: int

    @classmethod
    def from_json(cls, doc: object) -> Storage:
        d = _object(doc, "Storage")
        quota: int | None = _field(d, "Storage", "quota", (int, type(None)))
        return cls(
            used=_int(d, "Storage", "used"),
            quota=quota,
            current=_int(d, "Storage", "current"),
            versions=_int(d, "Storage", "versions"),
            trash=_int(d, "Storage", "trash"),
        )


@dataclass(frozen=True, slots=True)
class Account:
    """``GET /api/v1/me``: who the credential belongs to (and, from servers that keep
    versions, what their files take)."""

    user_id: str
    email: str
    tenant_id: str
    tenant_name: str
    credential_kind: str
    scopes: tuple[str, ...]
    storage: Storage | None = None

    @classmethod
    def from_json(cls, doc: object) -> Account:
        d = _object(doc, "Account")
        user = _object(_field(d, "Account", "user", (Mapping,)), "Account.user")
        tenant = _object(_field(d, "Account", "tenant", (Mapping,)), "Account.tenant")
        credential = _object(_field(d, "Account", "credential", (Mapping,)), "Account.credential")
        scopes = _list(d, "Account", "scopes")
        if not all(isinstance(s, str) for s in scopes):
            raise ProtocolError("Account.scopes holds a non-string")
        return cls(
            user_id=_str(user, "Account.user", "id"),
            email=_str(user, "Account.user", "email"),
            tenant_id=_str(tenant, "Account.tenant", "id"),
            tenant_name=_str(tenant, "Account.tenant", "name"),
            credential_kind=_str(credential, "Account.credential", "kind"),
            scopes=tuple(scopes),
            storage=Storage.from_json(d["storage"]) if d.get("storage") is not None else None,
        )


@dataclass(frozen=True, slots=True)
class RevisionUser:
    """Who published a revision."""

    id: str
    email: str


@dataclass(frozen=True, slots=True)
class Revision:
    """One version of a file: its content's size and SHA-256, when and by whom it was
    published, and through which client (``dropline-agent/0.1.0``, ``web``, ``api_key``)."""

    rev: str
    size: int
    sha256: str
    mtime: float | None
    created_at: float
    user: RevisionUser | None
    client: str | None
    current: bool

    @classmethod
    def from_json(cls, doc: object) -> Revision:
        r = "Revision"
        d = _object(doc, r)
        user_doc = _field(d, r, "user", (Mapping, type(None)))
        user = None
        if user_doc is not None:
            user = RevisionUser(
                id=_str(user_doc, "Revision.user", "id"),
                email=_str(user_doc, "Revision.user", "email"),
            )
        return cls(
            rev=_str(d, r, "rev"),
            size=_int(d, r, "size"),
            sha256=_str(d, r, "sha256"),
            mtime=_opt_number(d, r, "mtime"),
            created_at=_number(d, r, "created_at"),
            user=user,
            client=_opt_str(d, r, "client"),
            current=bool(_field(d, r, "current", (bool,))),
        )


@dataclass(frozen=True, slots=True)
class RevisionPage:
    """One page of a file's revisions, newest first."""

    revisions: tuple[Revision, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, doc: object) -> RevisionPage:
        d = _object(doc, "RevisionPage")
        rows = _list(d, "RevisionPage", "revisions")
        return cls(
            revisions=tuple(Revision.from_json(row) for row in rows),
            next_cursor=_opt_str(d, "RevisionPage", "next_cursor"),
        )


@dataclass(frozen=True, slots=True)
class TrashItem:
    """Something a person deleted: a file, or a folder that comes back with ``files``
    files under it. ``path_taken``: something live is at ``path`` now, so bringing it
    back needs a new place."""

    id: str
    name: str
    path: str
    type: EntryType
    size: int
    sha256: str | None
    rev: str
    trashed_at: float
    files: int
    path_taken: bool

    @property
    def is_folder(self) -> bool:
        return self.type is EntryType.FOLDER

    @classmethod
    def from_json(cls, doc: object) -> TrashItem:
        r = "TrashItem"
        d = _object(doc, r)
        return cls(
            id=_str(d, r, "id"),
            name=_str(d, r, "name"),
            path=_str(d, r, "path"),
            type=_entry_type(d, r),
            size=_int(d, r, "size"),
            sha256=_opt_str(d, r, "sha256"),
            rev=_str(d, r, "rev"),
            trashed_at=_number(d, r, "trashed_at"),
            files=_int(d, r, "files"),
            path_taken=bool(_field(d, r, "path_taken", (bool,))),
        )


@dataclass(frozen=True, slots=True)
class TrashPage:
    """One page of the trash, newest deletion first."""

    items: tuple[TrashItem, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, doc: object) -> TrashPage:
        d = _object(doc, "TrashPage")
        rows = _list(d, "TrashPage", "items")
        return cls(
            items=tuple(TrashItem.from_json(row) for row in rows),
            next_cursor=_opt_str(d, "TrashPage", "next_cursor"),
        )


@dataclass(frozen=True, slots=True)
class UploadSession:
    """A tus upload: ``url`` is what the server's ``Location`` said (keep it to resume)."""

    url: str
    offset: int
    length: int
    entry_id: str | None = None  # set when the creating POST already finished the upload
    rev: str | None = None

    @property
    def complete(self) -> bool:
        return self.entry_id is not None


@dataclass(frozen=True, slots=True)
class UploadResult:
    """The server's view of an upload after HEAD or PATCH."""

    offset: int
    length: int | None = None
    entry_id: str | None = None  # set once the last byte arrived and the file is published
    rev: str | None = None
    path: str | None = None  # from the Upload-Metadata a HEAD repeats
    sha256: str | None = None

    @property
    def complete(self) -> bool:
        return self.entry_id is not None
