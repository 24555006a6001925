"""Batch uploads of small files: many files per request, one outcome per file.

:func:`upload_batch` sends files in ``POST /api/v1/uploads/batch`` requests (a JSON
manifest, then one part per file), a few requests at a time, and returns for every
item its published :class:`~dropline.sdk.models.Entry` or the
:class:`~dropline.sdk.errors.DroplineError`
that kept it out. A request whose answer was lost may have been published: before
anything is sent again, the files it held are looked up on the server, and those that
already hold their bytes count as done, so a retry never publishes a file twice nor
fails a file for an ``if_rev`` its own first attempt moved on.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dropline.sdk.client import DroplineClient
from dropline.sdk.errors import (
    PROBLEM_BASE,
    DroplineError,
    NotFoundError,
    ProtocolError,
    TooLargeError,
    ValidationError,
    error_class,
    request_may_have_applied,
)
from dropline.sdk.models import Entry
from dropline.sdk.retry import failure_reason

log = logging.getLogger(__name__)

MAX_FILES = 1000  # the server's limits for one request
MAX_BYTES = 64 * 1024 * 1024
FILES_PER_REQUEST = 200
BYTES_PER_REQUEST = 8 * 1024 * 1024
CONCURRENCY = 2  # requests in flight at once
HASH_IN_THREAD = 256 * 1024  # hashing more than this per request leaves the event loop

Outcome = Entry | DroplineError
OnResult = Callable[[int, Outcome], None]  # (index in the items given, its outcome)


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One small file to upload: its bytes and where they go.

    ``sha256`` (hex) is computed when not given; ``if_rev`` guards the target as for
    :func:`dropline.sdk.resumable.upload_file` (``"none"``: only if nothing is there).
    """

    path: str
    data: bytes
    sha256: str | None = None
    mtime: float | None = None
    if_rev: str | None = None

    @classmethod
    def from_file(
        cls,
        local_path: str | os.PathLike[str],
        remote_path: str,
        *,
        sha256: str | None = None,
        if_rev: str | None = None,
    ) -> BatchItem:
        """The file read whole (it blocks: call it from a worker thread for many files),
        with its modification time."""
        path = Path(local_path)
        with path.open("rb") as fh:
            mtime = os.fstat(fh.fileno()).st_mtime
            data = fh.read()
        return cls(remote_path, data, sha256=sha256, mtime=mtime, if_rev=if_rev)


async def upload_batch(
    client: DroplineClient,
    items: Sequence[BatchItem],
    *,
    files_per_request: int = FILES_PER_REQUEST,
    bytes_per_request: int = BYTES_PER_REQUEST,
    concurrency: int = CONCURRENCY,
    on_result: OnResult | None = None,
) -> list[Outcome]:
    """Upload ``items`` and return, in the same order, each one's entry or error.

    Items are grouped into requests of at most ``files_per_request`` files and
    ``bytes_per_request`` bytes (a bigger file goes alone), ``concurrency`` requests
    at a time. One file's failure (a stale ``if_rev``, a hash mismatch, a bad name, a
    policy) is its own result and never stops the others; an error of a whole request
    (signed out, the server down past its retries) becomes the result of each file in it.
    ``on_result(index, outcome)`` is told each outcome as soon as it is known.
    """
    if not 1 <= files_per_request <= MAX_FILES:
        raise ValidationError(f"files_per_request must be 1 to {MAX_FILES}")
    if concurrency < 1:
        raise ValidationError("concurrency must be at least 1")
    outcomes: list[Outcome | None] = [None] * len(items)

    def settle(index: int, outcome: Outcome) -> None:
        outcomes[index] = outcome
        if on_result is not None:
            on_result(index, outcome)

    sendable: list[int] = []
    for index, item in enumerate(items):
        if len(item.data) > MAX_BYTES:
            settle(
                index,
                TooLargeError(f"{item.path} is over {MAX_BYTES} bytes: send it with upload_file"),
            )
        else:
            sendable.append(index)
    groups = _groups(items, sendable, files_per_request, bytes_per_request)
    gate = asyncio.Semaphore(concurrency)

    async def run(group: list[int]) -> None:
        async with gate:
            await _send_group(client, items, group, settle)

    await asyncio.gather(*(run(group) for group in groups))
    assert all(o is not None for o in outcomes)
    return [o for o in outcomes if o is not None]


def _groups(
    items: Sequence[BatchItem], indexes: list[int], files: int, size: int
) -> list[list[int]]:
    groups: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for index in indexes:
        item = items[index]
        if current and (len(current) >= files or current_bytes + len(item.data) > size):
            groups.append(current)
            current, current_bytes = [], 0
        current.append(index)
        current_bytes += len(item.data)
    if current:
        groups.append(current)
    return groups


async def _send_group(
    client: DroplineClient,
    items: Sequence[BatchItem],
    group: list[int],
    settle: Callable[[int, Outcome], None],
) -> None:
    """One group of files, until every one of them has its outcome."""
    policy = client.retry
    failures = 0
    pending = list(group)
    hashes = await _hashes(items, pending)
    while pending:
        body, content_type = encode_batch([items[i] for i in pending], [hashes[i] for i in pending])
        try:
            results = await client.send_upload_batch(body, content_type)
        except DroplineError as err:
            failures += 1
            lost = err.retryable and request_may_have_applied(err)
            if not lost or failures >= policy.attempts:
                for index in pending:
                    settle(index, err)
                return
            delay = policy.backoff(failures, err.retry_after)
            log.warning(
                "batch of %d files: the answer was lost (attempt %d of %d: %s); "
                "checking what arrived, then retrying in %.2f s",
                len(pending),
                failures,
                policy.attempts,
                failure_reason(err),
                delay,
            )
            await policy.pause(delay)
            pending = await _settle_arrived(client, items, hashes, pending, settle)
            continue
        if len(results) != len(pending):
            mismatch = ProtocolError(
                f"the batch upload answered {len(results)} results for {len(pending)} files"
            )
            for index in pending:
                settle(index, mismatch)
            return
        for index, result in zip(pending, results, strict=True):
            settle(index, _outcome(result, hashes[index]))
        return


async def _hashes(items: Sequence[BatchItem], indexes: list[int]) -> dict[int, str]:
    def digest(item: BatchItem) -> str:
        return item.sha256.lower() if item.sha256 else hashlib.sha256(item.data).hexdigest()

    def compute() -> dict[int, str]:
        return {i: digest(items[i]) for i in indexes}

    unhashed = sum(len(items[i].data) for i in indexes if not items[i].sha256)
    return await asyncio.to_thread(compute) if unhashed > HASH_IN_THREAD else compute()


def encode_batch(items: Sequence[BatchItem], hashes: Sequence[str]) -> tuple[bytes, str]:
    """The multipart body of one batch request and its ``Content-Type``.

    Built here rather than with httpx's ``files=``: that encoder wants a file object per
    part and streams each in pieces, while one join of bytes already in memory is
    cheaper for many small files and gives a body that can be sent again as it is.
    """
    files = []
    for item, digest in zip(items, hashes, strict=True):
        spec: dict[str, Any] = {"path": item.path, "sha256": digest}
        if item.mtime is not None:
            spec["mtime"] = item.mtime
        if item.if_rev is not None:
            spec["if_rev"] = item.if_rev
        files.append(spec)
    manifest = json.dumps({"files": files}, ensure_ascii=False).encode("utf-8")
    while True:
        boundary = secrets.token_hex(16).encode("ascii")
        # A random boundary is all but certain to be absent from the data; make sure.
        if not any(boundary in item.data for item in items) and boundary not in manifest:
            break
    dash = b"--" + boundary
    pieces = [
        dash,
        b'\r\nContent-Disposition: form-data; name="manifest"\r\n'
        b"Content-Type: application/json\r\n\r\n",
        manifest,
        b"\r\n",
    ]
    file_head = (
        dash + b'\r\nContent-Disposition: form-data; name="file"\r\n'
        b"Content-Type: application/octet-stream\r\n\r\n"
    )
    for item in items:
        pieces += [file_head, item.data, b"\r\n"]
    pieces += [dash, b"--\r\n"]
    return b"".join(pieces), f"multipart/form-data; boundary={boundary.decode('ascii')}"


def _outcome(result: object, sha256: str) -> Outcome:
    if not isinstance(result, Mapping):
        return ProtocolError("a batch result is not a JSON object")
    entry = result.get("entry")
    if result.get("status") == 201 and entry is not None:
        try:
            published = Entry.from_json(entry)
        except ProtocolError as err:
            return err
        if published.sha256 != sha256:
            return ProtocolError(
                f"the server published {published.path} with SHA-256 {published.sha256}, "
                f"not {sha256}"
            )
        return published
    problem = result.get("problem")
    if not isinstance(problem, Mapping):
        return ProtocolError("a failed batch result carries no problem")
    return _error(dict(problem))


def _error(problem: dict[str, Any]) -> DroplineError:
    """The SDK error for a file's problem, as :func:`dropline.sdk.errors.from_response` maps a
    whole answer's."""
    status = problem.get("status")
    status = status if isinstance(status, int) and not isinstance(status, bool) else 0
    kind = problem.get("type")
    slug = (
        kind[len(PROBLEM_BASE) :]
        if isinstance(kind, str) and kind.startswith(PROBLEM_BASE)
        else None
    )
    cls = error_class(slug, status)
    detail = problem.get("detail")
    title = problem.get("title")
    return cls(
        detail if isinstance(detail, str) and detail else f"The server refused it (HTTP {status}).",
        title=title if isinstance(title, str) and title else None,
        status=status or None,
        problem_type=slug,
        problem=problem,
    )


async def _settle_arrived(
    client: DroplineClient,
    items: Sequence[BatchItem],
    hashes: dict[int, str],
    pending: list[int],
    settle: Callable[[int, Outcome], None],
) -> list[int]:
    """After a lost answer: settle the files the server already holds (same bytes, and
    for an ``if_rev`` no longer that rev); returns the ones still to send."""
    by_folder: dict[str, list[int]] = {}
    for index in pending:
        folder = items[index].path.rsplit("/", 1)[0] or "/"
        by_folder.setdefault(folder, []).append(index)
    still: list[int] = []
    for folder, indexes in by_folder.items():
        try:
            listed = {
                unicodedata.normalize("NFC", e.name): e for e in await client.list_folder(folder)
            }
        except NotFoundError:
            listed = {}
        except DroplineError:
            still += indexes  # cannot tell now; the next attempt's answer will
            continue
        for index in indexes:
            item = items[index]
            name = unicodedata.normalize("NFC", item.path.rsplit("/", 1)[-1])
            found = listed.get(name)
            arrived = (
                found is not None
                and not found.is_folder
                and found.sha256 == hashes[index]
                and (item.if_rev in (None, "none") or found.rev != item.if_rev)
            )
            if arrived and found is not None:
                settle(index, found)
            else:
                still.append(index)
    return sorted(still)


__all__ = ["BatchItem", "encode_batch", "upload_batch"]
