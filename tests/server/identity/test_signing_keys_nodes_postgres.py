"""Signing keys shared by the nodes of one PostgreSQL database: a token issued by one
node verifies on another, a rotation is honoured at once everywhere, and nodes
starting together on an empty table make one key between them."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from sqlalchemy import select

from dropline.server.identity.key_table import TableSigningKeys
from dropline.server.storage import schema
from dropline.server.storage.db import Database
from dropline.server.storage.migrations import migrate
from tests.support.browser import pkce_tokens
from tests.support.live import ServerProcess
from tests.support.nodes import migrated_with_key

EMAIL = "alice@example.com"
ADMIN = [sys.executable, "-m", "dropline.server.cli"]


def shared_env(base: Path, database_url: str) -> dict[str, str]:
    """What every node behind one load balancer is given alike: the database, the blob
    store, the master key and the public URL (the tokens' issuer and audience)."""
    return {
        "DROPLINE_PUBLIC_URL": "https://files.example.test",
        "DROPLINE_DATABASE_URL": database_url,
        "DROPLINE_BLOB_URL": (base / "blobs").as_uri(),
        "DROPLINE_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
    }


@contextmanager
def nodes_with(base: Path, envs: list[dict[str, str]]) -> Iterator[list[ServerProcess]]:
    started = [ServerProcess(base / f"node-{n}", extra_env=env) for n, env in enumerate(envs, 1)]
    try:
        for node in started:
            node.start(timeout=60)
        yield started
    finally:
        for node in started:
            node.stop()


def signing_keys(base: Path, env: dict[str, str], *args: str) -> None:
    """``dropline-server signing-keys ...`` as an operator runs it, with the nodes' settings."""
    done = subprocess.run(
        [*ADMIN, "signing-keys", *args, "--data-dir", str(base / "admin")],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr


def header_kid(token: str) -> str:
    head = token.split(".")[0]
    return str(json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4)))["kid"])


def me(node: ServerProcess, token: str) -> httpx.Response:
    return httpx.get(f"{node.url}/api/v1/me", headers={"Authorization": f"Bearer {token}"})


def live_rows(database_url: str) -> list[tuple[str, bool]]:
    db = Database(database_url)
    try:
        with db.read() as conn:
            rows = conn.execute(
                select(schema.signing_keys.c.kid, schema.signing_keys.c.sealed).where(
                    schema.signing_keys.c.retired_at.is_(None)
                )
            ).all()
    finally:
        db.dispose()
    return [(r.kid, r.sealed) for r in rows]


def test_a_token_issued_by_node_1_is_accepted_by_node_2(tmp_path: Path, postgres_url: str) -> None:
    migrated_with_key(postgres_url, ("files:read",))
    env = shared_env(tmp_path, postgres_url)
    with nodes_with(tmp_path, [env, env]) as (one, two):
        token = pkce_tokens(one.url, EMAIL)["access_token"]
        answer = me(two, token)
        assert answer.status_code == 200, answer.text
        assert answer.json()["user"]["email"] == EMAIL
        # Both publish the same key set: the one key in the table.
        jwks = [httpx.get(f"{n.url}/.well-known/jwks.json").json() for n in (one, two)]
        assert jwks[0] == jwks[1]
        assert [k["kid"] for k in jwks[0]["keys"]] == [header_kid(token)]
        # A forged token naming an unknown kid is still refused.
        forged = token.rsplit(".", 1)[0] + ".AAAA"
        assert me(two, forged).status_code == 401
    rows = live_rows(postgres_url)
    assert rows == [(header_kid(token), True)]  # sealed with the master key given


def test_a_rotation_is_honoured_on_the_other_node_at_once(
    tmp_path: Path, postgres_url: str
) -> None:
    migrated_with_key(postgres_url, ("files:read",))
    env = shared_env(tmp_path, postgres_url)
    # Node 1 picks up the new key within a fraction of a second; node 2 would not re-read
    # on its own for an hour, so only the unknown-kid re-read can let it verify.
    fast = {**env, "DROPLINE_SIGNING_KEY_REFRESH_SECONDS": "0.2"}
    slow = {**env, "DROPLINE_SIGNING_KEY_REFRESH_SECONDS": "3600"}
    with nodes_with(tmp_path, [fast, slow]) as (one, two):
        before = pkce_tokens(one.url, EMAIL)["access_token"]
        assert me(two, before).status_code == 200
        signing_keys(tmp_path, env, "rotate")
        new_kid = {kid for kid, _ in live_rows(postgres_url)} - {header_kid(before)}
        assert len(new_kid) == 1
        after = pkce_tokens(one.url, EMAIL)["access_token"]
        assert header_kid(after) == next(iter(new_kid))
        answer = me(two, after)
        assert answer.status_code == 200, answer.text
        # The older key keeps verifying until retired: nobody is logged out.
        assert me(two, before).status_code == 200
        published = httpx.get(f"{two.url}/.well-known/jwks.json").json()["keys"]
        assert {k["kid"] for k in published} == {header_kid(before), header_kid(after)}
        # Retiring the old key in the table ends its tokens on the nodes that re-read.
        signing_keys(tmp_path, env, "retire", header_kid(before))
        assert [kid for kid, _ in live_rows(postgres_url)] == [header_kid(after)]
        time.sleep(0.5)
        assert me(one, before).status_code == 401
        assert me(one, after).status_code == 200


def test_two_nodes_starting_at_once_make_one_key(tmp_path: Path, postgres_url: str) -> None:
    migrated_with_key(postgres_url, ("files:read",))
    env = shared_env(tmp_path, postgres_url)
    nodes = [ServerProcess(tmp_path / f"node-{n}", extra_env=env) for n in (1, 2, 3)]
    failures: list[BaseException] = []

    def start(node: ServerProcess) -> None:
        try:
            node.start(timeout=60)
        except BaseException as exc:  # reported below, with the others
            failures.append(exc)

    threads = [threading.Thread(target=start, args=(node,)) for node in nodes]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        assert len(live_rows(postgres_url)) == 1
        token = pkce_tokens(nodes[0].url, EMAIL)["access_token"]
        assert all(me(node, token).status_code == 200 for node in nodes)
    finally:
        for node in nodes:
            node.stop()


def test_rings_created_at_once_in_one_process_agree_on_one_key(
    tmp_path: Path, postgres_url: str
) -> None:
    db = Database(postgres_url)
    try:
        migrate(db)
        barrier = threading.Barrier(8)
        kids: list[str] = []

        def make_ring() -> None:
            barrier.wait()
            kids.append(str(TableSigningKeys(tmp_path, db).current().kid))

        threads = [threading.Thread(target=make_ring) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        db.dispose()
    assert len(kids) == 8
    assert len(set(kids)) == 1
    # No master key in this process: stored as is, and said so.
    assert live_rows(postgres_url) == [(kids[0], False)]
