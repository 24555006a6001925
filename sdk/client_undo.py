"""Undo on the server: a file's earlier revisions and the trash, as calls of
:class:`dropline.sdk.client.DroplineClient` (which inherits them from :class:`UndoCalls`).

    revisions = await client.revisions(entry.id)             # newest first
    entry = await client.restore_revision(entry.id, revisions[1].rev)
    item, *_ = await client.trash(path="/reports")
    entry = await client.restore_from_trash(item.id)

A past revision's bytes come down through the resumable, verified download path:
``download_file(client, entry, dest, rev=revision)``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

import httpx

from dropline.sdk.errors import (
    DroplineError,
    NotFoundError,
    ValidationError,
    request_may_have_applied,
)
from dropline.sdk.models import Entry, Revision, RevisionPage, TrashItem, TrashPage
from dropline.sdk.retry import RetryPolicy
from dropline.sdk.wire import cursor_pages, etag, json_body, quote_id

API = "/api/v1"


class _Client(Protocol):
    """What these calls need of the client: its one request path, retries and breaker."""

    retry: RetryPolicy

    async def _request(
        self,
        method: str,
        url: str | httpx.URL,
        *,
        idempotent: bool = True,
        retry: RetryPolicy | None = None,
        **kwargs: Any,
    ) -> httpx.Response: ...

    async def _send_once(self, method: str, url: str | httpx.URL) -> httpx.Response: ...


class UndoCalls:
    """Version history and the trash (mixed into ``DroplineClient``)."""

    # -- revisions ---------------------------------------------------------------------

    async def iter_revisions(
        self: _Client, file_id: str, *, page_size: int | None = None
    ) -> AsyncIterator[Revision]:
        """A file's revisions, newest first, fetched page by page (the current one is
        marked ``current``). A folder, or an id that is not yours: NotFoundError."""
        params: dict[str, str | int] = {}
        if page_size is not None:
            params["limit"] = page_size
        url = f"{API}/files/{quote_id(file_id)}/revisions"
        async for page in cursor_pages(self._request, url, params, RevisionPage.from_json):
            for revision in page.revisions:
                yield revision

    async def revisions(
        self: _Client, file_id: str, *, page_size: int | None = None
    ) -> list[Revision]:
        """Every revision the server keeps of a file, newest first."""
        return [r async for r in UndoCalls.iter_revisions(self, file_id, page_size=page_size)]

    async def revision(self: _Client, file_id: str, rev: str) -> Revision:
        """One revision of a file; NotFoundError when the server keeps no such revision."""
        async for found in UndoCalls.iter_revisions(self, file_id):
            if found.rev == rev:
                return found
        raise NotFoundError(f"the file has no revision {rev!r}", status=404)

    async def restore_revision(
        self: _Client, file_id: str, rev: str, if_rev: str | None = None
    ) -> Entry:
        """Make ``rev``'s content current again, as a new revision (history is never
        rewritten; the file's current content stays a revision too). With ``if_rev``
        only if the file is still at that revision (PreconditionFailedError if not).
        Restoring the revision that is current already changes nothing."""
        if not rev:
            raise ValidationError("a revision is required")
        headers = {"If-Match": etag(if_rev)} if if_rev is not None else None
        response = await self._request(
            "POST",
            f"{API}/files/{quote_id(file_id)}/restore",
            json={"rev": rev},
            headers=headers,
            # A replay would publish a second revision with the same content.
            idempotent=False,
        )
        return Entry.from_json(json_body(response))

    # -- trash -------------------------------------------------------------------------

    async def iter_trash(
        self: _Client,
        path: str | None = None,
        since: float | None = None,
        until: float | None = None,
        *,
        page_size: int | None = None,
    ) -> AsyncIterator[TrashItem]:
        """What was deleted (under ``path``; between ``since`` and ``until``, epoch
        seconds), newest deletion first. A deleted folder is one item."""
        params: dict[str, str | int] = {}
        if path is not None:
            params["path"] = path
        for name, value in (("since", since), ("until", until)):
            if value is not None:
                if value < 0:
                    raise ValidationError(f"{name} is seconds since 1970, not negative")
                params[name] = repr(float(value))
        if page_size is not None:
            params["limit"] = page_size
        async for page in cursor_pages(self._request, f"{API}/trash", params, TrashPage.from_json):
            for item in page.items:
                yield item

    async def trash(
        self: _Client,
        path: str | None = None,
        since: float | None = None,
        until: float | None = None,
        *,
        page_size: int | None = None,
    ) -> list[TrashItem]:
        """Every item in the trash (see :meth:`iter_trash`)."""
        items = UndoCalls.iter_trash(self, path, since, until, page_size=page_size)
        return [item async for item in items]

    async def restore_from_trash(self: _Client, item_id: str, path: str | None = None) -> Entry:
        """Bring an item back: to where it was (missing parent folders are made again),
        or to ``path``. A folder comes back with everything under it. Something already
        at the old place and no ``path``: ConflictError (``already-exists``)."""
        body: Mapping[str, str] = {} if path is None else {"path": path}
        response = await self._request(
            "POST",
            f"{API}/trash/{quote_id(item_id)}/restore",
            json=body,
            idempotent=False,  # a replay after success finds nothing left in the trash
        )
        return Entry.from_json(json_body(response))

    async def purge_from_trash(self: _Client, item_id: str) -> None:
        """Delete an item for good, with its earlier revisions (the owner or an admin)."""
        url = f"{API}/trash/{quote_id(item_id)}"
        ambiguous = False

        async def attempt() -> None:
            nonlocal ambiguous
            try:
                await self._send_once("DELETE", url)
            except NotFoundError:
                if ambiguous:
                    return  # an earlier attempt purged it; only its answer was lost
                raise
            except DroplineError as err:
                ambiguous = ambiguous or request_may_have_applied(err)
                raise

        await self.retry.call(attempt, what=f"DELETE {url}")


__all__ = ["UndoCalls"]
