"""RFC 9457 problem details: the one exception type route code raises.

Every error the API returns is ``application/problem+json`` with a stable ``type``
URI; the list lives in :data:`PROBLEM_TYPES` and in ``docs/api.md``.
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://dropline.dev/problems/"

# slug -> (HTTP status, title). The slugs are part of the API contract.
PROBLEM_TYPES: dict[str, tuple[int, str]] = {
    "bad-request": (400, "Bad request"),
    "validation": (400, "Invalid input"),
    "invalid-name": (400, "Invalid name or path"),
    "unauthenticated": (401, "Authentication required"),
    "invalid-token": (401, "Invalid credentials"),
    "forbidden": (403, "Forbidden"),
    "insufficient-scope": (403, "Insufficient scope"),
    "policy-denied": (403, "Denied by policy"),
    "not-found": (404, "Not found"),
    "method-not-allowed": (405, "Method not allowed"),
    "conflict": (409, "Conflict"),
    "already-exists": (409, "Already exists"),
    "offset-mismatch": (409, "Upload offset mismatch"),
    "cursor-expired": (410, "Cursor expired; rescan"),
    "upload-expired": (410, "Upload expired"),
    "precondition-failed": (412, "Precondition failed"),
    "precondition-required": (428, "Precondition required"),
    "too-large": (413, "Too large"),
    "unsupported-media-type": (415, "Unsupported media type"),
    "range-not-satisfiable": (416, "Range not satisfiable"),
    "integrity": (422, "Content does not match its checksum"),
    "checksum-mismatch": (460, "Checksum mismatch"),
    "unsupported-checksum": (400, "Unsupported checksum algorithm"),
    "tus-version": (412, "Unsupported tus version"),
    "rate-limited": (429, "Too many requests"),
    "banned": (429, "Too many failed sign-ins"),
    "target-refused": (400, "Target address refused"),
    "idempotency-key-reused": (422, "Idempotency-Key reused for another request"),
    "share-password": (401, "Share password required or wrong"),
    "share-expired": (410, "Share link expired"),
    "internal": (500, "Internal server error"),
    "content-damaged": (500, "Stored content is damaged"),
    "unavailable": (503, "Service unavailable"),
    "insufficient-storage": (507, "Insufficient storage"),
}


class Problem(Exception):
    """An API error rendered as problem+json. ``slug`` selects type, status and title."""

    def __init__(
        self,
        slug: str,
        detail: str | None = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        default_status, title = PROBLEM_TYPES[slug]
        self.slug = slug
        self.status = status or default_status
        self.title = title
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra
        super().__init__(detail or title)

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.slug

    def body(self, instance: str | None = None) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": self.type_uri, "title": self.title, "status": self.status}
        if self.detail:
            doc["detail"] = self.detail
        if instance:
            doc["instance"] = instance
        doc.update(self.extra)
        return doc
