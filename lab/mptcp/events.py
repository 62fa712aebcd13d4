"""What an MptcpConnection's user reacts to (taken with ``next_event()``)."""

from __future__ import annotations

from dataclasses import dataclass

from lab.tcp.addresses import FourTuple


@dataclass(frozen=True, slots=True, kw_only=True)
class MptcpEvent:
    """Base class of MPTCP events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionEstablished(MptcpEvent):
    """The initial subflow's handshake completed (as MPTCP, or fallen back to TCP)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DataReceived(MptcpEvent):
    """In-order bytes of the peer's data stream (reassembled across subflows)."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamEnded(MptcpEvent):
    """The peer's DATA_FIN (or, after fallback, its FIN): no more data will arrive."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionTerminated(MptcpEvent):
    """The connection is gone. ``reset`` is true when it ended by RST or MP_FASTCLOSE."""

    reason: str
    reset: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SubflowEstablished(MptcpEvent):  # MP_CAPABLE or MP_JOIN handshake done
    addr: FourTuple
    address_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SubflowClosed(MptcpEvent):
    addr: FourTuple
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackToTcp(MptcpEvent):
    """The connection continues as plain TCP on its initial subflow (RFC 8684 §3.7)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AddressAnnounced(MptcpEvent):
    """The peer announced an address with a valid ADD_ADDR."""

    address_id: int
    address: str
    port: int | None
