"""How TCP extensions (MPTCP subflows, TCP-ENO) plug into a TcpConnection.

An extension adds options to the segments the connection sends, reads the
options of the segments it receives, hears of state changes, and may take
over the byte stream: with ``owns_stream`` true, the application's writes go
to :meth:`TcpExtension.app_send` and in-order received bytes to
:meth:`TcpExtension.stream_received`, and the extension moves bytes with
``conn.send_stream()`` and ``conn.deliver()``.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lab.tcp.connection import TcpConnection
    from lab.tcp.state import TcpState
    from lab.wire.tcp import TcpOption, TcpSegment


class SegmentRole(enum.Enum):
    SYN = "syn"
    SYN_ACK = "syn_ack"
    ACK = "ack"  # no payload, no SYN: the third ACK, pure ACKs, window updates
    DATA = "data"  # carries payload and/or FIN


class TcpExtension:
    """Base class: every hook does nothing, so an extension overrides only what it uses."""

    name = "extension"
    owns_stream = False

    def attach(self, conn: TcpConnection) -> None:
        """Called once when the connection is created with this extension."""
        self.conn = conn

    def options_to_send(self, role: SegmentRole, *, stream_offset: int, length: int, now: float) -> Sequence[TcpOption]:
        """Options for an outgoing segment.

        ``stream_offset`` is the 0-based index in the byte stream of the first
        payload byte (for SYNs, 0) and ``length`` the payload length. The
        connection keeps the total within 40 option bytes by shrinking SACK.
        """
        return ()

    def options_received(self, role: SegmentRole, segment: TcpSegment, *, stream_offset: int, now: float) -> None:
        """Called for every acceptable received segment before its data is processed."""

    def state_changed(self, old: TcpState, new: TcpState, *, now: float) -> None:
        """Called after every state change."""

    def app_send(self, data: bytes) -> None:
        """With ``owns_stream``: the application wrote ``data``."""
        self.conn.send_stream(data)

    def stream_received(self, data: bytes, *, stream_offset: int, now: float) -> None:
        """With ``owns_stream``: in-order bytes of the TCP stream arrived."""
        self.conn.deliver(data)
