"""The tus 1.0.0 wire details of uploads: protocol constants and the parsing of the
request headers (``Upload-Length``, ``Upload-Metadata``, ``Upload-Checksum``,
``Repr-Digest``), each turned into a clear problem when malformed."""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from dropline.server.files.names import join_path, normalize_name, normalize_path
from dropline.server.problems import Problem

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,checksum,termination,expiration"
CHECKSUMS: dict[str, Callable[[], Any]] = {"sha256": hashlib.sha256, "sha1": hashlib.sha1}
OFFSET_OCTET_STREAM = "application/offset+octet-stream"
MAX_METADATA_CHARS = 16 * 1024
MAX_NUMBER_DIGITS = 19

_REV = re.compile(r"^[0-9A-Za-z_-]{1,32}$")
_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True, slots=True)
class UploadTarget:
    """What ``Upload-Metadata`` asked for."""

    path: str
    sha256: str | None = None
    mtime: float | None = None
    if_rev: str | None = None


def parse_number(value: str | None, header: str) -> int | None:
    if value is None:
        return None
    text = value.strip()
    if not text or not text.isascii() or not text.isdigit() or len(text) > MAX_NUMBER_DIGITS:
        raise Problem("bad-request", f"{header} must be a non-negative integer")
    return int(text)


def parse_metadata(raw: str | None) -> dict[str, str]:
    """``Upload-Metadata``: comma-separated ``key base64(value)`` pairs (value optional)."""
    if raw is None or not raw.strip():
        return {}
    if len(raw) > MAX_METADATA_CHARS:
        raise Problem("bad-request", "Upload-Metadata is too long")
    result: dict[str, str] = {}
    for pair in raw.split(","):
        pair = pair.strip()
        if not pair:
            continue
        key, _, encoded = pair.partition(" ")
        if not key.isascii() or not key.isprintable() or key in result:
            raise Problem("bad-request", f"Upload-Metadata has a bad or repeated key {key!r}")
        try:
            value = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
        except (binascii.Error, ValueError):
            raise Problem(
                "bad-request", f"Upload-Metadata value of {key!r} is not base64 of UTF-8 text"
            ) from None
        result[key] = value
    return result


def target_from_metadata(meta: dict[str, str]) -> UploadTarget:
    if "path" in meta:
        path = normalize_path(meta["path"])
    elif "filename" in meta:
        parent = normalize_path(meta.get("parent_path") or "/", allow_root=True)
        path = join_path(parent, normalize_name(meta["filename"]))
    else:
        raise Problem("validation", "Upload-Metadata needs 'path' (or 'filename')")
    sha256 = meta.get("sha256")
    if sha256 is not None and not _SHA256.match(sha256):
        raise Problem("validation", "metadata 'sha256' must be 64 hex digits")
    mtime: float | None = None
    if "mtime" in meta:
        try:
            mtime = float(meta["mtime"])
        except ValueError:
            mtime = math.nan
        if not math.isfinite(mtime) or mtime < 0:
            raise Problem("validation", "metadata 'mtime' must be seconds since the epoch")
    if_rev = meta.get("if_rev")
    if if_rev is not None and not _REV.match(if_rev):
        raise Problem("validation", "metadata 'if_rev' must be a rev or 'none'")
    return UploadTarget(
        path=path, sha256=sha256.lower() if sha256 else None, mtime=mtime, if_rev=if_rev
    )


def parse_checksum(value: str | None) -> tuple[str, bytes] | None:
    """``Upload-Checksum: <algorithm> <base64 digest>``."""
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    algorithm = algorithm.lower()
    if algorithm not in CHECKSUMS:
        raise Problem(
            "unsupported-checksum",
            f"checksum algorithm {algorithm!r} is not supported; use sha256 or sha1",
        )
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise Problem("bad-request", "Upload-Checksum is not valid base64") from None
    if len(digest) != CHECKSUMS[algorithm]().digest_size:
        raise Problem("bad-request", f"Upload-Checksum is not a {algorithm} digest")
    return algorithm, digest


def parse_repr_digest(value: str | None) -> str | None:
    """Hex SHA-256 from ``Repr-Digest: sha-256=:<base64>:`` (RFC 9530): the whole file's
    digest, which a client that hashed the file while sending it declares on a PATCH.
    Members with other algorithms are ignored, as the RFC asks."""
    if value is None:
        return None
    for member in value.split(","):
        name, _, rest = member.strip().partition("=")
        if name.strip().lower() != "sha-256":
            continue
        rest = rest.strip()
        if len(rest) < 2 or rest[0] != ":" or rest[-1] != ":":
            raise Problem("bad-request", "Repr-Digest's sha-256 must be :<base64>:")
        try:
            raw = base64.b64decode(rest[1:-1], validate=True)
        except (binascii.Error, ValueError):
            raise Problem("bad-request", "Repr-Digest's sha-256 is not valid base64") from None
        if len(raw) != hashlib.sha256().digest_size:
            raise Problem("bad-request", "Repr-Digest's sha-256 is not a SHA-256 digest")
        return raw.hex()
    return None
