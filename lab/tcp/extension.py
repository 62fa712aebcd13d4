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
    #: option bytes the extension adds to data segments; the connection keeps
    #: that much room below the MSS so segments never exceed the path MTU
    data_option_bytes = 0

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

    def rst_options(self) -> Sequence[TcpOption]:
        """Options for a RST this connection sends (MPTCP: MP_TCPRST, MP_FASTCLOSE)."""
        return ()

    def rst_received(self, segment: TcpSegment, *, now: float) -> None:
        """Called for an acceptable RST (it ends the connection) before the connection
        reports its end: the options it carries (MPTCP: MP_TCPRST's reason, MP_FASTCLOSE)."""

    def receive_window(self) -> int | None:
        """Bytes the extension can still take in, when it (not the TCP buffer) bounds the window."""
        return None

    def segment_limit(self, stream_offset: int) -> int:
        """The most payload bytes a new segment starting at ``stream_offset`` may carry.

        Only consulted when a subclass overrides it (MPTCP keeps every segment
        inside one DSS mapping).
        """
        return 1 << 62

    def state_changed(self, old: TcpState, new: TcpState, *, now: float) -> None:
        """Called after every state change."""

    def app_send(self, data: bytes) -> None:
        """With ``owns_stream``: the application wrote ``data``."""
        self.conn.send_stream(data)

    def stream_received(self, data: bytes, *, stream_offset: int, now: float) -> None:
        """With ``owns_stream``: in-order bytes of the TCP stream arrived."""
        self.conn.deliver(data)

    def app_close(self, *, now: float) -> bool:
        """With ``owns_stream``: the application called close().

        Return True to let the FIN be queued now (after what the extension has
        already handed to ``conn.send_stream()``), False to hold it back; the
        extension then calls ``conn.close()`` itself once its last bytes are out.
        """
        return True

    def stream_ended(self, *, now: float) -> bool:
        """With ``owns_stream``: the peer's FIN arrived in order.

        Return True to hand the application its StreamEnded event, False when the
        extension ends the stream its own way (e.g. aborts a truncated one).
        """
        return True

    def get_timer(self) -> float | None:
        """The earliest time the extension's handle_timer() must run, or None."""
        return None

    def handle_timer(self, *, now: float) -> None:
        """Called from the connection's handle_timer() once get_timer() is due."""
