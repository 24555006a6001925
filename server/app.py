"""``create_app(settings)``: wires settings, database, storage and routes into one ASGI app."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request

from server import errors
from server.db import Database
from server.identity import Identity, Principal
from server.migrations import migrate
from server.routes import health, me
from server.settings import Settings

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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        db.dispose()

    app = FastAPI(title=API_TITLE, version=API_VERSION, lifespan=lifespan)
    app.state.settings = settings
    app.state.db = db
    app.state.identity = identity

    def api_key_authenticator(_request: Request, token: str) -> Principal | None:
        return identity.authenticate_api_key(token)

    app.state.authenticators = [api_key_authenticator]

    errors.install(app)
    app.include_router(health.router)
    app.include_router(me.router)
    return app
