"""Version history routes: a file's revisions, a past revision's content, restore."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1", tags=["files"])
