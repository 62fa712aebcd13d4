"""TCP encapsulation of IKE and ESP (RFC 9329, which obsoletes RFC 8229): the stream prefix and the framing.

After the 6-byte stream prefix ``IKETCP`` (§4) every message is framed (§3)::

    Length (2, counts itself) | Non-ESP Marker (4 zero bytes) | IKE message
    Length (2, counts itself) | ESP packet (SPI never 0)

The stateful stream layer that reads and writes this framing is
:class:`lab.iketcp.IketcpStream`.
"""

from __future__ import annotations

from lab.errors import LocalProtocolError
from lab.wire.ikev2 import NON_ESP_MARKER

STREAM_PREFIX = b"IKETCP"  # RFC 9329 §4: 0x49 0x4b 0x45 0x54 0x43 0x50
LENGTH_FIELD_LEN = 2  # RFC 9329 §3: the Length includes its own two octets
MAX_FRAME_LEN = 0xFFFF
MAX_MESSAGE_LEN = MAX_FRAME_LEN - LENGTH_FIELD_LEN  # "impossible to encapsulate messages greater than 65533 octets"
ESP_MIN_LEN = 8  # SPI + Sequence Number (RFC 4303 §2)



def encode_frame(body: bytes) -> bytes:
    """One length-framed message: ``body`` is ``NON_ESP_MARKER + IKE message`` or an ESP packet.

    Raises LocalProtocolError when it is too long for the 16-bit Length.
    """
    if len(body) > MAX_MESSAGE_LEN:
        raise LocalProtocolError(f"a {len(body)}-byte message exceeds the {MAX_MESSAGE_LEN}-byte limit")
    return (LENGTH_FIELD_LEN + len(body)).to_bytes(2, "big") + body


def encode_ike_frame(message: bytes) -> bytes:
    """An IKE message framed for the stream (marker added). Raises LocalProtocolError when too long."""
    return encode_frame(NON_ESP_MARKER + message)
