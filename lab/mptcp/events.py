"""What an MptcpConnection's user reacts to (taken with ``next_event()``)."""

from __future__ import annotations

from dataclasses import dataclass

from lab.tcp.addresses import FourTuple

# the connection's stream events are TCP's own (a host stack hands them to the application alike):
# ConnectionEstablished when the initial subflow's handshake completed (as MPTCP, or fallen back),
# DataReceived with the reassembled data stream, StreamEnded at the peer's DATA_FIN (or, after
# fallback, its FIN), ConnectionTerminated (reset also for MP_FASTCLOSE)
from lab.tcp.events import ConnectionEstablished, ConnectionTerminated, DataReceived, StreamEnded

__all__ = [
    "AddressAnnounced",
    "ConnectionEstablished",
    "ConnectionTerminated",
    "DataReceived",
    "FallbackToTcp",
    "MptcpEvent",
    "StreamEnded",
    "SubflowClosed",
    "SubflowEstablished",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class MptcpEvent:
    """Base class of MPTCP events."""


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
