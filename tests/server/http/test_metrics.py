"""``/metrics`` scraped from the live server: request counts and latency by route template,
upload and download bytes, active long-polls, webhook outcomes and transfer states."""

from __future__ import annotations

import threading

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.server.ops_helpers import (
    create_webhook,
    ops_client,
    start_transfer,
    upload,
    wait_transfer,
)
from tests.support.live import LiveServer
from tests.support.receiver import Receiver, wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(live: LiveServer) -> tuple[str, Samples]:
    r = httpx.get(live.url + "/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return r.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def test_requests_are_counted_and_timed_by_route_template(
    ops_server: LiveServer, alice: httpx.Client
) -> None:
    entry = upload(alice, "/m/one.txt", b"one")
    for _ in range(3):
        assert alice.get(f"/api/v1/files/{entry['id']}").status_code == 200
    assert alice.get("/api/v1/files/does-not-exist").status_code == 404
    text, samples = scrape(ops_server)
    route = "/api/v1/files/{entry_id}"
    assert (
        value(samples, "dropline_http_requests_total", method="GET", route=route, status="200") == 3
    )
    assert (
        value(samples, "dropline_http_requests_total", method="GET", route=route, status="404") == 1
    )
    count = value(
        samples, "dropline_http_request_duration_seconds_count", method="GET", route=route
    )
    assert count == 4
    assert entry["id"] not in text  # ids never become labels
    assert "does-not-exist" not in text
    httpx.get(ops_server.url + "/no/such/route")
    _text, after = scrape(ops_server)
    assert (
        value(
            after, "dropline_http_requests_total", method="GET", route="<unmatched>", status="404"
        )
        == 1
    )


def test_upload_and_download_bytes_are_counted(ops_server: LiveServer, alice: httpx.Client) -> None:
    _text, before = scrape(ops_server)
    data = b"x" * 50_000
    entry = upload(alice, "/m/big.bin", data)
    assert alice.get(f"/api/v1/files/{entry['id']}/content").content == data
    _text, after = scrape(ops_server)
    uploaded = value(after, "dropline_upload_bytes_total") - value(
        before, "dropline_upload_bytes_total"
    )
    downloaded = value(after, "dropline_download_bytes_total") - value(
        before, "dropline_download_bytes_total"
    )
    assert uploaded == len(data)
    assert downloaded == len(data)


def test_active_long_polls_are_gauged(ops_server: LiveServer, alice: httpx.Client) -> None:
    cursor = alice.get("/api/v1/changes/latest-cursor").json()["cursor"]
    answered: list[int] = []

    def poll() -> None:
        with ops_client(ops_server) as poller:
            r = poller.get("/api/v1/changes/wait", params={"cursor": cursor, "timeout": 30})
            answered.append(r.status_code)

    waiter = threading.Thread(target=poll)
    waiter.start()
    try:
        wait_until(lambda: value(scrape(ops_server)[1], "dropline_longpolls_active") == 1)
    finally:
        upload(alice, "/m/wake.txt", b"wake up")
        waiter.join(30)
    assert answered == [200]
    assert value(scrape(ops_server)[1], "dropline_longpolls_active") == 0


def test_webhook_outcomes_and_transfer_states_are_exposed(
    ops_server: LiveServer, alice: httpx.Client, receiver: Receiver
) -> None:
    hook = create_webhook(alice, receiver.url, ["transfer.completed"])
    entry = upload(alice, "/m/report.txt", b"report")
    done = wait_transfer(
        alice, start_transfer(alice, [entry["id"]], {"type": "folder", "path": "/copy"})["id"]
    )
    assert done["state"] == "completed"
    receiver.wait_count(1)
    wait_until(
        lambda: (
            value(
                scrape(ops_server)[1], "dropline_webhook_delivery_attempts_total", outcome="success"
            )
            == 1
        )
    )
    _text, samples = scrape(ops_server)
    assert value(samples, "dropline_transfers", state="completed") == 1
    assert value(samples, "dropline_transfers", state="queued") == 0
    assert (
        value(samples, "dropline_transfers_finished_total", kind="folder", state="completed") == 1
    )
    assert value(samples, "dropline_webhook_deliveries", state="succeeded") == 1
    assert hook["id"] not in _text


def test_share_link_downloads_count_but_listings_do_not(
    ops_server: LiveServer, alice: httpx.Client
) -> None:
    data = b"s" * 7000
    entry = upload(alice, "/m/shared.bin", data)
    done = wait_transfer(alice, start_transfer(alice, [entry["id"]], {"type": "link"})["id"])
    _text, before = scrape(ops_server)
    listing = httpx.get(done["result"]["url"])
    file_url = ops_server.url + listing.json()["files"][0]["url"]
    assert httpx.get(file_url).content == data
    _text, after = scrape(ops_server)
    sent = value(after, "dropline_download_bytes_total") - value(
        before, "dropline_download_bytes_total"
    )
    assert sent == len(data)
