"""``GET /api/v1/audit-events``: the caller's tenant's audit trail, filtered and paged,
as JSON, NDJSON or CSV (``Accept`` header, or ``?format=`` which wins)."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from dropline.server.audit import trail
from dropline.server.http.auth import require
from dropline.server.http.routes.params import AuditCursor
from dropline.server.identity.accounts import Principal
from dropline.server.problems import Problem

router = APIRouter(prefix="/api/v1", tags=["audit"])

NDJSON = "application/x-ndjson"
CSV = "text/csv"
CURSOR_HEADER = "Dropline-Next-Cursor"
# What _when reads, as a pattern for the document: epoch seconds, or an ISO 8601 time
# with its offset (the pattern keeps to days 01-28 so every match is a real date).
_WHEN_PATTERN = (
    r"^(?:-?[0-9]{1,15}(?:\.[0-9]{1,6})?"
    r"|[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1[0-9]|2[0-8])"
    r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
    r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9]))$"
)


def _when(value: str | None, name: str) -> float | None:
    """Seconds since the epoch, or an ISO 8601 time with its offset."""
    if value is None or value == "":
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise Problem(
            "validation", f"{name} must be epoch seconds or an ISO 8601 time, got {value!r}"
        ) from None
    if parsed.tzinfo is None:
        raise Problem("validation", f"{name} needs a time zone offset (such as Z)")
    return parsed.timestamp()


def encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"a1:{seq}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, _, seq = text.partition(":")
        if version != "a1":
            raise ValueError(version)
        return int(seq)
    except (ValueError, UnicodeDecodeError):
        raise Problem("validation", "cursor is not one this server gave out") from None


def _format(request: Request, fmt: str | None) -> str:
    if fmt:
        if fmt not in ("json", "ndjson", "csv"):
            raise Problem("validation", "format must be json, ndjson or csv")
        return fmt
    accept = request.headers.get("accept", "")
    if NDJSON in accept:
        return "ndjson"
    if CSV in accept:
        return "csv"
    return "json"


@router.get("/audit-events")
def audit_events(
    request: Request,
    principal: Annotated[Principal, Depends(require("audit:read"))],
    since: Annotated[
        str | None,
        Query(
            description="from (inclusive): epoch or ISO 8601",
            json_schema_extra={"pattern": _WHEN_PATTERN},
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(
            description="to (exclusive): epoch or ISO 8601",
            json_schema_extra={"pattern": _WHEN_PATTERN},
        ),
    ] = None,
    actor: str | None = None,
    action: Annotated[str | None, Query(description="exact, or a prefix ending in '.'")] = None,
    outcome: Annotated[str | None, Query(pattern="^(success|failure|denied)$")] = None,
    resource: Annotated[str | None, Query(description="prefix")] = None,
    cursor: AuditCursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    format: Annotated[
        str | None, Query(alias="format", json_schema_extra={"enum": ["json", "ndjson", "csv"]})
    ] = None,
) -> Response:
    flt = trail.AuditFilter(
        since=_when(since, "since"),
        until=_when(until, "until"),
        actor=actor,
        action=action,
        outcome=outcome,
        resource=resource,
    )
    after = decode_cursor(cursor) if cursor else 0
    with request.app.state.db.read() as conn:
        rows, next_seq = trail.query(conn, principal.tenant_id, flt, after, limit)
    next_cursor = encode_cursor(next_seq) if next_seq is not None else None
    headers = {CURSOR_HEADER: next_cursor} if next_cursor else {}
    kind = _format(request, format)
    if kind == "ndjson":
        body = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
        return Response(body, media_type=NDJSON, headers=headers)
    if kind == "csv":
        return Response(_csv(rows), media_type="text/csv; charset=utf-8", headers=headers)
    return JSONResponse({"events": rows, "next_cursor": next_cursor}, headers=headers)


def _cell(value: Any) -> Any:
    # A cell starting with = + - @ is a formula to a spreadsheet: a file path or an
    # email an attacker chose must stay text when an admin opens the export.
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value


def _csv(rows: list[dict[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(trail.PUBLIC_FIELDS), lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        cells = {**row, "detail": json.dumps(row["detail"], separators=(",", ":"))}
        writer.writerow({k: _cell(v) for k, v in cells.items()})
    return out.getvalue()
