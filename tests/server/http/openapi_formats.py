"""What the OpenAPI document's own string formats look like, taught to schemathesis.

The document names the values only the server hands out (cursors) or whose content no
pattern can check (tus metadata holding a path in base64) as formats of their own; these
strategies make values the server accepts, using the server's own encoders. ``uri`` is
narrowed to loopback URLs on a port nobody listens on: the test server allows private
targets, and a webhook or push aimed there fails fast instead of reaching the internet.
"""

from __future__ import annotations

import base64
import socket
import string
import uuid

import schemathesis
from hypothesis import strategies as st

from dropline.server.files.entries import encode_list_cursor
from dropline.server.files.trash import encode_trash_cursor
from dropline.server.http.routes.audit import encode_cursor
from dropline.server.http.routes.params import CURSOR_FORMATS, UPLOAD_METADATA_FORMAT

_NAME = st.text(alphabet=string.ascii_letters + string.digits + " -_é", min_size=1, max_size=12)
_PATH = st.lists(_NAME, min_size=1, max_size=4).map(lambda names: "/" + "/".join(names))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


@st.composite
def upload_metadata(draw: st.DrawFn) -> str:
    pairs = [f"path {_b64(draw(_PATH))}"]
    if draw(st.booleans()):
        pairs.append(f"mtime {_b64(str(draw(st.integers(0, 2_000_000_000))))}")
    if draw(st.booleans()):
        digest = draw(st.text(alphabet="0123456789abcdef", min_size=64, max_size=64))
        pairs.append(f"sha256 {_b64(digest)}")
    return ",".join(pairs)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def register() -> None:
    port = closed_port()
    schemathesis.openapi.format(CURSOR_FORMATS["list"], _NAME.map(encode_list_cursor))
    schemathesis.openapi.format(
        CURSOR_FORMATS["revisions"],
        st.integers(0, 10**12).map(lambda n: encode_list_cursor(str(n))),
    )
    schemathesis.openapi.format(
        CURSOR_FORMATS["trash"],
        st.builds(
            encode_trash_cursor,
            st.floats(0, 2e9, allow_nan=False, allow_infinity=False),
            st.uuids().map(str),
        ),
    )
    schemathesis.openapi.format(CURSOR_FORMATS["audit"], st.integers(0, 10**12).map(encode_cursor))
    schemathesis.openapi.format(UPLOAD_METADATA_FORMAT, upload_metadata())
    schemathesis.openapi.format(
        "uri", _NAME.map(lambda name: f"http://127.0.0.1:{port}/{uuid.uuid4().hex}/{name}")
    )


__all__ = ["register", "upload_metadata"]
