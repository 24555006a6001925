"""The SDK's exception tree, and the one place HTTP answers and httpx errors become it.

Every class carries a ``title`` and a ``message`` ready to show a user, and says
whether trying again later can help (``retryable``)::

    DroplineError                     base; title, message, retryable, status, problem_type
     ├── AuthenticationError          401: no credential, or unknown/expired/revoked
     ├── AuthorizationError           403: scope missing or forbidden
     │    └── PolicyDenied            403 policy-denied: a tenant policy forbids it
     ├── NotFoundError                404 (missing, or someone else's)
     │    └── UploadExpiredError      410 upload-expired: the tus upload is gone, start again
     ├── ConflictError                409 already-exists / conflict
     │    └── OffsetMismatch          409 offset-mismatch: ask the server for its offset
     ├── PreconditionFailedError      412: If-Match / if_rev is stale (also tus-version)
     ├── CursorExpiredError           410 cursor-expired: list again, then latest-cursor
     ├── TooLargeError                413
     ├── ValidationError              400 family, 415, 416, 428
     │    ├── InvalidNameError        400 invalid-name
     │    └── RangeNotSatisfiable     416
     ├── IntegrityError               422 integrity, 460 checksum-mismatch, local hash check
     ├── RateLimitedError             429, retryable, ``retry_after`` seconds
     ├── StorageFullError             507 insufficient-storage: the server has no room;
     │                                retryable (a tus upload resumes once it has)
     ├── UnavailableError             502/503/504, connection errors, timeouts; retryable
     │    └── CircuitOpenError        the circuit breaker refuses to call a failing server
     ├── ServerError                  500 and other 5xx: a server bug, not retried
     │    └── ContentDamagedError     500 content-damaged: the stored copy failed its check
     └── ProtocolError                the server's answer is not what the API promises

:func:`from_response` maps the problem ``type`` slug first and the status second;
:func:`from_transport_error` maps httpx's own exceptions, at ``dropline.sdk.wire.translating``,
the one boundary every request and download stream of ``dropline.sdk.client`` passes.
"""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

import httpx

PROBLEM_BASE = "https://dropline.dev/problems/"


class DroplineError(Exception):
    """Base of every SDK error: a user-readable ``title`` and ``message``."""

    default_title = "Dropline error"
    default_retryable = False
    # False only when the request certainly never reached the server (see dropline.sdk.client).
    request_sent: bool | None = None

    def __init__(
        self,
        message: str,
        *,
        title: str | None = None,
        retryable: bool | None = None,
        status: int | None = None,
        problem_type: str | None = None,
        problem: dict[str, Any] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.title = title or self.default_title
        self.message = message
        self.retryable = self.default_retryable if retryable is None else retryable
        self.status = status
        self.problem_type = problem_type  # the slug, e.g. "not-found"
        self.problem = problem or {}
        self.retry_after = retry_after

    def __str__(self) -> str:
        return f"{self.title}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(title={self.title!r}, message={self.message!r}, "
            f"status={self.status!r}, problem_type={self.problem_type!r})"
        )


class AuthenticationError(DroplineError):
    default_title = "Signed out"


class AuthorizationError(DroplineError):
    default_title = "Not allowed"


class PolicyDenied(AuthorizationError):
    default_title = "Blocked by policy"


class NotFoundError(DroplineError):
    default_title = "Not found"


class UploadExpiredError(NotFoundError):
    default_title = "Upload expired"


class ConflictError(DroplineError):
    default_title = "Conflict"


class OffsetMismatch(ConflictError):
    default_title = "Upload offset mismatch"


class PreconditionFailedError(DroplineError):
    default_title = "Changed meanwhile"


class CursorExpiredError(DroplineError):
    default_title = "Change feed position expired"


class TooLargeError(DroplineError):
    default_title = "Too large"


class ValidationError(DroplineError):
    default_title = "Invalid request"


class InvalidNameError(ValidationError):
    default_title = "Invalid name"


class RangeNotSatisfiable(ValidationError):
    default_title = "Range not satisfiable"


class IntegrityError(DroplineError):
    default_title = "Content does not match its checksum"


class RateLimitedError(DroplineError):
    default_title = "Too many requests"
    default_retryable = True


class StorageFullError(DroplineError):
    default_title = "Server storage full"
    default_retryable = True


class UnavailableError(DroplineError):
    default_title = "Server unreachable"
    default_retryable = True


class CircuitOpenError(UnavailableError):
    default_title = "Server unreachable"


class ServerError(DroplineError):
    default_title = "Server error"


class ContentDamagedError(ServerError):
    """The server found its stored copy damaged and sent none of it (or cut it short)."""

    default_title = "Stored content is damaged"


class ProtocolError(DroplineError):
    default_title = "Unexpected answer from the server"


# Problem slugs from docs/api.md; a slug the SDK does not know falls back to the status.
_BY_SLUG: dict[str, type[DroplineError]] = {
    "bad-request": ValidationError,
    "validation": ValidationError,
    "invalid-name": InvalidNameError,
    "unsupported-checksum": ValidationError,
    "unsupported-media-type": ValidationError,
    "range-not-satisfiable": RangeNotSatisfiable,
    "precondition-required": ValidationError,
    "method-not-allowed": ValidationError,
    "unauthenticated": AuthenticationError,
    "invalid-token": AuthenticationError,
    "forbidden": AuthorizationError,
    "insufficient-scope": AuthorizationError,
    "policy-denied": PolicyDenied,
    "not-found": NotFoundError,
    "already-exists": ConflictError,
    "conflict": ConflictError,
    "offset-mismatch": OffsetMismatch,
    "cursor-expired": CursorExpiredError,
    "upload-expired": UploadExpiredError,
    "precondition-failed": PreconditionFailedError,
    "tus-version": PreconditionFailedError,
    "too-large": TooLargeError,
    "integrity": IntegrityError,
    "checksum-mismatch": IntegrityError,
    "rate-limited": RateLimitedError,
    "target-refused": ValidationError,
    "idempotency-key-reused": ConflictError,
    "share-password": AuthenticationError,
    "share-expired": NotFoundError,
    "internal": ServerError,
    "content-damaged": ContentDamagedError,
    "insufficient-storage": StorageFullError,
    "unavailable": UnavailableError,
}

_BY_STATUS: dict[int, type[DroplineError]] = {
    400: ValidationError,
    401: AuthenticationError,
    403: AuthorizationError,
    404: NotFoundError,
    405: ValidationError,
    409: ConflictError,
    410: NotFoundError,
    412: PreconditionFailedError,
    413: TooLargeError,
    415: ValidationError,
    416: RangeNotSatisfiable,
    422: IntegrityError,
    428: ValidationError,
    429: RateLimitedError,
    460: IntegrityError,
    500: ServerError,
    502: UnavailableError,
    503: UnavailableError,
    504: UnavailableError,
    507: StorageFullError,
}

_FALLBACK_MESSAGES: dict[type[DroplineError], str] = {
    AuthenticationError: "The server did not accept the credentials. Sign in again.",
    AuthorizationError: "This account is not allowed to do that.",
    NotFoundError: "The file or folder does not exist (or is not yours).",
    ConflictError: "Something is already there, or the operation conflicts with it.",
    PreconditionFailedError: "It changed on the server since it was last seen.",
    RateLimitedError: "The server asked to slow down; trying again shortly.",
    UnavailableError: "The server is not answering; trying again shortly.",
    ServerError: "The server failed to handle the request.",
    IntegrityError: "The content did not match its SHA-256 checksum.",
    StorageFullError: "The server has no room for this now; trying again later.",
    ContentDamagedError: "The server's stored copy is damaged; ask its operator to restore it.",
}


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _problem_doc(response: httpx.Response) -> dict[str, Any]:
    content_type = response.headers.get("content-type", "")
    if "json" not in content_type:
        return {}
    try:
        doc = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _slug(problem: dict[str, Any]) -> str | None:
    kind = problem.get("type")
    if isinstance(kind, str) and kind.startswith(PROBLEM_BASE):
        return kind[len(PROBLEM_BASE) :]
    return None


def error_class(slug: str | None, status: int) -> type[DroplineError]:
    """The class for a problem ``slug`` (preferred) or, failing that, an HTTP ``status``."""
    if slug is not None and slug in _BY_SLUG:
        return _BY_SLUG[slug]
    if status in _BY_STATUS:
        return _BY_STATUS[status]
    if status >= 500:
        return ServerError
    return DroplineError


def _fallback_message(cls: type[DroplineError], status: int) -> str:
    for klass in cls.__mro__:
        if klass in _FALLBACK_MESSAGES:
            return _FALLBACK_MESSAGES[klass]
    return f"The server answered HTTP {status}."


def from_response(response: httpx.Response) -> DroplineError:
    """The error an unsuccessful response stands for. The body must have been read."""
    status = response.status_code
    problem = _problem_doc(response)
    slug = _slug(problem)
    cls = error_class(slug, status)
    detail = problem.get("detail")
    message = detail if isinstance(detail, str) and detail else _fallback_message(cls, status)
    title = problem.get("title")
    retry_after = parse_retry_after(response.headers.get("retry-after"))
    return cls(
        message,
        title=title if isinstance(title, str) and title else None,
        status=status,
        problem_type=slug,
        problem=problem,
        retry_after=retry_after,
    )


# httpx errors raised before a single byte of the request left this machine: a request
# that failed this way cannot have been applied, so even non-idempotent ones may be retried.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)

# Everything httpx raises; ``dropline.sdk.client`` catches exactly these at its boundary.
FOREIGN_ERRORS = (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError)


def from_transport_error(exc: Exception) -> DroplineError:
    """The error an httpx exception stands for (network failures, timeouts, bad URLs)."""
    err: DroplineError
    if isinstance(exc, httpx.TimeoutException):
        err = UnavailableError(
            f"The server did not answer in time ({type(exc).__name__}).",
            title="Server not answering",
        )
    elif isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError):
        err = UnavailableError(f"Could not reach the server ({type(exc).__name__}: {exc}).")
    elif isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        err = ValidationError(f"The server address is not usable: {exc}.", title="Bad address")
    else:
        err = ProtocolError(f"{type(exc).__name__}: {exc}")
    err.request_sent = not isinstance(exc, _NOT_SENT)
    return err


def request_may_have_applied(err: DroplineError) -> bool:
    """False when the server certainly did nothing: safe to replay even a non-idempotent call."""
    if isinstance(err, RateLimitedError | CircuitOpenError):
        return False
    if err.status == 503:
        return False  # the server refused before doing the work (starting or overloaded)
    return err.request_sent is not False
