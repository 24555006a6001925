"""The web client's HTML: its Jinja templates and the headers every page is sent with."""

from __future__ import annotations

import time
from typing import Any

from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from dropline.server.http.web.static import asset_url

_templates = Environment(
    loader=PackageLoader("dropline.server.http.web", "templates"),
    autoescape=select_autoescape(["html"]),
)


def filesize(size: int) -> str:
    """Sizes as people read them (1024-based, like the page's own script)."""
    if size < 1024:
        return f"{size} B"
    value = size / 1024
    for unit in ("KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            return f"{value:.1f} {unit}" if value < 10 else f"{value:.0f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def when(seconds: float) -> str:
    """A moment for a reader whose time zone the server does not know: said in UTC."""
    return time.strftime("on %d %b %Y at %H:%M UTC", time.gmtime(seconds))


_templates.globals["asset"] = asset_url
_templates.filters["filesize"] = filesize
_templates.filters["when"] = when

# Scripts and styles from our own static files only (no inline script, no CDN); the
# page talks to this server alone and may not be framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Referrer-Policy": "no-referrer",
}


def render(template: str, status: int = 200, **ctx: Any) -> HTMLResponse:
    html = _templates.get_template(template).render(**ctx)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def message(
    title: str, text: str, *, ok: bool, status: int, link: tuple[str, str] | None = None
) -> HTMLResponse:
    """A one-message page; ``link`` is (address, label) of the one way on."""
    return render("message.html", status, title=title, message=text, ok=ok, link=link)


__all__ = ["CONTENT_SECURITY_POLICY", "PAGE_HEADERS", "message", "render"]
