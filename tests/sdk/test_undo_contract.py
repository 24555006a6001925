"""The SDK's revision and trash records held against the live server's OpenAPI document,
the same way as the entry and change records (tests/sdk/test_contract.py)."""

from __future__ import annotations

from typing import Any

from dropline.sdk.models import Entry, Revision, RevisionPage, TrashItem, TrashPage
from tests.sdk.test_contract import drift, openapi, resolve, response_schema

__all__ = ["openapi"]  # the fixture, shared


def test_revisions_match_the_server(openapi: dict[str, Any]) -> None:
    page = response_schema(openapi, "/api/v1/files/{entry_id}/revisions")
    assert drift(openapi, page, RevisionPage) == []
    revision = resolve(openapi, page["properties"]["revisions"]["items"])
    assert drift(openapi, revision, Revision) == []


def test_trash_items_match_the_server(openapi: dict[str, Any]) -> None:
    page = response_schema(openapi, "/api/v1/trash")
    assert drift(openapi, page, TrashPage) == []
    item = resolve(openapi, page["properties"]["items"]["items"])
    assert drift(openapi, item, TrashItem) == []


def test_restores_answer_with_an_entry(openapi: dict[str, Any]) -> None:
    for path in ("/api/v1/files/{entry_id}/restore", "/api/v1/trash/{item_id}/restore"):
        assert drift(openapi, response_schema(openapi, path, "post"), Entry) == []


def test_every_undo_route_the_client_calls_exists(openapi: dict[str, Any]) -> None:
    calls = {
        ("/api/v1/files/{entry_id}/revisions", "get"),
        ("/api/v1/files/{entry_id}/restore", "post"),
        ("/api/v1/trash", "get"),
        ("/api/v1/trash/{item_id}/restore", "post"),
        ("/api/v1/trash/{item_id}", "delete"),
    }
    assert {(p, m) for p, m in calls if m not in openapi["paths"].get(p, {})} == set()
