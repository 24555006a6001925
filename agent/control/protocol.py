"""The control protocol's messages: framing limits, envelopes, per-operation arguments.

Version 1, JSON lines over a local socket (docs/control-protocol.md is the contract).
This module imports nothing of the engine so the tray can use it on its own.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, NotRequired, TypedDict

from pydantic import BaseModel, ConfigDict, Field, ValidationError

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = (1,)
MAX_LINE_BYTES = 1024 * 1024  # one message, newline excluded
MAX_ID = 2**53 - 1  # ids survive a round trip through any JSON number type

# Error codes carried in ``{"ok": false, "error": {"code": ...}}``.
BAD_JSON = "bad-json"
TOO_LARGE = "too-large"
BAD_REQUEST = "bad-request"
UNKNOWN_OP = "unknown-op"
UNSUPPORTED_VERSION = "unsupported-version"
LOCKED = "locked"
NOT_ALLOWED = "not-allowed"
NOT_FOUND = "not-found"
INVALID = "invalid"
CONFLICT = "conflict"
UNAVAILABLE = "unavailable"
INTERNAL = "internal"

LOCKED_MESSAGE = "set by your administrator"


class ControlError(Exception):
    """An error reply: a stable ``code``, a sentence for the user, optional details."""

    def __init__(self, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, **self.details}


class _Args(BaseModel):
    # strict: "1" is not 1 and true is not 1; forbid: a misspelt key is an error, not ignored.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class NoArgs(_Args):
    pass


class FolderArg(_Args):
    folder: str | None = Field(default=None, min_length=1, max_length=4096)


Mode = Literal["two-way", "upload-only", "download-only"]
AfterUploadName = Literal["keep", "archive", "remove"]
LocalEditsName = Literal["restore", "report"]
DirectionName = Literal["up", "down"]
ResultName = Literal["ok", "failed", "conflict", "skipped"]


class FolderAddArgs(_Args):
    local: str = Field(min_length=1, max_length=4096)
    remote: str = Field(default="/", min_length=1, max_length=4096)
    mode: Mode = "two-way"
    ignore: list[str] = Field(default_factory=list, max_length=1000)
    after_upload: AfterUploadName = "keep"
    archive_dir: str | None = Field(default=None, min_length=1, max_length=4096)
    local_edits: LocalEditsName = "restore"


class FolderRemoveArgs(_Args):
    local: str = Field(min_length=1, max_length=4096)


class HistoryArgs(_Args):
    limit: int = Field(default=100, ge=1, le=1000)
    before_id: int | None = Field(default=None, ge=1)
    folder: str | None = Field(default=None, max_length=4096)
    direction: DirectionName | None = None
    result: ResultName | None = None
    search: str | None = Field(default=None, max_length=1000)
    since: float | None = None
    until: float | None = None


class IssueArgs(_Args):
    id: int = Field(ge=0)


class SigninStartArgs(_Args):
    device: bool = False


LocalPath = Annotated[str, Field(min_length=1, max_length=4096)]
ServerId = Annotated[str, Field(min_length=1, max_length=200)]  # a rev or a trash item id
Keep = Literal["both", "mine", "theirs"]


class PathArgs(_Args):
    path: LocalPath  # a local absolute path inside a sync folder


class VersionArgs(_Args):
    path: LocalPath
    rev: ServerId


class TrashListArgs(_Args):
    folder: str | None = Field(default=None, min_length=1, max_length=4096)
    search: str | None = Field(default=None, max_length=1000)


class TrashRestoreArgs(_Args):
    id: ServerId
    path: LocalPath | None = None


class ConflictResolveArgs(_Args):
    id: int = Field(ge=0)
    keep: Keep


class SettingsSetArgs(_Args):
    key: str = Field(min_length=1, max_length=200)
    # The value's type depends on the key; the agent's config validation checks it.
    value: bool | int | float | str | None


EventName = Literal[
    "state", "progress", "history", "issue_raised", "issue_cleared", "signin", "config"
]
ALL_EVENTS: tuple[EventName, ...] = (
    "state",
    "progress",
    "history",
    "issue_raised",
    "issue_cleared",
    "signin",
    "config",
)


class SubscribeArgs(_Args):
    events: list[EventName] | None = None  # None: every event


OPS: dict[str, type[_Args]] = {
    "hello": NoArgs,
    "status": NoArgs,
    "pause": FolderArg,
    "resume": FolderArg,
    "sync_now": FolderArg,
    "folders.list": NoArgs,
    "folders.add": FolderAddArgs,
    "folders.remove": FolderRemoveArgs,
    "history.query": HistoryArgs,
    "issues.list": NoArgs,
    "issues.retry": IssueArgs,
    "issues.dismiss": IssueArgs,
    "signin.start": SigninStartArgs,
    "signin.state": NoArgs,
    "signout": NoArgs,
    "settings.get": NoArgs,
    "settings.set": SettingsSetArgs,
    "subscribe": SubscribeArgs,
    "versions.list": PathArgs,
    "versions.restore": VersionArgs,
    "versions.open_copy": VersionArgs,
    "trash.list": TrashListArgs,
    "trash.restore": TrashRestoreArgs,
    "conflicts.resolve": ConflictResolveArgs,
}


class Request(BaseModel):
    """A parsed, validated request."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    id: int
    op: str
    args: Any


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def decode_line(line: bytes) -> Any:
    """JSON from one line, or :class:`ControlError` ``bad-json``."""
    try:
        return json.loads(line.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ControlError(BAD_JSON, f"not a JSON message: {_short(exc)}") from None


def parse_request(line: bytes) -> Request:
    """Validate one request line. Errors carry the request's ``id`` when it was readable."""
    obj = decode_line(line)
    if not isinstance(obj, dict):
        raise ControlError(BAD_REQUEST, "a request is a JSON object")
    raw_id = obj.get("id")
    req_id = raw_id if _valid_id(raw_id) else None
    details: dict[str, Any] = {"id": req_id}
    if not _valid_id(raw_id):
        raise ControlError(BAD_REQUEST, f"'id' must be an integer from 0 to {MAX_ID}", **details)
    unknown = set(obj) - {"v", "id", "op", "args"}
    if unknown:
        raise ControlError(
            BAD_REQUEST, f"unknown field(s): {', '.join(sorted(unknown))}", **details
        )
    version = obj.get("v")
    if version not in SUPPORTED_VERSIONS or isinstance(version, bool):
        raise ControlError(
            UNSUPPORTED_VERSION,
            f"protocol version {version!r} is not supported",
            supported=list(SUPPORTED_VERSIONS),
            **details,
        )
    op = obj.get("op")
    if not isinstance(op, str):
        raise ControlError(BAD_REQUEST, "'op' must be a string", **details)
    model = OPS.get(op)
    if model is None:
        raise ControlError(UNKNOWN_OP, f"unknown operation {op[:80]!r}", **details)
    raw_args = obj.get("args", {})
    if not isinstance(raw_args, dict):
        raise ControlError(BAD_REQUEST, "'args' must be an object", **details)
    try:
        args = model.model_validate(raw_args)
    except ValidationError as exc:
        raise ControlError(BAD_REQUEST, _validation_message(exc), **details) from None
    assert isinstance(raw_id, int)
    return Request(id=raw_id, op=op, args=args)


def _valid_id(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_ID


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "args"
        parts.append(f"args.{where}: {err['msg']}")
    return "; ".join(parts)


def _short(exc: BaseException) -> str:
    return str(exc)[:200]


def encode(message: dict[str, Any]) -> bytes:
    """One message as a line. Non-ASCII stays readable; the newline is the frame."""
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n"


def request(req_id: int, op: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": req_id, "op": op}
    if args:
        msg["args"] = args
    return msg


def ok_reply(req_id: int, result: dict[str, Any]) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "id": req_id, "ok": True, "result": result}


def error_reply(req_id: int | None, error: ControlError) -> dict[str, Any]:
    body = error.to_json()
    body.pop("id", None)
    return {"v": PROTOCOL_VERSION, "id": req_id, "ok": False, "error": body}


def event_message(name: EventName, data: dict[str, Any]) -> dict[str, Any]:
    return {"v": PROTOCOL_VERSION, "event": name, "data": data}


# Wire shapes of results and events, for clients that type-check (the tray).


class FolderStatusJSON(TypedDict):
    local: str
    remote: str
    mode: str
    state: str
    pending: int
    last_error: str | None


class StatusJSON(TypedDict):
    state: str
    folders: list[FolderStatusJSON]
    issues: int
    uploading: int
    downloading: int
    bytes_left: int
    signed_in: bool
    server_url: str | None
    account: str | None


class FolderJSON(TypedDict):
    local: str
    remote: str
    mode: str
    ignore: list[str]
    after_upload: str
    archive_dir: str | None
    local_edits: str
    locked: bool


class HistoryRowJSON(TypedDict):
    id: int
    time: float
    folder: str
    path: str
    direction: str
    size: int
    duration: float
    result: str
    error: str | None


class IssueJSON(TypedDict):
    id: int
    folder: str
    path: str
    kind: str
    message: str
    hint: str
    since: float
    retry_at: float | None
    related_paths: list[str]


class ProgressJSON(TypedDict):
    transfer_id: str
    folder: str
    path: str
    direction: str
    bytes_done: int
    bytes_total: int
    bytes_per_second: float


class SigninJSON(TypedDict):
    state: str  # "signed_in", "signed_out", "pending", "failed"
    method: str | None  # "api_key", "oauth" or None
    url: NotRequired[str | None]
    user_code: NotRequired[str | None]
    error: NotRequired[str | None]


class SettingJSON(TypedDict):
    value: Any
    locked: bool


class EntryJSON(TypedDict):
    """A file or folder on the server (the API's Entry)."""

    id: str
    name: str
    path: str
    type: str  # "file" or "folder"
    size: int
    sha256: str | None
    rev: str
    mtime: float | None
    parent_id: str | None


class RevisionUserJSON(TypedDict):
    id: str
    email: str


class RevisionJSON(TypedDict):
    """One version of a file (the API's Revision)."""

    rev: str
    size: int
    sha256: str
    mtime: float | None
    created_at: float
    user: RevisionUserJSON | None
    client: str | None  # "dropline-agent/0.1.0", "web", "api_key", ... or None
    current: bool


class VersionedFileJSON(TypedDict):
    path: str  # local
    remote: str
    id: str


class VersionsJSON(TypedDict):
    """``versions.list``: the file, and its revisions newest first."""

    file: VersionedFileJSON
    revisions: list[RevisionJSON]


class TrashItemJSON(TypedDict):
    """A deleted file or folder (the API's TrashItem), with where it comes back locally."""

    id: str
    name: str
    path: str
    type: str
    size: int
    sha256: str | None
    rev: str
    trashed_at: float
    files: int
    path_taken: bool
    folder: str  # the local sync folder it belongs to
    local: str  # the local path it comes back to
