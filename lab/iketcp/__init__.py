"""IKE and ESP over a TCP stream (RFC 9329): the sans-I/O stream layer.

:class:`IketcpStream` writes the ``IKETCP`` prefix and length-framed
messages, reads whole IKE messages and ESP packets from TCP's bytes in any
chunking, and closes the stream as the RFC says on bad framing. The
framing's bytes and constants are :mod:`lab.wire.iketcp`.
"""

from lab.iketcp.stream import (
    CLOSED_BAD_LENGTH,
    CLOSED_BAD_PREFIX,
    CLOSED_END_OF_STREAM,
    CLOSED_UNPARSABLE,
    LAYER,
    EspPacketReceived,
    IkeMessageReceived,
    IketcpEvent,
    IketcpStream,
    Role,
    StreamClosed,
    StreamState,
)

__all__ = [
    "CLOSED_BAD_LENGTH",
    "CLOSED_BAD_PREFIX",
    "CLOSED_END_OF_STREAM",
    "CLOSED_UNPARSABLE",
    "LAYER",
    "EspPacketReceived",
    "IkeMessageReceived",
    "IketcpEvent",
    "IketcpStream",
    "Role",
    "StreamClosed",
    "StreamState",
]
