"""The server part of ``make demo``: an API key and a sign-in password for the demo
user, each kept in a 0600 file, the same on the next run, and printed for the person."""

from __future__ import annotations

import stat
from pathlib import Path

from dropline.server.identity.oauth.signin import check_password
from dropline.server.settings import Settings
from dropline.server.storage.db import Database
from tools.demo import EMAIL, describe_server, start_server


def test_demo_server_gives_a_key_and_a_password_that_sign_in(tmp_path: Path) -> None:
    demo = tmp_path / ".demo"
    demo.mkdir()
    first = start_server(demo)
    first.stop()
    password_file = demo / "password"
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((demo / "api-key").stat().st_mode) == 0o600
    server = start_server(demo)
    try:
        assert server.info["password"] == first.info["password"]
        assert server.info["key"] == first.info["key"]
        text = describe_server(server)
        assert f"{server.info['url']}/ as {EMAIL}, password {server.info['password']}" in text
    finally:
        server.stop()
    db = Database(Settings(data_dir=Path(server.info["data_dir"])).database_url)
    try:
        signed_in = check_password(db, "", EMAIL, password_file.read_text().strip())
    finally:
        db.dispose()
    assert signed_in.email == EMAIL
