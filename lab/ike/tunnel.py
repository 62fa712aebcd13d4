"""A tunnelled inner stream: application bytes as inner IPv4/UDP packets inside ESP (tunnel mode).

The sender cuts the stream into chunks; each becomes an inner UDP datagram
between the tunnel addresses whose payload starts with ``offset (4) | total
length (4)``. The receiver writes each chunk at its offset and reports the
stream complete once every byte has arrived, so the SHA-256 check covers
the bytes end to end whichever transport carried them.
"""

from __future__ import annotations

import hashlib
import struct

from lab.errors import DecodeError
from lab.wire.checksum import pack_address
from lab.wire.esp import NEXT_HEADER_IPV4
from lab.wire.ip import Ipv4Packet, decode_ip, encode_ipv4, ip_protocol
from lab.wire.udp import UDP_PROTOCOL, UdpDatagram, decode_datagram, encode_datagram

TUNNEL_INITIATOR = "10.99.0.1"  # inner addresses (the tunnel's own subnet)
TUNNEL_RESPONDER = "10.99.0.2"
INNER_PORT = 7000
CHUNK_BYTES = 1000
_HEADER = struct.Struct("!II")


def inner_packets(data: bytes, *, src: str, dst: str, chunk_bytes: int = CHUNK_BYTES) -> list[bytes]:
    """The inner IPv4 packets carrying ``data`` (one empty chunk for empty data)."""
    out = []
    for offset in range(0, max(len(data), 1), chunk_bytes):
        payload = _HEADER.pack(offset, len(data)) + data[offset : offset + chunk_bytes]
        udp = encode_datagram(UdpDatagram(INNER_PORT, INNER_PORT, payload), pack_address(src), pack_address(dst))
        out.append(encode_ipv4(Ipv4Packet(src, dst, UDP_PROTOCOL, udp)))
    return out


class TunnelReceiver:
    """Reassembles one inner stream from inner packets; ``complete`` once every byte is in."""

    next_header = NEXT_HEADER_IPV4

    def __init__(self) -> None:
        self.total: int | None = None
        self._chunks: dict[int, bytes] = {}
        self.received = 0
        self.malformed = 0

    def feed(self, packet: bytes) -> bool:
        """Take one inner packet; returns whether it was a chunk of this stream (bad ones are counted, not raised)."""
        try:
            ip = decode_ip(packet)
            if ip_protocol(ip) != UDP_PROTOCOL:
                raise DecodeError("not UDP", field="protocol", offset=9)
            dgram = decode_datagram(ip.payload, pack_address(ip.src), pack_address(ip.dst))
            if dgram.dst_port != INNER_PORT or len(dgram.payload) < _HEADER.size:
                raise DecodeError("not a tunnel chunk", field="dst_port", offset=2)
        except DecodeError:
            self.malformed += 1
            return False
        offset, total = _HEADER.unpack_from(dgram.payload)
        chunk = dgram.payload[_HEADER.size :]
        if self.total is None:
            self.total = total
        if total != self.total or offset + len(chunk) > total or offset in self._chunks:
            self.malformed += 1
            return False
        self._chunks[offset] = chunk
        self.received += len(chunk)
        return True

    @property
    def complete(self) -> bool:
        return self.total is not None and self.received == self.total

    def data(self) -> bytes:
        return b"".join(self._chunks[k] for k in sorted(self._chunks))

    def sha256(self) -> str:
        return hashlib.sha256(self.data()).hexdigest()
