"""Undo through a real agent and a real server: versions, restore, trash, undelete and
conflicts, by local path over the control socket and the CLI. Each file that comes back
is seen arriving in the folder through ordinary sync."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from dropline.agent.control import ControlError
from dropline.agent.control import protocol as p
from tests.agent.support import AgentEnv, wait_for
from tests.support.live import LiveServer

SYNC_WAIT = 60.0


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Server:
    """The server as another computer sees it: the agent's user's key, over the API."""

    def __init__(self, url: str, key: str) -> None:
        self.url = url
        self.headers = {"Authorization": f"Bearer {key}"}

    def entry(self, path: str) -> dict[str, Any] | None:
        answer = httpx.get(
            f"{self.url}/api/v1/metadata", params={"path": path}, headers=self.headers
        )
        if answer.status_code == 404:
            return None
        answer.raise_for_status()
        return dict(answer.json())

    def sha(self, path: str) -> str | None:
        entry = self.entry(path)
        return None if entry is None else entry.get("sha256")

    def trash_paths(self) -> list[str]:
        answer = httpx.get(f"{self.url}/api/v1/trash", headers=self.headers)
        answer.raise_for_status()
        return [item["path"] for item in answer.json()["items"]]

    def revision_hashes(self, path: str) -> list[str]:
        entry = self.entry(path)
        assert entry is not None
        answer = httpx.get(f"{self.url}/api/v1/files/{entry['id']}/revisions", headers=self.headers)
        answer.raise_for_status()
        return [r["sha256"] for r in answer.json()["revisions"]]

    def put(self, path: str, data: bytes, if_rev: str) -> None:
        """A new revision of ``path`` made elsewhere."""
        metadata = ",".join(
            f"{k} {base64.b64encode(v.encode()).decode()}"
            for k, v in (("path", path), ("if_rev", if_rev))
        )
        answer = httpx.post(
            f"{self.url}/api/v1/uploads",
            content=data,
            headers={
                **self.headers,
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(len(data)),
                "Upload-Metadata": metadata,
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert answer.status_code == 201, answer.text


@pytest.fixture
def box(tmp_path: Path) -> Path:
    folder = tmp_path / "Box"
    folder.mkdir()
    return folder


@pytest.fixture
def server(live_server: LiveServer, api_key: str) -> Server:
    return Server(live_server.url, api_key)


@pytest.fixture
def env(tmp_path: Path, live_server: LiveServer, api_key: str, box: Path) -> Iterator[AgentEnv]:
    e = AgentEnv(tmp_path)
    e.extra_env["DROPLINE_API_KEY"] = api_key
    e.write_config(
        f'server_url = "{live_server.url}"\n\n[[folders]]\nlocal = "{box}"\nremote = "/box"\n'
    )
    e.start(wait=60)
    yield e
    e.stop()


def write_synced(server: Server, local: Path, remote: str, data: bytes) -> None:
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(data)
    wait_for(lambda: server.sha(remote) == sha(data), timeout=SYNC_WAIT)


def code_of(call: Any) -> tuple[str, str]:
    with pytest.raises(ControlError) as caught:
        call()
    return caught.value.code, caught.value.message


def test_versions_are_listed_restored_and_opened_by_local_path(
    env: AgentEnv, server: Server, box: Path
) -> None:
    plan = box / "plans" / "plan.txt"
    write_synced(server, plan, "/box/plans/plan.txt", b"first draft")
    write_synced(server, plan, "/box/plans/plan.txt", b"second draft, over the first")

    with env.client() as c:
        listing = c.versions(str(plan))
        assert listing["file"]["path"] == str(plan)
        assert listing["file"]["remote"] == "/box/plans/plan.txt"
        current, older = listing["revisions"]
        assert current["current"] and not older["current"]
        assert (current["sha256"], older["sha256"]) == (
            sha(b"second draft, over the first"),
            sha(b"first draft"),
        )
        assert older["client"] is not None and older["client"].startswith("dropline-agent/")
        assert older["user"] is not None and older["user"]["email"] == "alice@example.com"

        # A copy of the first draft, verified, in the agent's cache: never in the folder.
        copy = Path(c.open_version_copy(str(plan), older["rev"]))
        assert copy.read_bytes() == b"first draft"
        assert copy.is_relative_to(env.home / "cache") and not copy.is_relative_to(box)
        assert copy.name.startswith("plan (version ") and copy.name.endswith(").txt")
        assert Path(c.open_version_copy(str(plan), older["rev"])) == copy  # opened again

    table = env.cli("versions", str(plan))
    assert table.code == 0, table.err
    lines = table.out.splitlines()
    assert lines[0] == f"{plan} (/box/plans/plan.txt on the server)"
    assert "WHEN" in lines[1] and "(current)" in lines[2] and current["rev"] in lines[2]
    assert older["rev"] in lines[3] and "alice@example.com" in lines[3]
    assert "dropline-agent/" in lines[3] and "(current)" not in lines[3]
    assert json.loads(env.cli("versions", str(plan), "--json").out) == listing

    # No --rev: the newest earlier version, seen arriving in the folder.
    restored = env.cli("restore", str(plan))
    assert restored.code == 0, restored.err
    assert plan.read_bytes() == b"first draft"
    assert "waiting for" in restored.err and restored.out.startswith(f"restored {plan}")
    assert server.revision_hashes("/box/plans/plan.txt") == [
        sha(b"first draft"),
        sha(b"second draft, over the first"),
        sha(b"first draft"),
    ]

    # And back again by revision, as JSON; the version it replaces is kept.
    again = env.cli("restore", str(plan), "--rev", current["rev"], "--json")
    assert again.code == 0, again.err
    result = json.loads(again.out)
    assert result["arrived"] is True and result["local"] == str(plan)
    assert result["entry"]["sha256"] == sha(b"second draft, over the first")
    assert plan.read_bytes() == b"second draft, over the first"
    with env.client() as c:
        newest = c.versions(str(plan))["revisions"][0]
    already = env.cli("restore", str(plan), "--rev", newest["rev"])
    assert already.code == 1 and "already the current one" in already.err


def test_deleted_files_and_folders_come_back_with_undelete(
    env: AgentEnv, server: Server, box: Path
) -> None:
    write_synced(server, box / "a.txt", "/box/a.txt", b"alpha")
    write_synced(server, box / "sub" / "one.txt", "/box/sub/one.txt", b"one")
    write_synced(server, box / "sub" / "deep" / "two.txt", "/box/sub/deep/two.txt", b"two")
    (box / "a.txt").unlink()
    shutil.rmtree(box / "sub")
    wait_for(lambda: sorted(server.trash_paths()) == ["/box/a.txt", "/box/sub"], timeout=SYNC_WAIT)

    listed = env.cli("trash")
    assert listed.code == 0, listed.err
    assert f"{box}/sub/" in listed.out and "(folder, 2 files)" in listed.out
    assert f"{box}/a.txt" in listed.out and "(taken)" not in listed.out
    items = json.loads(env.cli("trash", "--json").out)
    assert {(i["local"], i["folder"], i["files"]) for i in items} == {
        (str(box / "a.txt"), str(box), 1),
        (str(box / "sub"), str(box), 2),
    }
    found = json.loads(env.cli("trash", "--search", "SUB", "--folder", str(box), "--json").out)
    assert [i["local"] for i in found] == [str(box / "sub")]
    assert env.cli("trash", "--search", "nothing-like-it").out.strip() == (
        "nothing in the trash matches"
    )

    back = env.cli("undelete", str(box / "a.txt"))
    assert back.code == 0, back.err
    assert (box / "a.txt").read_bytes() == b"alpha"
    folder = env.cli("undelete", str(box / "sub"))
    assert folder.code == 0, folder.err
    assert (box / "sub" / "one.txt").read_bytes() == b"one"
    assert (box / "sub" / "deep" / "two.txt").read_bytes() == b"two"
    assert server.trash_paths() == []
    nothing = env.cli("undelete", str(box / "a.txt"))
    assert nothing.code == 1 and f"nothing in the trash at {box / 'a.txt'}" in nothing.err

    # Deleted again, and a new file took its place: it comes back under another name.
    (box / "a.txt").unlink()
    wait_for(lambda: server.trash_paths() == ["/box/a.txt"], timeout=SYNC_WAIT)
    write_synced(server, box / "a.txt", "/box/a.txt", b"a new alpha")
    assert "(taken)" in env.cli("trash").out
    taken = env.cli("undelete", str(box / "a.txt"))
    assert taken.code == 1 and "--to" in taken.err
    assert (box / "a.txt").read_bytes() == b"a new alpha"
    elsewhere = env.cli("undelete", str(box / "a.txt"), "--to", str(box / "old" / "a.txt"))
    assert elsewhere.code == 0, elsewhere.err
    assert (box / "old" / "a.txt").read_bytes() == b"alpha"
    assert (box / "a.txt").read_bytes() == b"a new alpha"


def arrived(local: Path, data: bytes) -> None:
    wait_for(lambda: local.exists() and local.read_bytes() == data, timeout=SYNC_WAIT)


def on_server(server: Server, path: str, data: bytes) -> None:
    wait_for(lambda: server.sha(path) == sha(data), timeout=SYNC_WAIT)


def conflicts(env: AgentEnv, count: int) -> dict[str, p.IssueJSON]:
    def ready() -> dict[str, p.IssueJSON] | None:
        with env.client() as c:
            found = {i["path"]: i for i in c.issues() if i["kind"] == "conflict"}
        return found if len(found) == count else None

    result: dict[str, p.IssueJSON] = wait_for(ready, timeout=SYNC_WAIT)
    return result


def test_conflicts_are_settled_keeping_both_mine_or_theirs(
    env: AgentEnv, server: Server, box: Path
) -> None:
    names = ("both.txt", "mine.txt", "theirs.txt")
    for name in names:
        write_synced(server, box / name, f"/box/{name}", b"the original")
    assert env.cli("pause").code == 0
    for name in names:
        (box / name).write_bytes(f"mine: {name}".encode())
        entry = server.entry(f"/box/{name}")
        assert entry is not None
        server.put(f"/box/{name}", f"theirs: {name}".encode(), entry["rev"])
    assert env.cli("resume").code == 0
    issues = conflicts(env, 3)
    copies = {name: box / issues[name]["related_paths"][1] for name in names}
    for name in names:
        arrived(box / name, f"theirs: {name}".encode())
        assert copies[name].read_bytes() == f"mine: {name}".encode()
        on_server(server, f"/box/{copies[name].name}", f"mine: {name}".encode())

    with env.client() as c:
        assert c.resolve_conflict(issues["both.txt"]["id"], "both") == {}
        assert c.resolve_conflict(issues["mine.txt"]["id"], "mine") == {}
        assert c.resolve_conflict(issues["theirs.txt"]["id"], "theirs") == {}
        assert [i for i in c.issues() if i["kind"] == "conflict"] == []
        gone = code_of(lambda: c.resolve_conflict(issues["both.txt"]["id"], "both"))
        assert gone[0] == p.NOT_FOUND

    # Both: the two files stay, here and on the server.
    assert (box / "both.txt").read_bytes() == b"theirs: both.txt"
    assert copies["both.txt"].read_bytes() == b"mine: both.txt"
    # Mine: the copy's content is the file, uploaded as a new revision (theirs is kept as
    # an earlier one); the copy's removal went to the trash.
    mine = b"mine: mine.txt"
    assert (box / "mine.txt").read_bytes() == mine and not copies["mine.txt"].exists()
    wait_for(lambda: server.sha("/box/mine.txt") == sha(mine), timeout=SYNC_WAIT)
    assert sha(b"theirs: mine.txt") in server.revision_hashes("/box/mine.txt")
    # Theirs: the local copy is deleted, and can be brought back from the trash.
    assert (box / "theirs.txt").read_bytes() == b"theirs: theirs.txt"
    assert not copies["theirs.txt"].exists()
    wait_for(
        lambda: (
            {f"/box/{copies[n].name}" for n in ("mine.txt", "theirs.txt")}
            <= set(server.trash_paths())
        ),
        timeout=SYNC_WAIT,
    )
    assert server.sha(f"/box/{copies['both.txt'].name}") == sha(b"mine: both.txt")


def test_bad_requests_get_clear_errors_and_change_nothing(
    env: AgentEnv, server: Server, box: Path, tmp_path: Path
) -> None:
    write_synced(server, box / "kept.txt", "/box/kept.txt", b"kept")
    outside = tmp_path / "elsewhere" / "x.txt"
    with env.client() as c:
        code, message = code_of(lambda: c.versions(str(outside)))
        assert code == p.INVALID and "not inside a synced folder" in message
        code, message = code_of(lambda: c.versions("Box/kept.txt"))
        assert code == p.INVALID and "not an absolute path" in message
        code, message = code_of(lambda: c.versions(str(box / "never-synced.txt")))
        assert code == p.NOT_FOUND and "not on the server" in message
        code, message = code_of(lambda: c.versions(str(box)))
        assert code == p.INVALID and "is a folder" in message
        code, _ = code_of(lambda: c.restore_version(str(box / "kept.txt"), "no-such-rev"))
        assert code == p.NOT_FOUND
        code, _ = code_of(lambda: c.open_version_copy(str(box / "kept.txt"), "no-such-rev"))
        assert code == p.NOT_FOUND
        code, _ = code_of(lambda: c.trash(folder=str(tmp_path / "not-a-folder")))
        assert code == p.NOT_FOUND
        code, _ = code_of(lambda: c.restore_from_trash("no-such-item"))
        assert code == p.NOT_FOUND
        code, _ = code_of(lambda: c.resolve_conflict(123456, "mine"))
        assert code == p.NOT_FOUND
        code, _ = code_of(lambda: c.call("conflicts.resolve", {"id": 1, "keep": "all"}))
        assert code == p.BAD_REQUEST
        assert len(c.versions(str(box / "kept.txt"))["revisions"]) == 1

    cli = env.cli("versions", str(outside))
    assert cli.code == 1 and "not inside a synced folder" in cli.err
    assert cli.err.count("\n") == 1 and "Traceback" not in cli.err
    unknown = env.cli("restore", str(box / "kept.txt"), "--rev", "no-such-rev")
    assert unknown.code == 1 and "Traceback" not in unknown.err
    only = env.cli("restore", str(box / "kept.txt"))
    assert only.code == 1 and "no earlier version" in only.err
    not_synced = env.cli("undelete", str(outside))
    assert not_synced.code == 1 and "not inside a synced folder" in not_synced.err
    bad_timeout = env.cli("restore", str(box / "kept.txt"), "--timeout", "-3")
    assert bad_timeout.code == 2
    assert (box / "kept.txt").read_bytes() == b"kept"
    assert server.trash_paths() == []


def test_without_a_sign_in_or_a_running_agent_the_commands_say_so(
    tmp_path: Path, live_server: LiveServer, box: Path
) -> None:
    env = AgentEnv(tmp_path, "signed-out")
    env.write_config(
        f'server_url = "{live_server.url}"\n\n[[folders]]\nlocal = "{box}"\nremote = "/box"\n'
    )
    stopped = env.cli("trash")
    assert stopped.code == 4 and "not running" in stopped.err
    env.start()
    try:
        with env.client() as c:
            code, message = code_of(lambda: c.versions(str(box / "a.txt")))
            assert code == p.UNAVAILABLE and "not signed in" in message
            code, message = code_of(lambda: c.trash())
            assert code == p.UNAVAILABLE and "not signed in" in message
        result = env.cli("undelete", str(box / "a.txt"))
        assert result.code == 1 and "not signed in" in result.err
        assert "dropline-agent login" in result.err
    finally:
        env.stop()
    assert not os.listdir(box)
