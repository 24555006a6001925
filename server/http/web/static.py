"""The web client's static files (its scripts, styles and the vendored tus-js-client),
served from the package itself under ``/web/static/``: no CDN, no build step.

Each URL carries the file's content hash (``?v=``), so a file can be cached for a
year and a new release is fetched at once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi.responses import Response

from dropline.server.problems import Problem

PREFIX = "/web/static/"
TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".txt": "text/plain; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    digest: str


@cache
def _assets() -> dict[str, Asset]:
    """Every servable file by its path under static/ (read once; the set is fixed)."""
    root = resources.files("dropline.server.http.web") / "static"
    found: dict[str, Asset] = {}
    pending = [(root, "")]
    while pending:
        folder, prefix = pending.pop()
        for item in folder.iterdir():
            name = prefix + item.name
            if item.is_dir():
                pending.append((item, name + "/"))
                continue
            suffix = "." + item.name.rsplit(".", 1)[-1] if "." in item.name else ""
            content_type = TYPES.get(suffix)
            if content_type is None:
                continue  # licence and version notes ship beside the code, not served
            body = item.read_bytes()
            found[name] = Asset(body, content_type, hashlib.sha256(body).hexdigest()[:16])
    return found


def asset_url(name: str) -> str:
    asset = _assets().get(name)
    if asset is None:
        raise KeyError(f"no static file {name!r}")
    return f"{PREFIX}{name}?v={asset.digest}"


def serve(name: str, if_none_match: str | None) -> Response:
    asset = _assets().get(name)
    if asset is None:
        raise Problem("not-found", "no such file")
    etag = f'"{asset.digest}"'
    headers = {
        "ETag": etag,
        "Cache-Control": "public, max-age=31536000, immutable",
        "X-Content-Type-Options": "nosniff",
    }
    if if_none_match == etag:
        return Response(status_code=304, headers=headers)
    return Response(asset.body, media_type=asset.content_type, headers=headers)


__all__ = ["PREFIX", "asset_url", "serve"]
