"""Problem types and httpx exceptions mapped onto the SDK's exception tree."""

from __future__ import annotations

import email.utils

import httpx
import pytest

from dropline.sdk import errors
from dropline.sdk.errors import (
    AuthenticationError,
    AuthorizationError,
    CircuitOpenError,
    ConflictError,
    ContentDamagedError,
    CursorExpiredError,
    DroplineError,
    IntegrityError,
    InvalidNameError,
    NotFoundError,
    OffsetMismatch,
    PolicyDenied,
    PreconditionFailedError,
    ProtocolError,
    RangeNotSatisfiable,
    RateLimitedError,
    ServerError,
    StorageFullError,
    TooLargeError,
    UnavailableError,
    UploadExpiredError,
    ValidationError,
    from_response,
    from_transport_error,
    parse_retry_after,
    request_may_have_applied,
)


def problem(
    status: int, slug: str | None, detail: str | None = None, **headers: str
) -> httpx.Response:
    body: dict[str, object] = {"title": "T", "status": status}
    if slug is not None:
        body["type"] = f"https://dropline.dev/problems/{slug}"
    if detail is not None:
        body["detail"] = detail
    return httpx.Response(
        status,
        json=body,
        headers={"content-type": "application/problem+json", **headers},
        request=httpx.Request("GET", "http://127.0.0.1/api/v1/x"),
    )


# Every slug of docs/api.md's table, with the class it must become.
SLUGS = [
    ("bad-request", 400, ValidationError),
    ("validation", 400, ValidationError),
    ("invalid-name", 400, InvalidNameError),
    ("unauthenticated", 401, AuthenticationError),
    ("invalid-token", 401, AuthenticationError),
    ("insufficient-scope", 403, AuthorizationError),
    ("policy-denied", 403, PolicyDenied),
    ("not-found", 404, NotFoundError),
    ("already-exists", 409, ConflictError),
    ("conflict", 409, ConflictError),
    ("offset-mismatch", 409, OffsetMismatch),
    ("cursor-expired", 410, CursorExpiredError),
    ("upload-expired", 410, UploadExpiredError),
    ("precondition-failed", 412, PreconditionFailedError),
    ("tus-version", 412, PreconditionFailedError),
    ("too-large", 413, TooLargeError),
    ("unsupported-media-type", 415, ValidationError),
    ("range-not-satisfiable", 416, RangeNotSatisfiable),
    ("integrity", 422, IntegrityError),
    ("checksum-mismatch", 460, IntegrityError),
    ("unsupported-checksum", 400, ValidationError),
    ("rate-limited", 429, RateLimitedError),
    ("internal", 500, ServerError),
    ("content-damaged", 500, ContentDamagedError),
    ("insufficient-storage", 507, StorageFullError),
    ("unavailable", 503, UnavailableError),
]


@pytest.mark.parametrize(("slug", "status", "cls"), SLUGS)
def test_every_documented_problem_type_maps_to_its_class(
    slug: str, status: int, cls: type[DroplineError]
) -> None:
    err = from_response(problem(status, slug, "what happened"))
    assert type(err) is cls
    assert err.status == status
    assert err.problem_type == slug
    assert err.message == "what happened"
    assert err.title == "T"


def test_storage_problems_say_whether_trying_again_can_help() -> None:
    # No room on the server may pass (and a tus upload resumes); a damaged copy will not.
    full = from_response(problem(507, None))
    assert type(full) is StorageFullError and full.retryable
    assert "no room" in full.message
    damaged = from_response(problem(500, "content-damaged"))
    assert isinstance(damaged, ServerError) and not damaged.retryable


def test_slug_wins_over_status() -> None:
    # A 409 whose type says offset-mismatch is the more specific class, and a 410
    # cursor-expired is not a plain "gone".
    assert type(from_response(problem(409, "offset-mismatch"))) is OffsetMismatch
    assert type(from_response(problem(410, "cursor-expired"))) is CursorExpiredError


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, ValidationError),
        (401, AuthenticationError),
        (403, AuthorizationError),
        (404, NotFoundError),
        (409, ConflictError),
        (412, PreconditionFailedError),
        (413, TooLargeError),
        (422, IntegrityError),
        (429, RateLimitedError),
        (500, ServerError),
        (502, UnavailableError),
        (503, UnavailableError),
        (504, UnavailableError),
        (507, StorageFullError),
        (418, DroplineError),
    ],
)
def test_status_alone_maps_when_the_body_is_not_a_problem(status: int, cls: type) -> None:
    response = httpx.Response(
        status, text="<html>proxy error</html>", headers={"content-type": "text/html"}
    )
    err = from_response(response)
    assert type(err) is cls
    assert err.problem_type is None
    assert err.message  # a readable fallback, never empty
    assert err.title


def test_unknown_slug_falls_back_to_status() -> None:
    err = from_response(problem(404, "something-new"))
    assert type(err) is NotFoundError


@pytest.mark.parametrize(
    ("cls", "retryable"),
    [
        (RateLimitedError, True),
        (UnavailableError, True),
        (CircuitOpenError, True),
        (AuthenticationError, False),
        (AuthorizationError, False),
        (NotFoundError, False),
        (ConflictError, False),
        (PreconditionFailedError, False),
        (ValidationError, False),
        (IntegrityError, False),
        (TooLargeError, False),
        (ServerError, False),
    ],
)
def test_each_class_says_whether_it_is_retryable(cls: type[DroplineError], retryable: bool) -> None:
    assert cls("x").retryable is retryable


def test_titles_and_messages_are_ready_for_a_user() -> None:
    err = from_response(
        httpx.Response(401, headers={"content-type": "application/json"}, content=b"{}")
    )
    assert err.title == "Signed out"
    assert "Sign in again" in err.message
    assert str(err) == f"{err.title}: {err.message}"


def test_retry_after_in_seconds_and_as_http_date() -> None:
    assert from_response(problem(429, "rate-limited", **{"Retry-After": "7"})).retry_after == 7.0
    now = 1_800_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after(date, now=now) == pytest.approx(30.0)
    assert parse_retry_after(email.utils.formatdate(now - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.parametrize(
    ("exc", "cls", "sent"),
    [
        (httpx.ConnectError("refused"), UnavailableError, False),
        (httpx.ConnectTimeout("slow"), UnavailableError, False),
        (httpx.PoolTimeout("busy"), UnavailableError, False),
        (httpx.ReadTimeout("slow"), UnavailableError, True),
        (httpx.ReadError("reset"), UnavailableError, True),
        (httpx.RemoteProtocolError("closed"), UnavailableError, True),
        (httpx.UnsupportedProtocol("ftp"), ValidationError, True),
        (httpx.InvalidURL("bad"), ValidationError, True),
        (httpx.LocalProtocolError("bad header"), ProtocolError, True),
    ],
)
def test_httpx_errors_become_sdk_errors(exc: Exception, cls: type, sent: bool) -> None:
    err = from_transport_error(exc)
    assert type(err) is cls
    assert err.request_sent is sent
    # Whether a non-idempotent call may be replayed follows from "was it sent".
    assert request_may_have_applied(err) is sent


def test_rate_limit_and_503_certainly_did_nothing() -> None:
    assert not request_may_have_applied(from_response(problem(429, "rate-limited")))
    assert not request_may_have_applied(from_response(problem(503, "unavailable")))
    assert request_may_have_applied(from_response(problem(504, None)))


def test_tree_drawn_in_the_docstring_matches_the_classes() -> None:
    doc = errors.__doc__ or ""
    for name in dir(errors):
        obj = getattr(errors, name)
        if isinstance(obj, type) and issubclass(obj, DroplineError):
            assert name in doc, f"{name} is missing from the drawn tree"
