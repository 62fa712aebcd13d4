"""What an IKE endpoint's user reacts to (RFC 7296 SAs, RFC 4303 packets, RFC 9329 transports)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class IkeEvent:
    """Base class of the IKE endpoint's events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackToTcp(IkeEvent):
    """UDP did not get through (or lost the race): IKE now tries TCP to ``port`` (RFC 9329 §5)."""

    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class IkeSaEstablished(IkeEvent):
    """IKE_AUTH completed: both ends authenticated with the pre-shared key."""

    spi_i: bytes
    spi_r: bytes
    transport: str  # "udp" or "tcp": where IKE runs
    port: int
    nat_detected: bool
    esp_transport: str = ""  # where ESP runs when it differs from IKE (separate transports), else ""


@dataclass(frozen=True, slots=True, kw_only=True)
class IkeSaRekeyed(IkeEvent):
    """A CREATE_CHILD_SA exchange replaced the IKE SA (RFC 7296 §2.18): new SPIs and keys, same Child SAs.

    ``initiated`` is True when this end started the rekey (and so is the new SA's original initiator).
    """

    old_spi_i: bytes
    old_spi_r: bytes
    spi_i: bytes
    spi_r: bytes
    initiated: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSaEstablished(IkeEvent):
    """A Child SA is ready: ``spi_in`` is ours (the peer sends with it), ``spi_out`` the peer's."""

    spi_in: int
    spi_out: int
    rekeyed_spi_in: int | None = None  # the Child SA this one replaces (CREATE_CHILD_SA rekey)


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSaFailed(IkeEvent):
    """The peer refused the Child SA (a Notify error in IKE_AUTH or CREATE_CHILD_SA); the IKE SA stays."""

    notify_type: int


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSaDeleted(IkeEvent):
    spi_in: int


@dataclass(frozen=True, slots=True, kw_only=True)
class PacketReceived(IkeEvent):
    """An inner packet out of the tunnel, after ESP verification and the anti-replay check."""

    data: bytes
    next_header: int
    spi: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LivenessChecked(IkeEvent):
    """An INFORMATIONAL liveness check (RFC 7296 §2.4) was answered."""

    round_trip_s: float


@dataclass(frozen=True, slots=True, kw_only=True)
class IkeSaDeleted(IkeEvent):
    """The IKE SA is gone: closed by either end, failed to establish, or the peer stopped answering."""

    reason: str
    error: bool = False
    notify_type: int | None = None
