"""Addresses shared by every layer."""

from __future__ import annotations

from typing import NamedTuple


class FourTuple(NamedTuple):
    """A connection's addresses, seen from the local end."""

    local_addr: str
    local_port: int
    remote_addr: str
    remote_port: int

    def reversed(self) -> FourTuple:
        return FourTuple(self.remote_addr, self.remote_port, self.local_addr, self.local_port)

    def __str__(self) -> str:
        text = _TEXT.get(self)
        if text is None:
            text = f"{_fmt(self.local_addr)}:{self.local_port}->{_fmt(self.remote_addr)}:{self.remote_port}"
            if len(_TEXT) < 65536:  # traces name a connection per record: format it once
                _TEXT[self] = text
        return text


_TEXT: dict[FourTuple, str] = {}


def _fmt(addr: str) -> str:
    return f"[{addr}]" if ":" in addr else addr


class Outgoing(NamedTuple):
    """One encoded segment or datagram an endpoint wants sent to ``addr``."""

    addr: FourTuple
    data: bytes
