"""Readiness: whether this node can serve, checked now: the database answers a
``SELECT 1`` and the blob store is reachable (an S3 bucket answers, or the local blob
folder is there and writable). Each check has a deadline so a load balancer's probe is
answered even while a dependency hangs."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Protocol, runtime_checkable

from sqlalchemy import text

from dropline.server.storage.blobs import LocalBlobStore
from dropline.server.storage.db import Database
from dropline.server.storage.encryption import EncryptedBlobStore

log = logging.getLogger(__name__)

OK = "ok"
DEADLINE_SECONDS = 5.0
# Shared by every probe: a dependency that hangs ties up these threads, not the server's.
_checks = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readiness")


@runtime_checkable
class Reachable(Protocol):
    """A store that can say cheaply whether it answers (``S3BlobStore``: HEAD bucket)."""

    def reachable(self) -> bool: ...


def database(db: Database) -> str:
    try:
        with db.read() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # readiness reports, it does not raise
        log.warning("readiness: the database does not answer: %s", type(exc).__name__)
        return f"error: {type(exc).__name__}"
    return OK


def blob_store(store: object) -> str:
    while isinstance(store, EncryptedBlobStore):
        store = store.inner
    if isinstance(store, Reachable):
        if store.reachable():
            return OK
        log.warning("readiness: the object store does not answer")
        return "unreachable"
    if isinstance(store, LocalBlobStore):
        if not store.root.is_dir():
            return "missing"
        return OK if os.access(store.root, os.W_OK | os.X_OK) else "not writable"
    return f"error: no check for {type(store).__name__}"


def run_checks(checks: dict[str, Callable[[], str]]) -> dict[str, str]:
    """Every check at once, each answer ``"ok"`` or what is wrong."""
    started = {name: _checks.submit(check) for name, check in checks.items()}
    answers: dict[str, str] = {}
    for name, future in started.items():
        try:
            answers[name] = future.result(timeout=DEADLINE_SECONDS)
        except FutureTimeout:
            answers[name] = f"error: no answer in {DEADLINE_SECONDS:g} s"
        except Exception as exc:  # a check that raised is a failed check
            answers[name] = f"error: {type(exc).__name__}"
    return answers
