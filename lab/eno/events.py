"""What an EnoExtension's user reacts to (taken with ``EnoExtension.next_event()``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class EnoEvent:
    """Base class of TCP-ENO events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptionNegotiated(EnoEvent):
    """ENO agreed on a TEP (RFC 8547 §4.6); the TEP's own handshake follows."""

    tep: int
    role: str  # "A" or "B"
    local_application_aware: bool
    remote_application_aware: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionEstablished(EnoEvent):
    """The TEP has its keys: every further byte is encrypted. ``session_id`` is equal at both ends."""

    tep: int
    session_id: bytes
    aead: int
    resumed: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackToTcp(EnoEvent):
    """ENO failed and the policy is opportunistic: the connection goes on as plain TCP."""

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptionRefused(EnoEvent):
    """ENO failed and the policy is mandatory: the connection was reset instead of talking in the clear."""

    reason: str
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class EncryptionAborted(EnoEvent):
    """The TEP gave up (bad handshake message, forged or truncated frame...): the connection was reset."""

    reason: str
    detail: str = ""
