"""A raw reader with a position and a known size, seekable anywhere: the base of the
readers that produce a blob's bytes from a position on (checked, sealed, remote)."""

from __future__ import annotations

import io


class PositionedReader(io.RawIOBase):
    """``seek`` only moves the position; subclasses read from ``_pos`` in ``readinto``."""

    def __init__(self, size: int, pos: int) -> None:
        super().__init__()
        self._size = size
        self._pos = pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            offset += self._size
        if offset < 0:
            raise ValueError("negative seek position")
        self._pos = offset
        return offset
