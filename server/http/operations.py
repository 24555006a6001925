"""Wires the operations parts into the app: transfers and their workers, share links,
webhooks and their dispatcher, metrics and access logs.

``create_app`` makes one :class:`Operations`, calls :meth:`Operations.install` after
the request-context middleware is added (so these middlewares wrap it and see every
answer, even a ban's 429) and starts :meth:`Operations.start`'s tasks in its lifespan.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi import FastAPI

from dropline.server.files.entries import FileService
from dropline.server.files.events import FileEvents
from dropline.server.http.access_log import AccessLogMiddleware
from dropline.server.http.metrics_middleware import MetricsMiddleware
from dropline.server.http.routes import metrics as metrics_routes
from dropline.server.http.routes import shares as shares_routes
from dropline.server.http.routes import transfers as transfers_routes
from dropline.server.http.routes import webhooks as webhooks_routes
from dropline.server.metrics import Metrics
from dropline.server.settings import Settings
from dropline.server.storage.blobs import BlobStore
from dropline.server.storage.db import Database
from dropline.server.transfers.service import TransferService
from dropline.server.transfers.shares import ShareService
from dropline.server.transfers.worker import TransferWorkers
from dropline.server.webhooks.delivery import WebhookDispatcher
from dropline.server.webhooks.subscriptions import WebhookService


@dataclass
class Operations:
    metrics: Metrics
    dispatcher: WebhookDispatcher
    webhooks: WebhookService
    shares: ShareService
    transfers: TransferService
    workers: TransferWorkers

    @classmethod
    def build(
        cls, settings: Settings, db: Database, files: FileService, blobs: BlobStore
    ) -> Operations:
        metrics = Metrics(db)
        # file.uploaded / file.moved / file.deleted, written with each change's own row.
        files.hooks.append(FileEvents())
        dispatcher = WebhookDispatcher(
            db,
            schedule=settings.webhook_retry_schedule,
            timeout=settings.webhook_timeout_seconds,
            allow_private=settings.allow_private_targets,
            poll_seconds=settings.worker_poll_seconds,
            concurrency=settings.webhook_concurrency,
            metrics=metrics,
        )
        webhooks = WebhookService(
            db,
            allow_private=settings.allow_private_targets,
            overlap_seconds=settings.webhook_secret_overlap_seconds,
            wake=dispatcher.wake,
        )
        shares = ShareService(db)
        transfers = TransferService(
            db,
            files,
            allow_private=settings.allow_private_targets,
            inbox_path=settings.inbox_path,
            on_final=dispatcher.wake,
            lease_seconds=settings.work_lease_seconds,
        )
        workers = TransferWorkers(
            transfers,
            files,
            blobs,
            shares,
            staging_dir=settings.data_dir / "transfers",
            workers=settings.transfer_workers,
            retry_schedule=settings.transfer_retry_schedule,
            poll_seconds=settings.worker_poll_seconds,
            allow_private=settings.allow_private_targets,
            push_timeout=settings.transfer_timeout_seconds,
            metrics=metrics,
            wake_webhooks=dispatcher.wake,
        )
        transfers.wake = workers.wake
        _wake_after_file_changes(files, dispatcher)
        return cls(metrics, dispatcher, webhooks, shares, transfers, workers)

    def install(self, app: FastAPI) -> None:
        self.workers.security = getattr(app.state, "security", None)
        app.state.metrics = self.metrics
        app.state.webhooks = self.webhooks
        app.state.webhook_dispatcher = self.dispatcher
        app.state.shares = self.shares
        app.state.transfers = self.transfers
        app.state.transfer_workers = self.workers
        app.add_middleware(MetricsMiddleware, metrics=self.metrics)
        app.add_middleware(AccessLogMiddleware)
        app.include_router(transfers_routes.router)
        app.include_router(webhooks_routes.router)
        app.include_router(shares_routes.router)
        app.include_router(metrics_routes.router)

    def start(self) -> list[asyncio.Task[None]]:
        return [
            asyncio.create_task(self.dispatcher.run(), name="webhook-dispatcher"),
            asyncio.create_task(self.workers.run(), name="transfer-workers"),
        ]


def _wake_after_file_changes(files: FileService, dispatcher: WebhookDispatcher) -> None:
    """The file service calls ``on_change`` after each commit: the file events it just wrote
    are then in the outbox, so the dispatcher is woken instead of finding them a poll later."""
    before = files.on_change

    def on_change(space_id: str) -> None:
        if before is not None:
            before(space_id)
        dispatcher.wake()

    files.on_change = on_change


__all__ = ["Operations"]
