"""What a transfer request may say: the destinations, their limits and checks, and the
parts of a request that make it "the same request" for ``Idempotency-Key``.

Pydantic models only; :mod:`dropline.server.transfers.service` stores and runs what passes them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

MAX_FILES = 100
DEFAULT_LINK_SECONDS = 7 * 24 * 3600
MAX_LINK_SECONDS = 365 * 24 * 3600
MAX_PUSH_HEADERS = 20
# Headers the push sets itself, or that would break the request if a caller chose them.
RESERVED_PUSH_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "te", "upgrade", "expect"}
)
NAME_PLACEHOLDER = "{name}"


class FolderDestination(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["folder"]
    path: str = Field(min_length=1, max_length=4096)
    mode: Literal["copy", "move"] = "copy"
    # What to do when the name is taken: "rename" adds " (2)", "overwrite" makes a new
    # revision (the old one is kept), "fail" stops the transfer.
    on_conflict: Literal["rename", "overwrite", "fail"] = "rename"


class InboxDestination(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["inbox"]
    recipient: str = Field(min_length=3, max_length=320)


class LinkDestination(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["link"]
    expires_in: int | None = Field(default=None, ge=1, le=MAX_LINK_SECONDS)
    max_downloads: int | None = Field(default=None, ge=1, le=1_000_000)
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    allowed_cidrs: list[str] | None = Field(default=None, max_length=100)

    @field_validator("allowed_cidrs")
    @classmethod
    def _networks(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        out = []
        for cidr in value:
            try:
                out.append(str(ipaddress.ip_network(cidr.strip(), strict=False)))
            except ValueError:
                raise ValueError(f"not a network: {cidr!r}") from None
        if not out:
            raise ValueError("give at least one network, or leave allowed_cidrs out")
        return out


class PushDestination(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["push"]
    # "{name}" in the URL is replaced by each file's name.
    url: str = Field(min_length=8, max_length=2048)
    method: Literal["PUT", "POST"] = "PUT"
    # Sent with every request (an endpoint's own token, say); stored, never shown again.
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_PUSH_HEADERS:
            raise ValueError(f"at most {MAX_PUSH_HEADERS} headers")
        for name, text in value.items():
            if not name or not name.isascii() or any(c in name for c in " :\r\n\t"):
                raise ValueError(f"not a header name: {name!r}")
            if name.lower() in RESERVED_PUSH_HEADERS:
                raise ValueError(f"the {name} header is set by the server")
            if any(c in text for c in "\r\n\0") or len(text) > 8192:
                raise ValueError(f"the value of {name} is not allowed")
        return value


Destination = Annotated[
    FolderDestination | InboxDestination | LinkDestination | PushDestination,
    Field(discriminator="type"),
]


class TransferRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    file_ids: list[str] = Field(min_length=1, max_length=MAX_FILES)
    destination: Destination


def push_host(url: str) -> str:
    """The host a push URL (with its ``{name}`` placeholder) goes to; "" when it has none."""
    try:
        return httpx.URL(url.replace(NAME_PLACEHOLDER, "file")).host
    except (httpx.InvalidURL, TypeError, ValueError):
        return ""


def request_fingerprint(body: TransferRequest) -> str:
    """What makes two POSTs "the same request" for Idempotency-Key. The password is
    left out: a fast hash of a low-entropy secret must not be stored."""
    doc = body.model_dump()
    dest = doc["destination"]
    if dest.get("password") is not None:
        dest["password"] = True
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def public_destination(dest: BaseModel) -> dict[str, Any]:
    doc = dest.model_dump(exclude_none=True)
    if isinstance(dest, LinkDestination):
        doc.pop("password", None)
        doc["password_protected"] = dest.password is not None
    if isinstance(dest, PushDestination):
        doc["headers"] = sorted(dest.headers)  # names only: values may be credentials
    return doc


__all__ = [
    "DEFAULT_LINK_SECONDS",
    "NAME_PLACEHOLDER",
    "FolderDestination",
    "InboxDestination",
    "LinkDestination",
    "PushDestination",
    "TransferRequest",
    "public_destination",
    "push_host",
    "request_fingerprint",
]
