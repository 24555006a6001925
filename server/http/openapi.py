"""The OpenAPI document as the server really answers: FastAPI's document, then what it
cannot say by itself.

- Request bodies the routes parse by hand carry pydantic schemas whose nested models sit
  under a local ``$defs``; those move to ``components/schemas`` so every reference resolves.
- FastAPI documents a 422 validation error the server never sends: input it refuses is a
  400 ``application/problem+json``, and so is every other error of the ``/api/v1`` routes
  (the ``default`` response). The OAuth endpoints answer errors as RFC 6749 says instead.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

PROBLEM_JSON = "application/problem+json"

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details; 'type' is a stable URI per kind of error",
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
    },
    "additionalProperties": True,
}

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_LOCAL_DEFS = "#/$defs/"
_COMPONENTS = "#/components/schemas/"


def problem_response(description: str) -> dict[str, Any]:
    return {"description": description, "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}}}


def _hoist_defs(node: Any, found: dict[str, Any]) -> Any:
    """Remove every ``$defs`` (collected in ``found``) and point its references at the
    components instead."""
    if isinstance(node, dict):
        defs = node.pop("$defs", None)
        if isinstance(defs, dict):
            for name, schema in defs.items():
                found[name] = _hoist_defs(schema, found)
        out = {}
        for key, value in node.items():
            if isinstance(value, str) and value.startswith(_LOCAL_DEFS):
                value = _COMPONENTS + value[len(_LOCAL_DEFS) :]
            out[key] = _hoist_defs(value, found)
        return out
    if isinstance(node, list):
        return [_hoist_defs(item, found) for item in node]
    return node


def _no_null_parameters(doc: dict[str, Any]) -> None:
    """An optional parameter is ``anyOf: [string, null]`` in FastAPI's document, with our
    pattern or format beside the ``anyOf`` where no generator looks; a header or query
    value is never null, so the parameter's schema becomes its one real branch."""
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                branches = schema.get("anyOf")
                if not isinstance(branches, list):
                    continue
                real = [b for b in branches if b != {"type": "null"}]
                if len(real) == 1 and len(real) < len(branches):
                    rest = {k: v for k, v in schema.items() if k != "anyOf"}
                    parameter["schema"] = {**real[0], **rest}


def _errors_as_problems(doc: dict[str, Any]) -> None:
    for path, item in doc.get("paths", {}).items():
        for operation in item.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                del responses["422"]
                responses.setdefault("400", problem_response("the request is invalid"))
            if path.startswith("/api/v1/"):
                responses.setdefault("default", problem_response("an error"))
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA


def build(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
    )
    found: dict[str, Any] = {}
    doc = dict(_hoist_defs(doc, found))
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name, schema in found.items():
        schemas.setdefault(name, schema)
    _no_null_parameters(doc)
    _errors_as_problems(doc)
    return doc


def install(app: FastAPI) -> None:
    """Serve :func:`build`'s document at ``/openapi.json`` (built once, on first use)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["PROBLEM_JSON", "PROBLEM_SCHEMA", "build", "install", "problem_response"]
