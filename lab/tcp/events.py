"""What a TcpConnection's user reacts to (taken with ``next_event()``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpEvent:
    """Base class of TCP events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionEstablished(TcpEvent):
    """The three-way handshake (or simultaneous open) completed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived(TcpEvent):
    """In-order bytes of the peer's stream."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnded(TcpEvent):
    """The peer sent FIN: no more data will arrive."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionTerminated(TcpEvent):
    """The connection is gone. ``reset`` is true when it ended by a RST (sent or received)."""

    reason: str
    reset: bool = False
