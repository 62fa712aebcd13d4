"""The evidence for ike_fallback_timeline: a real libreswan 4.10 capture (``capture.pcap``).

Two libreswan peers with ``enable-tcp=fallback``; UDP 500/4500 dropped at the
responder (a hotspot that blocks UDP). The initiator sends IKE_SA_INIT over
UDP, retransmits it, gives up and opens TCP to port 4500 (RFC 9329). The
capture was made with libreswan's ``tcp-skip-setsockopt-espintcp``
impairment, so its TCP framing is *not* RFC 9329's: finding out what is
missing is one of the questions. Everything is read with tcplab's codecs.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from lab.pcap import LINKTYPE_ETHERNET, frame_ip, read_pcap_linktype
from lab.wire.ikev2 import IKE_SA_INIT
from lab.wire.ip import decode_ip, ip_protocol
from lab.wire.tcp import TCP_PROTOCOL, decode_segment, flags_text
from lab.wire.udp import UDP_PROTOCOL, decode_datagram

CAPTURE = Path(__file__).with_name("capture.pcap")
IKE_PORTS = (500, 4500)


@dataclass(frozen=True)
class Packet:
    number: int
    t: float
    proto: str  # "udp" or "tcp"
    src: str
    dst: str
    sport: int
    dport: int
    flags: str  # TCP flags, "" for UDP
    payload: bytes


def packets(path: Path = CAPTURE) -> list[Packet]:
    """The IPv4 UDP and TCP packets of the capture (ARP and IPv6 chatter left out), t from the first frame."""
    linktype, records = read_pcap_linktype(path)
    if linktype != LINKTYPE_ETHERNET:
        raise ValueError(f"link type {linktype} is not read here")
    t0 = records[0][0] if records else 0.0
    out = []
    for number, (when, frame) in enumerate(records, 1):
        raw = frame_ip(linktype, frame)
        if raw is None or raw[0] >> 4 != 4:
            continue
        ip = decode_ip(raw)
        proto = ip_protocol(ip)
        t = round(when - t0, 6)
        if proto == UDP_PROTOCOL:
            d = decode_datagram(ip.payload)
            out.append(Packet(number, t, "udp", ip.src, ip.dst, d.src_port, d.dst_port, "", d.payload))
        elif proto == TCP_PROTOCOL:
            s = decode_segment(ip.payload)
            out.append(Packet(number, t, "tcp", ip.src, ip.dst, s.src_port, s.dst_port, flags_text(s.flags), s.payload))
    return out


def truth(path: Path = CAPTURE) -> dict[str, object]:
    """The answers, from the capture."""
    ps = packets(path)
    udp = [
        p
        for p in ps
        if p.proto == "udp" and p.dport in IKE_PORTS and len(p.payload) >= 28 and p.payload[18] == IKE_SA_INIT
    ]
    syn = next(p for p in ps if p.proto == "tcp" and p.flags == "S")
    data = [p.payload for p in ps if p.proto == "tcp" and p.payload and p.src == syn.src]
    first_udp = udp[0].t
    return {
        "udp_attempts": len(udp),
        "udp_gaps_s": [round(b.t - a.t, 3) for a, b in itertools.pairwise(udp)],
        "tcp_after_s": round(syn.t - first_udp, 3),
        "wait_after_last_udp_s": round(syn.t - udp[-1].t, 3),
        "tcp_port": syn.dport,
        "first_tcp_payload": data[0].decode("ascii", "replace"),
        "missing_field": "length" if data[1][:4] == bytes(4) else "?",
    }


def listing(path: Path = CAPTURE) -> str:
    lines = []
    for p in packets(path):
        what = f"[{p.flags}]" if p.proto == "tcp" else "UDP"
        head = p.payload[:8].hex(" ") + (" ..." if len(p.payload) > 8 else "")
        lines.append(
            f"{p.number:>3} {p.t:10.6f} {p.src}:{p.sport} > {p.dst}:{p.dport} {what:<5} len {len(p.payload):>4}  {head}"
        )
    return "\n".join(lines) + "\n"
