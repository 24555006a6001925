"""The API's wire records (entries, changes, upload sessions) and their parsing from JSON.

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


@dataclass(frozen=True, slots=True)
class Account:
    """``GET /api/v1/me``: who the credential belongs to."""

    user_id: str
    email: str
    tenant_id: str
    tenant_name: str
    credential_kind: str
    scopes: tuple[str, ...]

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
