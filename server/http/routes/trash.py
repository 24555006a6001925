"""Trash routes: list what was deleted, bring it back, purge it."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["trash"])
