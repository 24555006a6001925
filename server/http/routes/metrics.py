"""``GET /metrics``: the Prometheus text exposition of :class:`dropline.server.metrics.Metrics`.

Unauthenticated like ``/healthz``: the server listens on loopback by default, and the
series carry no tenant, user or path (route templates only).
"""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter, Request, Response

from dropline.server.metrics import CONTENT_TYPE, Metrics

router = APIRouter(tags=["operations"])


@router.get("/metrics", response_class=Response)
async def metrics(request: Request) -> Response:
    registry: Metrics = request.app.state.metrics
    # The port this node listens on (the socket the scrape arrived at, never a Host header).
    server = request.scope.get("server")
    registry.identify(server[1] if server else None)
    # The state collectors query the database: keep that off the event loop.
    body = await anyio.to_thread.run_sync(registry.exposition)
    return Response(body, media_type=CONTENT_TYPE)
