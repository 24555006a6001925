"""The SDK's transfer and webhook records (dropline.sdk.client_ops) held against the live
server's OpenAPI document: every field the SDK reads exists there, with the same JSON
type and no null the SDK does not expect. (These records are views: the server may
send more.)"""

from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from typing import Any

import httpx
import pytest

from dropline.sdk.client_ops import Transfer, TransferError, WebhookDelivery, WebhookSubscription
from tests.sdk.test_contract import resolve, schema_shape
from tests.support.live import LiveServer

JSON_TYPES: dict[Any, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def sdk_shape(hint: Any) -> tuple[str, bool]:
    nullable = False
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        nullable = type(None) in args
        [hint] = [a for a in args if a is not type(None)]
    origin = typing.get_origin(hint) or hint
    if origin in (tuple, list):
        return "array", nullable
    if origin is dict or (isinstance(origin, type) and dataclasses.is_dataclass(origin)):
        return "object", nullable
    return JSON_TYPES[origin], nullable


def drift(
    doc: dict[str, Any], schema: dict[str, Any], model: type, skip: frozenset[str] = frozenset()
) -> list[str]:
    hints = typing.get_type_hints(model)
    props: dict[str, Any] = schema.get("properties", {})
    problems = []
    for field in dataclasses.fields(model):
        name = field.name
        if name in skip:
            continue
        if name not in props:
            problems.append(f"{model.__name__}.{name}: not in the server's schema")
            continue
        kinds, server_null = schema_shape(doc, props[name])
        kinds = {k for k in kinds if not k.startswith("enum:")}
        want, sdk_null = sdk_shape(hints[name])
        if want == "number":
            kinds = {"number" if k == "integer" else k for k in kinds}
        if kinds != {want}:
            problems.append(f"{model.__name__}.{name}: server {kinds}, SDK {want}")
        if server_null and not sdk_null:
            problems.append(f"{model.__name__}.{name}: the server may send null")
    return problems


def answer(doc: dict[str, Any], path: str, method: str, status: str) -> dict[str, Any]:
    body = doc["paths"][path][method]["responses"][status]
    return resolve(doc, body["content"]["application/json"]["schema"])


@pytest.fixture
def openapi(live_server: LiveServer) -> dict[str, Any]:
    # GET and HEAD of one route share an operation id, which FastAPI warns about; the
    # server runs in this process, where warnings are errors (see test_contract).
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Duplicate Operation ID", category=UserWarning)
        response = httpx.get(live_server.url + "/openapi.json", timeout=30)
    assert response.status_code == 200
    doc: dict[str, Any] = response.json()
    return doc


def test_transfer_matches_every_answer_that_carries_one(openapi: dict[str, Any]) -> None:
    for path, method, status in (
        ("/api/v1/transfers", "post", "202"),
        ("/api/v1/transfers/{transfer_id}", "get", "200"),
        ("/api/v1/transfers/{transfer_id}", "delete", "200"),
    ):
        schema = answer(openapi, path, method, status)
        assert drift(openapi, schema, Transfer) == []
        error = resolve(openapi, schema["properties"]["error"]["anyOf"][0])
        assert drift(openapi, error, TransferError) == []
    listing = answer(openapi, "/api/v1/transfers", "get", "200")
    item = resolve(openapi, listing["properties"]["transfers"]["items"])
    assert drift(openapi, item, Transfer) == []


def test_webhook_records_match_the_server(openapi: dict[str, Any]) -> None:
    created = answer(openapi, "/api/v1/webhooks", "post", "201")
    assert drift(openapi, created, WebhookSubscription) == []
    assert "secret" in created["required"]
    rotated = answer(openapi, "/api/v1/webhooks/{webhook_id}/rotate-secret", "post", "200")
    assert drift(openapi, rotated, WebhookSubscription) == []
    one = answer(openapi, "/api/v1/webhooks/{webhook_id}", "get", "200")
    assert drift(openapi, one, WebhookSubscription, skip=frozenset({"secret"})) == []
    assert "secret" not in one["properties"]
    listing = answer(openapi, "/api/v1/webhooks", "get", "200")
    item = resolve(openapi, listing["properties"]["webhooks"]["items"])
    assert drift(openapi, item, WebhookSubscription, skip=frozenset({"secret"})) == []
    detail = answer(openapi, "/api/v1/webhooks/{webhook_id}/deliveries/{delivery_id}", "get", "200")
    assert drift(openapi, detail, WebhookDelivery) == []
    log = answer(openapi, "/api/v1/webhooks/{webhook_id}/deliveries", "get", "200")
    entry = resolve(openapi, log["properties"]["deliveries"]["items"])
    assert drift(openapi, entry, WebhookDelivery, skip=frozenset({"attempt_log"})) == []
    ping = answer(openapi, "/api/v1/webhooks/{webhook_id}/ping", "post", "202")
    assert drift(openapi, ping, WebhookDelivery, skip=frozenset({"attempt_log"})) == []


def test_the_checker_catches_drift() -> None:
    schema = {
        "properties": {
            "id": {"type": "string"},
            "url": {"type": "integer"},
            "description": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "event_types": {"type": "array"},
            "active": {"type": "boolean"},
            "disabled_reason": {"type": "string"},
            "previous_secret_expires_at": {"type": "number"},
        }
    }
    problems = drift({}, schema, WebhookSubscription)
    assert "WebhookSubscription.url: server {'integer'}, SDK string" in problems
    assert "WebhookSubscription.description: the server may send null" in problems
    assert "WebhookSubscription.secret: not in the server's schema" in problems
