"""The Dropline MFT server: REST API, tus uploads, change feed, identity and storage.

It imports nothing from ``sync``, ``agent`` or ``ui``; its wire contract is its
OpenAPI document plus the tus protocol.
"""

from __future__ import annotations

__all__ = ["create_app"]


def create_app(*args: object, **kwargs: object) -> object:
    """Build the ASGI application (see :func:`server.app.create_app`)."""
    from server.app import create_app as _create_app

    return _create_app(*args, **kwargs)  # type: ignore[arg-type]
