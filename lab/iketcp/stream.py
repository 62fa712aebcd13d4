"""TCP encapsulation of IKE and ESP (RFC 9329, which obsoletes RFC 8229) as a sans-I/O stream layer.

The TCP Originator (``Role.INITIATOR``) sends the 6-byte stream prefix
``IKETCP`` once, first (§4); the TCP Responder sends none and waits for the
whole prefix before parsing anything (§6.1). After it every message is framed
(§3)::

    Length (2, counts itself) | Non-ESP Marker (4 zero bytes) | IKE message
    Length (2, counts itself) | ESP packet (SPI never 0)

What arrives is handled as the RFC says:

* Length 0 or 1: "fatal errors", close the connection (§3.2).
* Length 2, an empty message: "MUST be silently ignored" (§3).
* A 1-byte 0xFF message, the NAT-keepalive: "MUST silently drop" (§6.6).
* Four zero bytes first: IKE (§3). The stream closes when what follows is
  too short to be an IKE header; anything longer goes up as an IKE message,
  even if the IKE layer later rejects it, since a syntax error inside an IKE
  message is IKE's business (INVALID_SYNTAX), not a reason to tear down TCP (§6.1).
* Anything else is ESP, which needs at least SPI and sequence number; 1-3
  byte messages that are not the keepalive and shorter ESP are neither
  marker nor SPI and close the stream.
* A partial message when the stream ends is discarded (§6.1).

``receive_data`` never raises for what the peer sent: problems are recorded
on the tracer (layer ``iketcp``) and end with a :class:`StreamClosed` event.
Closing the TCP connection itself is the caller's job once that event appears.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Any

from lab.errors import DecodeError, LocalProtocolError
from lab.trace import NULL_TRACER, Tracer
from lab.wire.buffer import Buffer
from lab.wire.iketcp import (
    ESP_MIN_LEN,
    LENGTH_FIELD_LEN,
    STREAM_PREFIX,
    encode_frame,
)
from lab.wire.ikev2 import IKE_HEADER_LEN, NAT_KEEPALIVE, NON_ESP_MARKER, IkeHeader, pull_ike_header

LAYER = "iketcp"

# StreamClosed.reason
CLOSED_END_OF_STREAM = "end_of_stream"  # the peer ended the TCP stream
CLOSED_BAD_PREFIX = "bad_prefix"  # the stream did not start with IKETCP (§4, §6.1)
CLOSED_BAD_LENGTH = "bad_length"  # Length 0 or 1 (§3.2: fatal)
CLOSED_UNPARSABLE = "unparsable_frame"  # neither a non-ESP marker + IKE header nor an ESP header


class Role(enum.Enum):
    """Who opened the TCP connection: the TCP Originator sends the prefix (RFC 9329 §1.2)."""

    INITIATOR = "initiator"  # TCP Originator
    RESPONDER = "responder"  # TCP Responder


class StreamState(enum.Enum):
    AWAITING_PREFIX = "awaiting_prefix"  # a responder before the whole IKETCP has arrived
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class IketcpEvent:
    """Base class of what an IketcpStream's user reacts to."""


@dataclass(frozen=True, slots=True, kw_only=True)
class IkeMessageReceived(IketcpEvent):
    """A whole IKE message (marker and length stripped), exactly as sent: AUTH signs these bytes."""

    message: bytes
    header: IkeHeader


@dataclass(frozen=True, slots=True, kw_only=True)
class EspPacketReceived(IketcpEvent):
    """A whole ESP packet, SPI first."""

    packet: bytes
    spi: int
    seq: int


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamClosed(IketcpEvent):
    """The stream is over: the peer ended it, or it broke the framing (then close the TCP connection)."""

    reason: str
    detail: str = ""


class IketcpStream:
    """One direction pair of an RFC 9329 stream: frames out, whole messages in.

    ``send_ike``/``send_esp`` queue frames that ``data_to_send`` hands to TCP;
    ``receive_data`` takes TCP's in-order bytes in any chunking and queues
    events for ``next_event``.
    """

    def __init__(self, *, role: Role | str, tracer: Tracer = NULL_TRACER, conn: str = "", now: float = 0.0) -> None:
        """``conn`` names the TCP connection in trace records; ``now`` stamps the prefix record."""
        self.role = Role(role)
        self._tracer = tracer
        self._conn = conn
        self._buf = Buffer()
        self._out = bytearray()
        self._events: deque[IketcpEvent] = deque()
        if self.role is Role.INITIATOR:
            self._state = StreamState.OPEN
            self._out += STREAM_PREFIX  # "The first bytes sent on the TCP stream MUST be the stream prefix"
            self._record(now, "segment_sent", {"kind": "prefix", "length": len(STREAM_PREFIX)})
        else:
            self._state = StreamState.AWAITING_PREFIX

    @property
    def state(self) -> StreamState:
        return self._state

    @property
    def closed(self) -> bool:
        return self._state is StreamState.CLOSED

    # --- output ---------------------------------------------------------------------------------

    def send_ike(self, message: bytes, *, now: float = 0.0) -> None:
        """Queue an IKE message (header first, no marker).

        Raises LocalProtocolError when the stream is closed, the message is
        shorter than an IKE header or too long for the 16-bit Length.
        """
        self._check_open()
        if len(message) < IKE_HEADER_LEN:
            raise LocalProtocolError(f"a {len(message)}-byte IKE message is shorter than its header")
        self._queue(NON_ESP_MARKER + message, now=now, kind="ike")

    def send_esp(self, packet: bytes, *, now: float = 0.0) -> None:
        """Queue an ESP packet (SPI first).

        Raises LocalProtocolError when the stream is closed, the SPI is 0 (it
        would read as a non-ESP marker) or the packet is too short or too long.
        """
        self._check_open()
        if len(packet) < ESP_MIN_LEN:
            raise LocalProtocolError(f"a {len(packet)}-byte ESP packet has no room for SPI and sequence number")
        if packet[:4] == NON_ESP_MARKER:
            raise LocalProtocolError("ESP SPI 0 must not be sent (RFC 9329 §3.2)")
        self._queue(packet, now=now, kind="esp")

    def data_to_send(self) -> bytes:
        """Bytes for TCP to send, in order; empties the queue."""
        data = bytes(self._out)
        self._out.clear()
        return data

    def _check_open(self) -> None:
        if self._state is StreamState.CLOSED:
            raise LocalProtocolError("the IKETCP stream is closed")

    def _queue(self, body: bytes, *, now: float, kind: str) -> None:
        self._out += encode_frame(body)
        self._record(now, "segment_sent", {"kind": kind, "length": len(body)})

    # --- input ----------------------------------------------------------------------------------

    def receive_data(self, data: bytes, *, now: float = 0.0) -> None:
        """Take the next bytes of the peer's stream; ``b""`` means the stream ended. Never raises."""
        if self._state is StreamState.CLOSED:
            return
        if not data:
            self._end_of_stream(now)
            return
        self._buf.push_data(data)
        while self._state is not StreamState.CLOSED:
            self._buf.commit()
            if self._state is StreamState.AWAITING_PREFIX:
                if not self._read_prefix(now):
                    break
                continue
            start = self._buf.tell()
            try:
                length = self._buf.pull_u16("length")
                if length < LENGTH_FIELD_LEN:
                    self._close(now, CLOSED_BAD_LENGTH, f"Length {length} at stream offset {start}")
                    break
                body = self._buf.pull_bytes(length - LENGTH_FIELD_LEN, "message")
            except DecodeError:
                self._buf.rollback()  # half a frame: wait for the rest
                break
            self._buf.commit()
            self._handle_frame(body, start, now)

    def next_event(self) -> IketcpEvent | None:
        return self._events.popleft() if self._events else None

    def _read_prefix(self, now: float) -> bool:
        have = self._buf.remaining()
        seen = self._buf.pull_bytes(min(have, len(STREAM_PREFIX)), "prefix")
        if seen != STREAM_PREFIX[: len(seen)]:  # refuse as soon as the bytes differ
            self._close(now, CLOSED_BAD_PREFIX, f"stream starts with {seen.hex()}")
            return False
        if len(seen) < len(STREAM_PREFIX):
            self._buf.rollback()
            return False
        self._set_state(StreamState.OPEN, now)
        return True

    def _handle_frame(self, body: bytes, start: int, now: float) -> None:
        if not body:
            self._record(now, "segment_dropped", {"reason": "empty_message", "offset": start})  # RFC 9329 §3
            return
        if body == NAT_KEEPALIVE:
            self._record(now, "segment_dropped", {"reason": "nat_keepalive", "offset": start})  # RFC 9329 §6.6
            return
        if len(body) < len(NON_ESP_MARKER):
            self._close(now, CLOSED_UNPARSABLE, f"{len(body)}-byte message at stream offset {start}")
            return
        if body[:4] == NON_ESP_MARKER:
            message = body[4:]
            try:
                header = pull_ike_header(Buffer(message, base_offset=start + LENGTH_FIELD_LEN + 4))
            except DecodeError as exc:
                self._close(now, CLOSED_UNPARSABLE, f"IKE message: {exc}")
                return
            self._record(
                now,
                "segment_received",
                {
                    "kind": "ike",
                    "length": len(message),
                    "exchange_type": header.exchange_type,
                    "message_id": header.message_id,
                    "response": header.response,
                },
            )
            self._events.append(IkeMessageReceived(message=message, header=header))
            return
        if len(body) < ESP_MIN_LEN:
            self._close(now, CLOSED_UNPARSABLE, f"{len(body)}-byte ESP packet at stream offset {start}")
            return
        spi = int.from_bytes(body[:4], "big")
        seq = int.from_bytes(body[4:8], "big")
        self._record(now, "segment_received", {"kind": "esp", "length": len(body), "spi": spi, "seq": seq})
        self._events.append(EspPacketReceived(packet=body, spi=spi, seq=seq))

    def _end_of_stream(self, now: float) -> None:
        self._buf.commit()
        partial = self._buf.remaining()
        if partial:  # "A peer MUST discard a partially received message due to a broken connection"
            self._record(now, "segment_dropped", {"reason": "partial_message", "length": partial})
        self._close(now, CLOSED_END_OF_STREAM, "", error=False)

    def _close(self, now: float, reason: str, detail: str, *, error: bool = True) -> None:
        if error:
            self._record(now, "error", {"reason": reason, "detail": detail})
        self._set_state(StreamState.CLOSED, now)
        self._events.append(StreamClosed(reason=reason, detail=detail))

    def _set_state(self, state: StreamState, now: float) -> None:
        old, self._state = self._state, state
        self._record(now, "state_updated", {"from": old.value, "to": state.value})

    def _record(self, now: float, name: str, data: dict[str, Any]) -> None:
        if self._tracer.enabled:
            if self._conn:
                data["conn"] = self._conn
            self._tracer.record(now, LAYER, name, data)
