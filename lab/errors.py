"""The exceptions tcplab raises."""

from __future__ import annotations


class LabError(Exception):
    """Base class of every tcplab error."""


class DecodeError(LabError):
    """Bytes that do not parse as the expected structure.

    ``field`` names the structure's field that was bad and ``offset`` is the
    byte offset (from the start of the decoded buffer) where it starts.
    """

    def __init__(self, message: str, *, field: str, offset: int) -> None:
        super().__init__(f"{message} (field {field!r} at offset {offset})")
        self.reason = message
        self.field = field
        self.offset = offset


class LocalProtocolError(LabError):
    """The local user called an endpoint's API wrongly; nothing was changed."""


class RemoteProtocolError(LabError):
    """The peer broke the protocol; the endpoint reacts as its RFC says."""


class ConfigError(LabError, ValueError):
    """A bad value in a topology, scenario or configuration."""
