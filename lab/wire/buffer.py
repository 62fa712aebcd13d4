"""A read cursor over bytes that names what it failed to read."""

from __future__ import annotations

import struct

from lab.errors import DecodeError

_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_U64 = struct.Struct("!Q")


class Buffer:
    """Reads big-endian integers and byte strings from ``data``.

    Every ``pull_*`` raises :class:`DecodeError` naming ``field`` when the data
    runs out. ``commit()`` marks a position that ``rollback()`` returns to, so a
    stream parser can leave half a frame waiting for the rest.
    """

    __slots__ = ("_base", "_data", "_mark", "_pos")

    def __init__(self, data: bytes = b"", *, base_offset: int = 0) -> None:
        self._data = bytes(data)
        self._pos = 0
        self._mark = 0
        self._base = base_offset

    def tell(self) -> int:
        return self._base + self._pos

    def remaining(self) -> int:
        return len(self._data) - self._pos

    def eof(self) -> bool:
        return self._pos >= len(self._data)

    def _need(self, n: int, field: str) -> int:
        pos = self._pos
        if pos + n > len(self._data):
            raise DecodeError(
                f"truncated: need {n} bytes, have {len(self._data) - pos}",
                field=field,
                offset=self._base + pos,
            )
        self._pos = pos + n
        return pos

    def pull_u8(self, field: str = "u8") -> int:
        return self._data[self._need(1, field)]

    def pull_u16(self, field: str = "u16") -> int:
        return _U16.unpack_from(self._data, self._need(2, field))[0]

    def pull_u32(self, field: str = "u32") -> int:
        return _U32.unpack_from(self._data, self._need(4, field))[0]

    def pull_u64(self, field: str = "u64") -> int:
        return _U64.unpack_from(self._data, self._need(8, field))[0]

    def pull_bytes(self, n: int, field: str = "bytes") -> bytes:
        pos = self._need(n, field)
        return self._data[pos : pos + n]

    def pull_rest(self) -> bytes:
        pos, self._pos = self._pos, len(self._data)
        return self._data[pos:]

    def push_data(self, data: bytes) -> None:
        """Append bytes that arrived later (stream parsing); drops what precedes the mark."""
        keep = self._mark  # rollback() must still find the committed position
        self._data = self._data[keep:] + data
        self._base += keep
        self._pos -= keep
        self._mark = 0

    def commit(self) -> None:
        self._mark = self._pos

    def rollback(self) -> None:
        self._pos = self._mark


class Writer:
    """The push-side twin of Buffer: big-endian fields, range-checked by name.

    Every ``push_*`` raises ValueError naming ``field`` when the value does not fit.
    """

    __slots__ = ("_out",)

    def __init__(self) -> None:
        self._out = bytearray()

    def push_u8(self, value: int, field: str) -> None:
        self._out += fit(value, 1, field)

    def push_u16(self, value: int, field: str) -> None:
        self._out += fit(value, 2, field)

    def push_u32(self, value: int, field: str) -> None:
        self._out += fit(value, 4, field)

    def push_u64(self, value: int, field: str) -> None:
        self._out += fit(value, 8, field)

    def push_bytes(self, value: bytes, n: int, field: str) -> None:
        if len(value) != n:
            raise ValueError(f"{field} must be {n} bytes, got {len(value)}")
        self._out += value

    def push_raw(self, value: bytes) -> None:
        self._out += value

    def data(self) -> bytes:
        return bytes(self._out)


def fit(value: int, n: int, field: str) -> bytes:
    """``value`` as ``n`` big-endian bytes. Raises ValueError naming ``field`` when it does not fit."""
    try:
        return int(value).to_bytes(n, "big")
    except OverflowError:
        raise ValueError(f"{field} {value!r} does not fit in {8 * n} unsigned bits") from None


def bits(value: int, width: int, field: str) -> int:
    """``value`` checked to fit ``width`` bits. Raises ValueError naming ``field``."""
    if not 0 <= value < 1 << width:
        raise ValueError(f"{field} {value!r} does not fit in {width} bits")
    return value
