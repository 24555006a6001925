"""``DROPLINE_BLOB_URL``: where blobs live, and the store that keeps them there.

``file:///PATH`` (the default: the ``blobs`` folder of the data directory) keeps them on
local disk (``storage.blobs``); ``s3://BUCKET/PREFIX`` in an S3-compatible object store
(``storage.s3_blobs``), its endpoint and credentials from the standard AWS variables and
files, never from the URL. A bad value is refused at startup with a message that says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from dropline.server.storage.blobs import LocalBlobStore, SweptBlobStore

ENV_BLOB_URL = "DROPLINE_BLOB_URL"
# S3's bucket naming rules (3-63 lowercase letters, digits, dots and hyphens).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_PART = re.compile(r"^[A-Za-z0-9._-]+$")


class InvalidBlobUrl(ValueError):
    """``DROPLINE_BLOB_URL`` cannot be used; the message says what is wrong."""

    def __init__(self, url: str, why: str) -> None:
        super().__init__(
            f"{ENV_BLOB_URL}={url!r} is not usable: {why} "
            "(use file:///ABSOLUTE/PATH or s3://BUCKET/PREFIX)"
        )


@dataclass(frozen=True, slots=True)
class BlobLocation:
    """A parsed blob URL: a local folder (``path``) or a bucket and a key prefix."""

    scheme: str  # "file" or "s3"
    path: Path | None = None
    bucket: str = ""
    prefix: str = ""


def parse_blob_url(url: str) -> BlobLocation:
    try:
        parts = urlsplit(url.strip())
    except ValueError as exc:
        raise InvalidBlobUrl(url, str(exc)) from None
    if parts.query or parts.fragment:
        raise InvalidBlobUrl(url, "it may not have a query or a fragment")
    if parts.username is not None or parts.password is not None:
        raise InvalidBlobUrl(
            url, "credentials never go in the URL; they come from the AWS variables or files"
        )
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidBlobUrl(url, "a file URL names a local folder: file:///ABSOLUTE/PATH")
        path = Path(unquote(parts.path))
        if not path.is_absolute() or ".." in path.parts:
            raise InvalidBlobUrl(url, "the folder must be an absolute path")
        return BlobLocation("file", path=path)
    if parts.scheme == "s3":
        bucket = parts.netloc
        if not _BUCKET.match(bucket) or ".." in bucket:
            raise InvalidBlobUrl(url, f"{bucket!r} is not a valid bucket name")
        segments = [s for s in parts.path.split("/") if s]
        for segment in segments:
            if not _PREFIX_PART.match(segment) or segment in {".", ".."}:
                raise InvalidBlobUrl(
                    url, f"the prefix part {segment!r} may hold only letters, digits and . _ -"
                )
        return BlobLocation("s3", bucket=bucket, prefix="/".join(segments))
    raise InvalidBlobUrl(url, f"the scheme {parts.scheme or '(none)'!r} is not file or s3")


def open_blob_store(url: str) -> SweptBlobStore:
    """The store ``url`` names (not yet wrapped for encryption at rest)."""
    location = parse_blob_url(url)
    if location.scheme == "s3":
        from dropline.server.storage.s3_blobs import S3BlobStore  # boto3 only when used

        return S3BlobStore(location.bucket, location.prefix)
    assert location.path is not None
    location.path.mkdir(parents=True, exist_ok=True)
    return LocalBlobStore(location.path)


STAGING = "staging"


@dataclass(frozen=True, slots=True)
class Stores:
    """Where a server keeps blobs, and uploads in progress when that is not its own disk."""

    blobs: SweptBlobStore
    # Parts of uploads in progress (``uploads.shared_staging``): under ``<prefix>/staging``
    # of an object store, for any node to go on; None on local disk, where each upload is
    # staged in the data directory.
    staging: SweptBlobStore | None


def open_stores(url: str) -> Stores:
    """The stores ``url`` names (not yet wrapped for encryption at rest). In an object
    store both share one client: one connection pool, and one load of its service model."""
    location = parse_blob_url(url)
    if location.scheme != "s3":
        return Stores(open_blob_store(url), None)
    from dropline.server.storage.s3_blobs import S3BlobStore, s3_client

    client = s3_client()
    prefix = f"{location.prefix}/{STAGING}" if location.prefix else STAGING
    return Stores(
        S3BlobStore(location.bucket, location.prefix, client),
        S3BlobStore(location.bucket, prefix, client),
    )


__all__ = [
    "ENV_BLOB_URL",
    "BlobLocation",
    "InvalidBlobUrl",
    "Stores",
    "open_blob_store",
    "open_stores",
    "parse_blob_url",
]
