"""IPv4 (RFC 791) and IPv6 (RFC 8200) headers.

Addresses are text (``"10.0.1.1"``, ``"fd00::1"``) in the dataclasses and
packed bytes on the wire. IPv4 options and IPv6 extension headers are kept
as raw bytes: IPv4 options in ``options``, IPv6 extension headers inside
``payload`` with ``next_header`` naming the first of them.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from lab.errors import DecodeError
from lab.wire.checksum import internet_checksum, ones_sum

IPV4_HEADER = struct.Struct("!BBHHHBBH4s4s")
IPV6_HEADER = struct.Struct("!IHBB16s16s")
FLAG_DF = 0x2  # RFC 791: Don't Fragment
FLAG_MF = 0x1  # More Fragments

_ntop = socket.inet_ntop
_pton = socket.inet_pton
AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6


@dataclass(frozen=True, slots=True)
class Ipv4Packet:
    src: str
    dst: str
    protocol: int
    payload: bytes = b""
    ttl: int = 64
    identification: int = 0
    flags: int = FLAG_DF
    fragment_offset: int = 0
    dscp: int = 0
    ecn: int = 0
    options: bytes = b""


@dataclass(frozen=True, slots=True)
class Ipv6Packet:
    src: str
    dst: str
    next_header: int
    payload: bytes = b""
    hop_limit: int = 64
    traffic_class: int = 0
    flow_label: int = 0


IpPacket = Ipv4Packet | Ipv6Packet


def encode_ipv4(pkt: Ipv4Packet) -> bytes:
    """Encode with total length and header checksum filled in.

    Raises ValueError when options are not a multiple of 4 bytes or too long.
    """
    if len(pkt.options) % 4 or len(pkt.options) > 40:
        raise ValueError(f"IPv4 options must be 0..40 bytes in 4-byte words, got {len(pkt.options)}")
    ihl = 5 + len(pkt.options) // 4
    total = ihl * 4 + len(pkt.payload)
    if total > 0xFFFF:
        raise ValueError(f"IPv4 packet of {total} bytes exceeds 65535")
    header = (
        IPV4_HEADER.pack(
            0x40 | ihl,
            (pkt.dscp << 2) | pkt.ecn,
            total,
            pkt.identification,
            (pkt.flags << 13) | pkt.fragment_offset,
            pkt.ttl,
            pkt.protocol,
            0,
            _pton(AF_INET, pkt.src),
            _pton(AF_INET, pkt.dst),
        )
        + pkt.options
    )
    csum = internet_checksum(header)
    return header[:10] + csum.to_bytes(2, "big") + header[12:] + pkt.payload


def decode_ipv4(data: bytes, *, verify: bool = True) -> Ipv4Packet:
    """Decode an IPv4 packet; bytes beyond the total length (link padding) are ignored.

    Raises DecodeError naming the field on a bad version, IHL, total length or checksum.
    """
    if len(data) < 20:
        raise DecodeError(f"IPv4 header needs 20 bytes, have {len(data)}", field="header", offset=len(data))
    vihl, tos, total, ident, frag, ttl, proto, _csum, src, dst = IPV4_HEADER.unpack_from(data)
    if vihl >> 4 != 4:
        raise DecodeError(f"version {vihl >> 4} is not 4", field="version", offset=0)
    ihl = (vihl & 0x0F) * 4
    if ihl < 20:
        raise DecodeError(f"IHL {ihl // 4} words is below 5", field="ihl", offset=0)
    if total < ihl or total > len(data):
        raise DecodeError(
            f"total length {total} does not fit header {ihl} and {len(data)} bytes", field="total_length", offset=2
        )
    if verify and ones_sum(data[:ihl]) != 0xFFFF:
        raise DecodeError("IPv4 header checksum mismatch", field="header_checksum", offset=10)
    return Ipv4Packet(
        _ntop(AF_INET, src),
        _ntop(AF_INET, dst),
        proto,
        data[ihl:total],
        ttl,
        ident,
        frag >> 13,
        frag & 0x1FFF,
        tos >> 2,
        tos & 0x03,
        data[20:ihl],
    )


def encode_ipv6(pkt: Ipv6Packet) -> bytes:
    if len(pkt.payload) > 0xFFFF:
        raise ValueError(f"IPv6 payload of {len(pkt.payload)} bytes needs a jumbogram")
    first = (6 << 28) | (pkt.traffic_class << 20) | pkt.flow_label
    return (
        IPV6_HEADER.pack(
            first,
            len(pkt.payload),
            pkt.next_header,
            pkt.hop_limit,
            _pton(AF_INET6, pkt.src),
            _pton(AF_INET6, pkt.dst),
        )
        + pkt.payload
    )


def decode_ipv6(data: bytes) -> Ipv6Packet:
    """Decode an IPv6 packet. Raises DecodeError on a bad version or payload length."""
    if len(data) < 40:
        raise DecodeError(f"IPv6 header needs 40 bytes, have {len(data)}", field="header", offset=len(data))
    first, plen, nh, hlim, src, dst = IPV6_HEADER.unpack_from(data)
    if first >> 28 != 6:
        raise DecodeError(f"version {first >> 28} is not 6", field="version", offset=0)
    if 40 + plen > len(data):
        raise DecodeError(
            f"payload length {plen} exceeds the {len(data) - 40} bytes present", field="payload_length", offset=4
        )
    return Ipv6Packet(
        _ntop(AF_INET6, src),
        _ntop(AF_INET6, dst),
        nh,
        data[40 : 40 + plen],
        hlim,
        (first >> 20) & 0xFF,
        first & 0xFFFFF,
    )


def decode_ip(data: bytes) -> IpPacket:
    """Decode an IPv4 or IPv6 packet by its version nibble."""
    if not data:
        raise DecodeError("empty packet", field="version", offset=0)
    version = data[0] >> 4
    if version == 4:
        return decode_ipv4(data)
    if version == 6:
        return decode_ipv6(data)
    raise DecodeError(f"IP version {version} is neither 4 nor 6", field="version", offset=0)


def encode_ip(pkt: IpPacket) -> bytes:
    return encode_ipv4(pkt) if type(pkt) is Ipv4Packet else encode_ipv6(pkt)


def ip_protocol(pkt: IpPacket) -> int:
    return pkt.protocol if type(pkt) is Ipv4Packet else pkt.next_header
