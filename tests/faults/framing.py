"""Where one HTTP/1.1 message ends and the next begins, read from the bytes passing through
the fault proxy: enough of the protocol to count requests and body bytes and to act at a
chosen byte of a body, nothing more (no pipelining, no upgrades)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

_MAX_HEAD = 256 * 1024

Kind = Literal["partial", "head", "body", "end"]


@dataclass(frozen=True, slots=True)
class Head:
    method: str  # of a request; for a response, the method of the request it answers
    path: str  # a request's path without the query ("" for a response)
    status: int  # a response's status (0 for a request)


@dataclass(frozen=True, slots=True)
class Piece:
    """``size`` bytes of the data just fed: part of a head, a whole head, body, or the end
    of a message (size 0)."""

    kind: Kind
    size: int
    head: Head | None = None


class MessageReader:
    """Reads requests (``requests=True``) or the responses to them from one connection."""

    def __init__(self, requests: bool, answering: Callable[[], str] = lambda: "GET") -> None:
        self.requests = requests
        self.answering = answering  # response side: the method of the request being answered
        self._buf = bytearray()
        self._state = "head"
        self._left = 0
        self.head: Head | None = None

    def feed(self, data: bytes) -> list[Piece]:
        out: list[Piece] = []
        pos = 0
        while pos < len(data):
            pos = self._step(data, pos, out)
        return out

    def _step(self, data: bytes, pos: int, out: list[Piece]) -> int:
        state = self._state
        if state in ("body", "chunk_data"):
            take = min(self._left, len(data) - pos)
            self._left -= take
            out.append(Piece("body", take))
            if self._left == 0:
                if state == "body":
                    self._finish(out)
                else:
                    self._state = "chunk_line"
            return pos + take
        if state == "close":
            out.append(Piece("body", len(data) - pos))
            return len(data)
        marker = b"\r\n\r\n" if state in ("head", "trailer") else b"\r\n"
        before = len(self._buf)
        self._buf += data[pos:]
        if state == "trailer" and self._buf.startswith(b"\r\n"):
            end = 2
        else:
            found = self._buf.find(marker)
            if found < 0:
                if len(self._buf) > _MAX_HEAD:
                    raise ValueError("not HTTP/1.1: no end of head")
                out.append(Piece("partial" if state == "head" else "body", len(data) - pos))
                return len(data)
            end = found + len(marker)
        used = end - before
        text = bytes(self._buf[:end])
        self._buf.clear()
        if state == "head":
            self._on_head(text, used, out)
        elif state == "chunk_line":
            size = int(text.split(b";")[0].strip() or b"0", 16)
            out.append(Piece("body", used))
            if size == 0:
                self._state = "trailer"
            else:
                self._state, self._left = "chunk_data", size + 2
        else:  # the trailer section after the last chunk
            out.append(Piece("body", used))
            self._finish(out)
        return pos + used

    def _on_head(self, text: bytes, used: int, out: list[Piece]) -> None:
        lines = text.decode("latin-1").split("\r\n")
        first = lines[0].split(" ")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = int(headers["content-length"]) if "content-length" in headers else None
        if self.requests:
            self.head = Head(first[0], first[1].split("?", 1)[0] if len(first) > 1 else "", 0)
            bodyless = not chunked and not length
        else:
            method = self.answering()
            status = int(first[1]) if len(first) > 1 and first[1].isdigit() else 0
            self.head = Head(method, "", status)
            bodyless = method == "HEAD" or status in (204, 304) or 100 <= status < 200
            bodyless = bodyless or (length == 0 and not chunked)
        out.append(Piece("head", used, self.head))
        if bodyless:
            self._finish(out)
        elif chunked:
            self._state = "chunk_line"
        elif length is not None:
            self._state, self._left = "body", length
        else:
            self._state = "close"  # a response without a length runs to the end

    def _finish(self, out: list[Piece]) -> None:
        out.append(Piece("end", 0, self.head))
        self._state = "head"
