"""``create_app(settings)``: wires settings, database, storage and routes into one ASGI app."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from dropline.server.admin.service import Admin
from dropline.server.audit.damage import DamageLog
from dropline.server.files import change_wakeups
from dropline.server.files.changes import ChangeFeed, ChangeNotifier
from dropline.server.files.entries import FileService
from dropline.server.files.housekeeping import Housekeeping
from dropline.server.guard.file_guard import SecurityFileHook
from dropline.server.guard.security import Security, current_tenant
from dropline.server.http import errors
from dropline.server.http import openapi as openapi_doc
from dropline.server.http.middleware import RequestContextMiddleware
from dropline.server.http.operations import Operations
from dropline.server.http.routes import admin as admin_routes
from dropline.server.http.routes import audit as audit_routes
from dropline.server.http.routes import changes as changes_routes
from dropline.server.http.routes import files as files_routes
from dropline.server.http.routes import health, me
from dropline.server.http.routes import oauth as oauth_routes
from dropline.server.http.routes import revisions as revisions_routes
from dropline.server.http.routes import trash as trash_routes
from dropline.server.http.routes import uploads as uploads_routes
from dropline.server.http.security_middleware import SecurityMiddleware
from dropline.server.http.sweeping import build_sweeper
from dropline.server.http.web import routes as web_routes
from dropline.server.identity.accounts import Identity, Principal
from dropline.server.identity.oauth.csrf import Csrf, load_secret
from dropline.server.settings import Settings
from dropline.server.storage.blob_url import open_stores
from dropline.server.storage.db import Database
from dropline.server.storage.encryption import EncryptedBlobStore, TenantKeys
from dropline.server.storage.migrations import migrate
from dropline.server.uploads.batch import BatchUploads
from dropline.server.uploads.expiry import expiry_loop
from dropline.server.uploads.sessions import UploadService
from dropline.server.uploads.shared_staging import SharedStaging

log = logging.getLogger(__name__)

API_TITLE = "Dropline MFT API"
API_VERSION = "1.0.0"


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings.from_env()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.blob_dir.mkdir(parents=True, exist_ok=True)
    settings.upload_dir.mkdir(parents=True, exist_ok=True)

    db = Database(settings.database_url)
    migrate(db)
    identity = Identity(db)
    # Encryption at rest for tenants that turned it on (dropline.server.storage.encryption).
    # On local disk or in an object store (DROPLINE_BLOB_URL), sealed on the way in.
    keys = TenantKeys(db, settings.data_dir)
    stores = open_stores(settings.blob_url)
    blobs = EncryptedBlobStore(stores.blobs, keys, current_tenant)
    # In an object store, uploads in progress are kept there too, for any node to go on.
    shared = (
        None
        if stores.staging is None
        else SharedStaging(db, EncryptedBlobStore(stores.staging, keys, current_tenant))
    )
    notifier = ChangeNotifier()
    files = FileService(db, blobs, on_change=notifier.notify)
    # On PostgreSQL, other nodes' writes wake this node's long-polls too (LISTEN/NOTIFY).
    change_listener = change_wakeups.wire(db, notifier, files.hooks)
    changes = ChangeFeed(
        db,
        notifier,
        retention_seconds=settings.change_retention_days * 86400,
        max_wait=settings.longpoll_max_seconds,
    )
    uploads = UploadService(
        db,
        blobs,
        files,
        settings.upload_dir,
        max_size=settings.max_upload_bytes,
        expiry_seconds=settings.upload_expiry_seconds,
        shared=shared,
    )
    batches = BatchUploads(db, blobs, files, settings.upload_dir, uploads.executor)
    operations = Operations.build(settings, db, files, blobs)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        notifier.bind(asyncio.get_running_loop())
        # Damaged blobs found by any reader become blob.damaged audit rows.
        blobs.report = DamageLog(db).report
        cleanup_every = min(600.0, max(1.0, settings.upload_expiry_seconds / 4))
        background = [
            asyncio.create_task(
                expiry_loop(uploads.cleanup_expired, cleanup_every), name="upload-expiry"
            ),
            asyncio.create_task(changes.retention_loop(), name="change-retention"),
        ]
        # Version and trash retention (tenant policies); tests call run_once themselves.
        app.state.housekeeping = Housekeeping(db, blobs)
        background.append(
            asyncio.create_task(
                app.state.housekeeping.loop(settings.housekeeping_seconds), name="housekeeping"
            )
        )
        # The sweeper (expired uploads, ended share links, unreferenced blobs), on the
        # housekeeping schedule; `dropline-server sweep` runs the same on demand.
        app.state.sweeper = build_sweeper(settings, db, stores, uploads.live.in_use)
        background.append(
            asyncio.create_task(
                app.state.sweeper.loop(settings.housekeeping_seconds), name="sweeper"
            )
        )
        background += operations.start()
        if change_listener is not None:
            background.append(asyncio.create_task(change_listener.run(), name="change-listener"))
        yield
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        uploads.close()
        db.dispose()

    app = FastAPI(title=API_TITLE, version=API_VERSION, lifespan=lifespan)
    app.state.settings = settings
    app.state.db = db
    app.state.identity = identity
    app.state.blobs = blobs
    app.state.files = files
    app.state.changes = changes
    app.state.change_listener = change_listener
    app.state.uploads = uploads
    app.state.batches = batches

    def api_key_authenticator(_request: Request, token: str) -> Principal | None:
        return identity.authenticate_api_key(token)

    # Security (guard.security): OAuth server, JWTs, mTLS, defender, rate limits, policy.
    security = Security(settings, db, identity)
    app.state.security = security
    app.state.csrf = Csrf(load_secret(settings.data_dir))
    app.state.admin = Admin(db, identity, security.store)
    # Policy checks and file audit rows for every file operation.
    files.hooks.append(SecurityFileHook(security, blobs))
    app.state.authenticators = [api_key_authenticator, security.jwt_authenticator]
    # The last added runs first: request id and source address exist before anything else.
    app.add_middleware(SecurityMiddleware, security=security)
    app.add_middleware(RequestContextMiddleware, trusted_proxies=settings.trusted_proxies)
    # Transfers, webhooks, metrics and access logs; their middlewares wrap all of the above.
    operations.install(app)

    errors.install(app)
    app.include_router(health.router)
    app.include_router(me.router)
    app.include_router(oauth_routes.router)
    app.include_router(admin_routes.router)
    app.include_router(audit_routes.router)
    app.include_router(files_routes.router)
    app.include_router(uploads_routes.router)
    uploads_routes.install_fast_lane(app)  # tus POST and PATCH without FastAPI's overhead
    app.include_router(changes_routes.router)
    app.include_router(revisions_routes.router)
    app.include_router(trash_routes.router)
    app.include_router(web_routes.router)
    openapi_doc.install(app)
    return app
