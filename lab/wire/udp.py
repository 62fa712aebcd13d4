"""UDP (RFC 768) with the IPv4/IPv6 pseudo-header checksum."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from lab.errors import DecodeError
from lab.wire.checksum import transport_checksum, transport_checksum_ok

UDP_PROTOCOL = 17  # IANA protocol number
_HEADER = struct.Struct("!HHHH")


@dataclass(frozen=True, slots=True)
class UdpDatagram:
    src_port: int
    dst_port: int
    payload: bytes = b""


def encode_datagram(dgram: UdpDatagram, src: bytes, dst: bytes) -> bytes:
    """Encode with length and checksum (a computed 0 is sent as 0xFFFF, RFC 768)."""
    length = 8 + len(dgram.payload)
    if length > 0xFFFF:
        raise ValueError(f"UDP datagram of {length} bytes exceeds 65535")
    body = _HEADER.pack(dgram.src_port, dgram.dst_port, length, 0) + dgram.payload
    csum = transport_checksum(src, dst, UDP_PROTOCOL, body) or 0xFFFF
    return body[:6] + csum.to_bytes(2, "big") + body[8:]


def decode_datagram(data: bytes, src: bytes | None = None, dst: bytes | None = None) -> UdpDatagram:
    """Decode; verifies a non-zero checksum when ``src``/``dst`` are given.

    A zero checksum means "none" over IPv4 and is an error over IPv6 (RFC 8200 §8.1).
    Raises DecodeError naming ``length`` or ``checksum``.
    """
    if len(data) < 8:
        raise DecodeError(f"UDP header needs 8 bytes, have {len(data)}", field="header", offset=len(data))
    sport, dport, length, csum = _HEADER.unpack_from(data)
    if length < 8 or length > len(data):
        raise DecodeError(f"length {length} does not fit {len(data)} bytes", field="length", offset=4)
    data = data[:length]
    if src is not None and dst is not None:
        if csum == 0:
            if len(src) == 16:
                raise DecodeError("zero UDP checksum over IPv6", field="checksum", offset=6)
        elif not transport_checksum_ok(src, dst, UDP_PROTOCOL, data):
            raise DecodeError("UDP checksum mismatch", field="checksum", offset=6)
    return UdpDatagram(sport, dport, data[8:])
