"""RFC 9329 captures for tshark: every IKETCP frame rewritten as a UDP port-4500 datagram.

tshark 4.0 has no RFC 8229/9329 dissector (its ``tcpencap`` is a different,
vendor format), but it dissects and decrypts IKE and ESP in UDP port 4500
(RFC 3948). :func:`iketcp_to_udp` reassembles each direction of each TCP
connection in a capture (raw IP or Ethernet), checks for the ``IKETCP``
prefix, walks the 16-bit Length framing and writes one UDP datagram per
frame with the connection's addresses and ports, timed when the frame's
last byte was captured. UDP packets already in the capture (IKE on 500 and
4500, UDP-encapsulated ESP) are copied unchanged, so one output shows a
whole fallback. Frames of a stream whose framing breaks are counted in
``broken`` and the rest of that direction is skipped.

Usage: ``python -m lab.ike.pcap IN.pcap OUT.pcap``.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import DecodeError, LabError
from lab.pcap import PcapWriter, frame_ip, read_pcap_linktype
from lab.wire.checksum import pack_address
from lab.wire.iketcp import STREAM_PREFIX
from lab.wire.ip import Ipv4Packet, Ipv6Packet, decode_ip, encode_ip, ip_protocol
from lab.wire.tcp import SYN, TCP_PROTOCOL, decode_segment
from lab.wire.udp import UDP_PROTOCOL, UdpDatagram, encode_datagram

Endpoint = tuple[str, int]


@dataclass
class _Direction:
    isn: int | None = None
    pieces: dict[int, tuple[float, bytes]] = field(default_factory=dict)


@dataclass
class Conversion:
    """What :func:`iketcp_to_udp` wrote: frames per kind, UDP packets copied, directions that broke."""

    ike_frames: int = 0
    esp_frames: int = 0
    udp_copied: int = 0
    broken: list[str] = field(default_factory=list)

    @property
    def written(self) -> int:
        return self.ike_frames + self.esp_frames + self.udp_copied


def _ip_packets(path: Path) -> list[tuple[float, bytes]]:
    linktype, records = read_pcap_linktype(path)
    return [(time, ip) for time, raw in records if (ip := frame_ip(linktype, raw)) is not None]


def _udp_packet(src: Endpoint, dst: Endpoint, payload: bytes) -> bytes:
    udp = encode_datagram(UdpDatagram(src[1], dst[1], payload), pack_address(src[0]), pack_address(dst[0]))
    if ":" in src[0]:
        return encode_ip(Ipv6Packet(src[0], dst[0], UDP_PROTOCOL, udp))
    return encode_ip(Ipv4Packet(src[0], dst[0], UDP_PROTOCOL, udp))


def iketcp_to_udp(src_pcap: Path, dst_pcap: Path) -> Conversion:
    """Write ``dst_pcap`` (LINKTYPE_RAW) from ``src_pcap``. Raises OSError, or DecodeError for a file that is no pcap."""
    result = Conversion()
    directions: dict[tuple[Endpoint, Endpoint], _Direction] = {}
    out: list[tuple[float, bytes]] = []
    for time, raw in _ip_packets(Path(src_pcap)):
        try:
            ip = decode_ip(raw)
        except DecodeError:
            continue
        proto = ip_protocol(ip)
        if proto == UDP_PROTOCOL:
            out.append((time, raw))
            result.udp_copied += 1
            continue
        if proto != TCP_PROTOCOL:
            continue
        try:
            seg = decode_segment(ip.payload)
        except DecodeError:
            continue
        key = ((ip.src, seg.src_port), (ip.dst, seg.dst_port))
        d = directions.setdefault(key, _Direction())
        if seg.flags & SYN:
            d.isn = (seg.seq + 1) % 2**32
        elif seg.payload:
            d.pieces.setdefault(seg.seq, (time, seg.payload))
    for (src, dst), d in directions.items():
        if not d.pieces:
            continue
        base = d.isn if d.isn is not None else min(d.pieces)
        stream = bytearray()
        ends: list[tuple[int, float]] = []
        for seq in sorted(d.pieces, key=lambda s: (s - base) % 2**32):
            time, payload = d.pieces[seq]
            offset = (seq - base) % 2**32
            if offset > len(stream):
                break  # a gap: only what arrived in order is usable
            if offset + len(payload) <= len(stream):
                continue  # a retransmission
            stream += payload[len(stream) - offset :]
            ends.append((len(stream), time))
        data = bytes(stream)
        if data.startswith(STREAM_PREFIX):
            pos = len(STREAM_PREFIX)
        else:
            reverse = directions.get((dst, src))
            reverse_data_prefixed = reverse is not None and any(
                p[1].startswith(STREAM_PREFIX) for p in reverse.pieces.values()
            )
            if not reverse_data_prefixed:
                continue  # not an IKETCP connection
            pos = 0  # the TCP Responder's direction carries no prefix
        while pos + 2 <= len(data):
            length = int.from_bytes(data[pos : pos + 2], "big")
            if length < 6 or pos + length > len(data):
                if length < 6:
                    result.broken.append(f"{src[0]}:{src[1]}->{dst[0]}:{dst[1]} at {pos}")
                break
            frame = data[pos + 2 : pos + length]
            end = pos + length
            time = next(t for e, t in ends if e >= end)
            out.append((time, _udp_packet(src, dst, frame)))
            if frame[:4] == bytes(4):
                result.ike_frames += 1
            else:
                result.esp_frames += 1
            pos = end
    out.sort(key=lambda item: item[0])
    with PcapWriter(dst_pcap) as writer:
        for time, packet in out:
            writer.write(time, packet)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.ike.pcap", description=__doc__.splitlines()[0])
    parser.add_argument("src", type=Path)
    parser.add_argument("dst", type=Path)
    args = parser.parse_args(argv)
    try:
        result = iketcp_to_udp(args.src, args.dst)
    except (OSError, ValueError, LabError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"{result.ike_frames} IKE and {result.esp_frames} ESP frames, {result.udp_copied} UDP packets copied -> {args.dst}"
    )
    for broken in result.broken:
        print(f"framing broken: {broken}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
