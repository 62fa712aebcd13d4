"""What a TcpcryptStream's user reacts to (taken with ``next_event()``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class TcpcryptEvent:
    """Base class of tcpcrypt events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class HandshakeCompleted(TcpcryptEvent):
    """Keys are in place (after Init1/Init2, or at once for a resumed session)."""

    session_id: bytes  # RFC 8548 §3.4: identical at both ends
    tep: int
    aead: int
    resumed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived(TcpcryptEvent):
    """Authenticated application bytes from one or more frames."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnded(TcpcryptEvent):
    """A frame with FINp arrived and then the TCP stream ended: a clean, authenticated end."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamAborted(TcpcryptEvent):
    """The stream cannot go on (bad Init message, forged frame, truncation...): reset the connection."""

    reason: str
    detail: str = ""
