"""Small tus helpers for the server tests: metadata encoding and whole-file uploads."""

from __future__ import annotations

import base64
import hashlib

import httpx

OCTETS = "application/offset+octet-stream"


def metadata(**values: object) -> str:
    return ",".join(
        f"{key} {base64.b64encode(str(value).encode()).decode()}" for key, value in values.items()
    )


def checksum(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm} {base64.b64encode(hashlib.new(algorithm, data).digest()).decode()}"


def create(client: httpx.Client, length: int, **meta: object) -> httpx.Response:
    return client.post(
        "/api/v1/uploads",
        headers={"Upload-Length": str(length), "Upload-Metadata": metadata(**meta)},
    )


def patch(
    client: httpx.Client, location: str, offset: int, data: bytes, **headers: str
) -> httpx.Response:
    return client.patch(
        location,
        headers={"Upload-Offset": str(offset), "Content-Type": OCTETS, **headers},
        content=data,
    )


def upload(client: httpx.Client, path: str, data: bytes, **meta: object) -> httpx.Response:
    """One POST with the whole body (creation-with-upload), sha256 declared."""
    meta.setdefault("sha256", hashlib.sha256(data).hexdigest())
    return client.post(
        "/api/v1/uploads",
        headers={
            "Upload-Length": str(len(data)),
            "Upload-Metadata": metadata(path=path, **meta),
            "Content-Type": OCTETS,
        },
        content=data,
    )


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
