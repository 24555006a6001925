"""Parameter and field types the routes share, so the OpenAPI document says what the
server checks: a path's syntax as a pattern the server also enforces, and the opaque
values only the server hands out (cursors, tus metadata) as named string formats.

The patterns mirror :mod:`dropline.server.files.names`: absolute, at most 128 deep, names
with no ``/``, ``\\`` or control character (Unicode ``Cc``), never ``.`` or ``..``. The
names module checks the same rules on every request and has the last word.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Query
from pydantic import Field

from dropline.server.files.names import MAX_DEPTH, MAX_NAME_BYTES, MAX_PATH_BYTES

# One character of a name, and one that is also not a dot.
_CHAR = r"[^/\\\x00-\x1f\x7f-\x9f]"
_NOT_DOT = r"[^./\\\x00-\x1f\x7f-\x9f]"
# Any name but "." and "..", spelled without look-ahead so every regex engine reads it.
# Byte limits cannot be patterns: a name keeps to 63 characters and a path to 1,024,
# which no UTF-8 spelling takes past 255 and 4,096 bytes (longer ones within the byte
# limits are accepted all the same).
NAME_PATTERN = rf"(?:{_NOT_DOT}|{_NOT_DOT}{_CHAR}|\.{_NOT_DOT}|{_CHAR}{{3,63}})"
PATH_PATTERN = rf"^(?:/{NAME_PATTERN}){{1,{MAX_DEPTH}}}$"
FOLDER_PATTERN = rf"^(?:/|(?:/{NAME_PATTERN}){{1,{MAX_DEPTH}}})$"
_PATTERN_PATH_CHARS = 1024
_PATTERN_NAME_CHARS = 63

_PATH_RULES = (
    f"an absolute path, at most {MAX_DEPTH} names deep; each name at most {MAX_NAME_BYTES} "
    f"bytes in UTF-8, the whole path at most {MAX_PATH_BYTES}; stored NFC-normalised"
)
PATH_DESCRIPTION = _PATH_RULES + "; not '/'"
FOLDER_DESCRIPTION = _PATH_RULES + "; '/' is your root folder"
NAME_DESCRIPTION = (
    f"one name: no '/', '\\' or control characters, not '.' or '..', at most "
    f"{MAX_NAME_BYTES} bytes in UTF-8"
)


def _documented(pattern: str, description: str, max_length: int) -> dict[str, Any]:
    # In the document only: the names module checks the same rules and answers with its
    # own problem type (invalid-name), which clients already rely on.
    return {"pattern": pattern, "maxLength": max_length, "description": description}


PATH_SCHEMA = _documented(PATH_PATTERN, PATH_DESCRIPTION, _PATTERN_PATH_CHARS)
FOLDER_SCHEMA = _documented(FOLDER_PATTERN, FOLDER_DESCRIPTION, _PATTERN_PATH_CHARS)
NAME_SCHEMA = _documented(rf"^{NAME_PATTERN}$", NAME_DESCRIPTION, _PATTERN_NAME_CHARS)


def path_field(**extra: Any) -> Any:
    """A pydantic field for an entry path (``/a/b.txt``)."""
    return Field(json_schema_extra=PATH_SCHEMA, **extra)


def folder_field(**extra: Any) -> Any:
    """A pydantic field for a folder path, where ``/`` is allowed."""
    return Field(json_schema_extra=FOLDER_SCHEMA, **extra)


def name_field(**extra: Any) -> Any:
    return Field(json_schema_extra=NAME_SCHEMA, **extra)


# Query parameters.
EntryPath = Annotated[str, Query(json_schema_extra=PATH_SCHEMA)]
FolderPath = Annotated[str | None, Query(json_schema_extra=FOLDER_SCHEMA)]

# Webhook and push targets. Whether the host resolves to addresses outbound calls may
# reach is checked when the URL is given (target-refused otherwise): no schema can say it.
TARGET_URL_SCHEMA: dict[str, Any] = {
    "format": "uri",
    "description": "an https URL whose host resolves to public addresses (plain http and "
    "private addresses only where the operator allows private targets); no user name or "
    "password in it",
}


# A network in CIDR notation: IPv4 in the pattern (IPv6 networks are accepted as well).
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])"
CIDR_SCHEMA: dict[str, Any] = {
    "pattern": rf"^(?:{_OCTET}\.){{3}}{_OCTET}(?:/(?:3[0-2]|[12]?[0-9]))?$",
    "description": "a network such as 192.0.2.0/24 (IPv6 too)",
}


# Opaque values: a client passes back what an earlier answer gave it. Each kind has its
# own format name so a tool generating requests can be taught what such a value is.
CURSOR_FORMATS = {
    "list": "dropline-list-cursor",
    "revisions": "dropline-revisions-cursor",
    "trash": "dropline-trash-cursor",
    "audit": "dropline-audit-cursor",
}


def cursor_query(kind: str) -> Any:
    return Query(
        description="the next_cursor of the previous page; a value the server did not give "
        "out is refused (400)",
        json_schema_extra={"format": CURSOR_FORMATS[kind]},
    )


# tus Upload-Metadata: its syntax is simple, but what it must hold (a valid path, in
# base64) is not something a pattern can say.
UPLOAD_METADATA_FORMAT = "dropline-upload-metadata"

ListCursor = Annotated[str | None, cursor_query("list")]
RevisionsCursor = Annotated[str | None, cursor_query("revisions")]
TrashCursor = Annotated[str | None, cursor_query("trash")]
AuditCursor = Annotated[str | None, cursor_query("audit")]

__all__ = [
    "CIDR_SCHEMA",
    "CURSOR_FORMATS",
    "FOLDER_PATTERN",
    "FOLDER_SCHEMA",
    "NAME_PATTERN",
    "NAME_SCHEMA",
    "PATH_PATTERN",
    "PATH_SCHEMA",
    "TARGET_URL_SCHEMA",
    "UPLOAD_METADATA_FORMAT",
    "AuditCursor",
    "EntryPath",
    "FolderPath",
    "ListCursor",
    "RevisionsCursor",
    "TrashCursor",
    "folder_field",
    "name_field",
    "path_field",
]
