"""Operations endpoints: liveness (the process answers) and readiness (it can serve:
the database and the blob store are reachable, ``http.readiness``)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from dropline.server.http import readiness

router = APIRouter(tags=["operations"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    """200 when every check says ``ok``, else 503; the body names each check's answer."""
    state = request.app.state
    checks = readiness.run_checks(
        {
            "database": lambda: readiness.database(state.db),
            "storage": lambda: readiness.blob_store(state.blobs),
        }
    )
    ready = all(answer == readiness.OK for answer in checks.values())
    return JSONResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks},
        status_code=200 if ready else 503,
    )
