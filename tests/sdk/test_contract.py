"""The SDK's wire models held against the live server's OpenAPI document.

Schemas are found through the routes that return them (not by component name), so a
field added, dropped, renamed, retyped or made nullable on either side fails here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from enum import Enum
from typing import Any

import httpx
import pytest

from dropline.sdk.models import Change, ChangePage, Entry, EntryPage
from tests.support.live import LiveServer

JSON_TYPES: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def resolve(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), ref
        node: Any = doc
        for part in ref[2:].split("/"):
            node = node[part]
        schema = node
    return schema


def response_schema(doc: dict[str, Any], path: str, method: str = "get") -> dict[str, Any]:
    ok = doc["paths"][path][method]["responses"]
    body = ok.get("200") or ok["201"]
    return resolve(doc, body["content"]["application/json"]["schema"])


def schema_shape(doc: dict[str, Any], schema: dict[str, Any]) -> tuple[set[str], bool]:
    """(JSON types, nullable) of one property schema."""
    schema = resolve(doc, schema)
    options = schema.get("anyOf") or schema.get("oneOf") or [schema]
    kinds: set[str] = set()
    nullable = False
    for option in options:
        option = resolve(doc, option)
        kind = option.get("type", "object")
        if kind == "null":
            nullable = True
        else:
            kinds.add(kind)
            if "enum" in option:
                kinds.add("enum:" + ",".join(sorted(map(str, option["enum"]))))
    return kinds, nullable


def model_shape(hint: Any) -> tuple[set[str], bool]:
    args = typing.get_args(hint)
    nullable = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        nullable = type(None) in args
        members = [a for a in args if a is not type(None)]
        assert len(members) == 1, hint
        hint = members[0]
    if isinstance(hint, type) and issubclass(hint, Enum):
        return {"string", "enum:" + ",".join(sorted(m.value for m in hint))}, nullable
    if typing.get_origin(hint) is tuple:
        return {"array"}, nullable
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return {"object"}, nullable
    return {JSON_TYPES[hint]}, nullable


def drift(doc: dict[str, Any], schema: dict[str, Any], model: type) -> list[str]:
    """Every difference between a dataclass and an OpenAPI object schema, in words."""
    hints = typing.get_type_hints(model)
    fields = {f.name for f in dataclasses.fields(model)}
    props: dict[str, Any] = schema.get("properties", {})
    problems = [f"{model.__name__}.{n}: not in the server's schema" for n in fields - set(props)]
    problems += [f"{model.__name__}.{n}: the SDK does not read it" for n in set(props) - fields]
    required = set(schema.get("required", []))
    for name in sorted(fields & set(props)):
        if name not in required:
            problems.append(f"{model.__name__}.{name}: optional on the server, required here")
        server_kinds, server_null = schema_shape(doc, props[name])
        sdk_kinds, sdk_null = model_shape(hints[name])
        if server_kinds != sdk_kinds:
            problems.append(f"{model.__name__}.{name}: server {server_kinds}, SDK {sdk_kinds}")
        if server_null and not sdk_null:
            problems.append(f"{model.__name__}.{name}: the server may send null")
    return problems


@pytest.fixture
def openapi(live_server: LiveServer) -> dict[str, Any]:
    # FastAPI warns that GET and HEAD of /files/{id}/content share an operation id; the
    # test server runs in this process, where warnings are errors, so that warning would
    # turn the document into a 500. Only that one warning is let through, while fetching.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Duplicate Operation ID", category=UserWarning)
        response = httpx.get(live_server.url + "/openapi.json", timeout=30)
    assert response.status_code == 200, response.text[:500]
    doc: dict[str, Any] = response.json()
    return doc


def test_entry_matches_the_server(openapi: dict[str, Any]) -> None:
    for path in ("/api/v1/files/{entry_id}", "/api/v1/metadata"):
        assert drift(openapi, response_schema(openapi, path), Entry) == []


def test_change_and_change_page_match_the_server(openapi: dict[str, Any]) -> None:
    page = response_schema(openapi, "/api/v1/changes")
    assert drift(openapi, page, ChangePage) == []
    change = resolve(openapi, page["properties"]["changes"]["items"])
    assert drift(openapi, change, Change) == []
    assert drift(openapi, resolve(openapi, change["properties"]["entry"]), Entry) == []
    wait = response_schema(openapi, "/api/v1/changes/wait")
    assert drift(openapi, wait, ChangePage) == []


def test_folder_listing_matches_the_server(openapi: dict[str, Any]) -> None:
    listing = response_schema(openapi, "/api/v1/files")
    assert drift(openapi, listing, EntryPage) == []
    item = resolve(openapi, listing["properties"]["entries"]["items"])
    assert drift(openapi, item, Entry) == []


def test_every_route_the_client_calls_exists(openapi: dict[str, Any]) -> None:
    calls = {
        ("/api/v1/me", "get"),
        ("/api/v1/metadata", "get"),
        ("/api/v1/files", "get"),
        ("/api/v1/folders", "post"),
        ("/api/v1/files/{entry_id}", "get"),
        ("/api/v1/files/{entry_id}", "patch"),
        ("/api/v1/files/{entry_id}", "delete"),
        ("/api/v1/files/{entry_id}/content", "get"),
        ("/api/v1/changes", "get"),
        ("/api/v1/changes/latest-cursor", "get"),
        ("/api/v1/changes/wait", "get"),
        ("/api/v1/uploads", "post"),
        ("/api/v1/uploads/{upload_id}", "head"),
        ("/api/v1/uploads/{upload_id}", "patch"),
        ("/api/v1/uploads/{upload_id}", "delete"),
    }
    missing = {(p, m) for p, m in calls if m not in openapi["paths"].get(p, {})}
    assert missing == set()


def test_the_checker_catches_drift() -> None:
    """A field renamed, dropped, retyped or made nullable on the server is reported."""
    entry_schema: dict[str, Any] = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "path": {"type": "string"},
            "type": {"type": "string", "enum": ["file", "folder", "link"]},
            "size": {"type": "string"},
            "sha256": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "revision": {"type": "string"},
            "mtime": {"anyOf": [{"type": "number"}, {"type": "null"}]},
            "parent_id": {"type": "string"},
        },
        "required": ["id", "name", "path", "type", "size", "sha256", "revision", "mtime"],
    }
    problems = drift({}, entry_schema, Entry)
    assert "Entry.rev: not in the server's schema" in problems
    assert "Entry.revision: the SDK does not read it" in problems
    assert any(p.startswith("Entry.size: server {'string'}") for p in problems)
    assert any(p.startswith("Entry.type: server") for p in problems)
    assert "Entry.parent_id: optional on the server, required here" in problems
    nullable_id = {
        **entry_schema,
        "properties": {
            **entry_schema["properties"],
            "id": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        },
    }
    assert "Entry.id: the server may send null" in drift({}, nullable_id, Entry)
