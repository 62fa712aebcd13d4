"""Hand-made IP packets a grader or an attacker injects at a node, on any backend.

The packet leaves the node's interface as if the node had sent it, but no
stack of the node sees it: it is the way to play an attacker or a broken
peer sitting at that node (a forged RST, an ENO SYN with a hand-picked TEP
list, a replayed ESP packet). It may be raw bytes or anything ``bytes()``
turns into an IPv4 or IPv6 packet, such as a Scapy ``IP()/TCP()`` (Scapy is
never imported by the lab). Each backend sends it its own way:
``lab.sim.inject`` on the virtual clock, ``lab.mininet.inject`` from inside
the host's network namespace on an AF_PACKET socket.
"""

from __future__ import annotations

from typing import Any

from lab.wire.checksum import unpack_address

LAYER = "inject"


def packet_bytes(packet: Any) -> bytes:
    """The IP packet's bytes. Raises ValueError if it is not an IPv4/IPv6 packet
    (an Ethernet frame from Scapy's ``Ether()/...`` is refused: inject the IP layer)."""
    try:
        raw = bytes(packet)
    except TypeError:
        raise ValueError(f"cannot turn a {type(packet).__name__} into packet bytes") from None
    if len(raw) < 20 or raw[0] >> 4 not in (4, 6):
        raise ValueError("not an IPv4 or IPv6 packet (inject the IP layer, without Ether)")
    if raw[0] >> 4 == 6 and len(raw) < 40:
        raise ValueError("IPv6 packet shorter than its header")
    return raw


def addresses(raw: bytes) -> tuple[bytes, bytes]:
    if raw[0] >> 4 == 4:
        return raw[12:16], raw[16:20]
    return raw[8:24], raw[24:40]


def summary(raw: bytes) -> dict[str, Any]:
    """What the trace record says about an injected packet: addresses, protocol, TCP ports and flags."""
    src, dst = addresses(raw)
    out: dict[str, Any] = {"src": unpack_address(src), "dst": unpack_address(dst), "len": len(raw)}
    if raw[0] >> 4 == 4:
        proto, hl = raw[9], (raw[0] & 0x0F) * 4
    else:
        proto, hl = raw[6], 40
    out["protocol"] = proto
    if proto in (6, 17) and len(raw) >= hl + 4:
        out["sport"] = int.from_bytes(raw[hl : hl + 2], "big")
        out["dport"] = int.from_bytes(raw[hl + 2 : hl + 4], "big")
    if proto == 6 and len(raw) >= hl + 20:
        from lab.wire.tcp import flags_text

        out["flags"] = flags_text(raw[hl + 13])
        out["seq"] = int.from_bytes(raw[hl + 4 : hl + 8], "big")
        out["ack"] = int.from_bytes(raw[hl + 8 : hl + 12], "big")
    return out
