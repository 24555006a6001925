"""The OpenAPI document against the live server, with schemathesis: every operation,
positive and negative cases (examples, coverage and fuzzing phases), a fixed seed and a
bounded number of examples. Fails on any 5xx, any answer that does not match its schema,
and any schema-valid request the server refuses.

What "refused" means is schemathesis' default (any 4xx but 401, 403, 404, 409 and 429)
widened by answers that depend on the server's state, not on the request's shape:
410 (an expired cursor or upload), 412 (a stale If-Match), 416 (a range past the end of
the file) and 422 (an Idempotency-Key used before for another request). Per operation:

- ``/oauth/*`` and ``/device`` speak RFC 6749/8628, which answer 400 to a well-formed
  request naming an unknown client, code or token; a fuzzer cannot hold a live one.
- ``GET /api/v1/files`` takes ``path`` or ``parent_id``, not both, and
  ``POST /api/v1/uploads/batch`` needs one manifest entry per file part: constraints
  between two parameters that OpenAPI cannot state.
- A tus PATCH's ``Upload-Checksum`` must be the checksum of its body (else 460) and its
  ``Repr-Digest`` that of the whole file (else 400 when the last byte arrives).
- Admin requests name other resources (a service user, a certificate to parse, rules
  that need each other, such as authorization_code needing a redirect URI), checked
  when they are made.

The answer to the tus POST is not held against its schema: its 201 carries the entry
when the whole file came with it and no body otherwise, and OpenAPI cannot say "a body
or none" (the document says it in words). The tus PATCH is exercised with the other
operations (its body is a plain byte stream, sent as generated): on an upload the
fuzzer made itself (found through POST's Location) and on made-up ids (404).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events
from schemathesis.transport.serialization import Binary

from dropline.server.settings import Settings
from tests.server.http.openapi_formats import register
from tests.support.live import ALL_TEST_SCOPES, LiveServer, running_server

SEED = 20261206
MAX_EXAMPLES = 8
STATE_DEPENDENT = ["410", "412", "416", "422"]
DEFAULT_ACCEPTED = ["2XX", "3XX", "401", "403", "404", "409", "429", "5XX"]


@schemathesis.serializer("application/offset+octet-stream")
def tus_bytes(_ctx: Any, value: Any) -> bytes:
    """The tus PATCH body is raw bytes, sent as generated."""
    if isinstance(value, Binary):
        return value.data
    return value if isinstance(value, bytes) else str(value).encode()


@pytest.fixture
def fuzzed_server(server_settings: Settings) -> Iterator[LiveServer]:
    """The default server, except: outbound calls may go to loopback (webhooks and pushes
    aim at a closed local port), long-polls answer at once, and neither the ban of
    failing addresses nor rate limits stop the fuzzer (both have their own tests)."""
    settings = replace(
        server_settings,
        allow_private_targets=True,
        longpoll_max_seconds=0,
        defender_max_failures=1_000_000,
        rate_limit_per_credential="1000000/second",
        rate_limit_per_endpoint="1000000/second",
        rate_limit_per_ip="1000000/second",
        webhook_retry_schedule=(0.2,),
        transfer_retry_schedule=(0.2,),
    )
    with running_server(settings) as live:
        yield live


def admin_key(live: LiveServer) -> str:
    live.identity.create_tenant("acme")
    live.identity.create_user("acme", "root@acme.example", "correct horse battery", admin=True)
    return live.new_key(tenant="acme", email="root@acme.example", scopes=ALL_TEST_SCOPES)


def config(key: str) -> SchemathesisConfig:
    accepted = DEFAULT_ACCEPTED + STATE_DEPENDENT
    positive = {"positive_data_acceptance": {"expected-statuses": accepted}}
    wider = {"positive_data_acceptance": {"expected-statuses": [*accepted, "400"]}}
    return SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            # No crash cache in the working tree: every run is the same run.
            "cache": {"enabled": False},
            "headers": {"Authorization": f"Bearer {key}"},
            "request-timeout": 20,
            "continue-on-failure": True,
            "generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "no-shrink": True},
            "phases": {"stateful": {"enabled": False}},
            "checks": {
                "enabled": False,
                "not_a_server_error": {"enabled": True},
                "response_schema_conformance": {"enabled": True},
                "positive_data_acceptance": {
                    "enabled": True,
                    **positive["positive_data_acceptance"],
                },
            },
            "operations": [
                {"include-path-regex": "^/(oauth/|device$)", "checks": wider},
                {"include-path": "/api/v1/files", "include-method": "GET", "checks": wider},
                {"include-path": "/api/v1/uploads/batch", "checks": wider},
                {"include-path-regex": "^/api/v1/admin/", "checks": wider},
                {
                    "include-path": "/api/v1/uploads/{upload_id}",
                    "include-method": "PATCH",
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": [*accepted, "400", "460"]}
                    },
                },
                {
                    # The policy's time zone is one of some 600 names, and the coverage
                    # phase would try each in turn: fuzzing alone stays within the budget.
                    "include-path-regex": "/policy$",
                    "include-method": "PUT",
                    "phases": {"coverage": {"enabled": False}},
                },
                {
                    "include-path": "/api/v1/uploads",
                    "include-method": "POST",
                    "checks": {"response_schema_conformance": {"enabled": False}},
                },
            ],
        }
    )


def _answer(recorder: Any, case_id: str) -> str:
    interaction = recorder.interactions.get(case_id)
    response = getattr(interaction, "response", None)
    if response is None:
        return "no answer"
    return f"{response.status_code} {response.content[:300]!r}"


def failures(stream: Any) -> tuple[list[str], int]:
    found: list[str] = []
    scenarios = 0
    for event in stream:
        if isinstance(event, events.NonFatalError):
            found.append(f"{event.label}: error {event.info.message}")
        if isinstance(event, events.FatalError):
            found.append(f"engine: fatal error {event.exception!r}")
        if isinstance(event, events.ScenarioFinished):
            scenarios += 1
            for case_id, checks in event.recorder.checks.items():
                for check in checks:
                    if check.status == Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        found.append(
                            f"{event.recorder.label} [{event.phase.value}] {failure.title}: "
                            f"{failure.message}\n    {check.failure_info.code_sample}"
                            f"\n    -> {_answer(event.recorder, case_id)}"
                        )
    return sorted(set(found)), scenarios


@pytest.mark.timeout(300)
def test_every_operation_answers_as_its_schema_says(fuzzed_server: LiveServer) -> None:
    register()
    key = admin_key(fuzzed_server)
    schema = schemathesis.openapi.from_url(fuzzed_server.url + "/openapi.json", config=config(key))
    assert len(list(schema.get_all_operations())) >= 79
    started = time.monotonic()
    found, scenarios = failures(schemathesis.engine.from_schema(schema).execute())
    elapsed = time.monotonic() - started
    assert scenarios >= 150, f"only {scenarios} scenarios ran"
    assert not found, f"{len(found)} failure(s) in {elapsed:.0f} s:\n" + "\n".join(found)
