"""Middlebox policies: a router hands each forwarded packet to its policies in turn.

A policy returns the packet (possibly rewritten, checksums fixed as a real
rewriting box does) or None to drop it, and records what it did under the
``middlebox`` layer: ``segment_dropped`` for drops, ``segment_sent`` with
``"action": "rewritten"`` for rewrites.
"""

from __future__ import annotations

from collections.abc import Iterable

from lab.errors import ConfigError
from lab.stack.ipfrag import Ipv4Reassembler, is_fragment
from lab.trace import Tracer
from lab.wire.checksum import internet_checksum, pack_address, transport_checksum, unpack_address
from lab.wire.tcp import SYN, TCP_PROTOCOL
from lab.wire.udp import UDP_PROTOCOL

STRIP_WHEN = ("all", "syn", "after_handshake")


def _split(packet: bytes) -> tuple[int, int, bytes, bytes] | None:
    """(protocol, header length, src, dst) of an IPv4/IPv6 packet without extension headers.

    None for a non-first IPv4 fragment: it carries no transport header, so (as
    with iptables' port matches) policies that read one let it pass.
    """
    version = packet[0] >> 4
    if version == 4:
        if packet[6] & 0x1F or packet[7]:
            return None
        return packet[9], (packet[0] & 0x0F) * 4, packet[12:16], packet[16:20]
    if version == 6 and len(packet) >= 40:
        return packet[6], 40, packet[8:24], packet[24:40]
    return None


def _tcp(packet: bytes) -> tuple[int, bytes, bytes] | None:
    """(IP header length, src, dst) of a packet carrying at least a TCP header, else None."""
    parts = _split(packet)
    if parts is None or parts[0] != TCP_PROTOCOL or len(packet) < parts[1] + 20:
        return None
    return parts[1], parts[2], parts[3]


class _Defragmenter:
    """What netfilter's connection tracking does before NAT: reassemble IPv4 fragments
    (the router fragments the result again on its way out, lab.sim.network)."""

    def __init__(self, owner: Middlebox) -> None:
        self._owner = owner
        self._where: tuple[Tracer, float] | None = None
        self._reassembler = Ipv4Reassembler(on_drop=self._dropped)

    def whole(self, packet: bytes, now: float, tracer: Tracer) -> bytes | None:
        """``packet`` itself when not a fragment, the reassembled packet when it completed one, else None."""
        if packet[0] >> 4 != 4 or not is_fragment(packet):
            return packet
        self._where = (tracer, now)
        return self._reassembler.add(packet, now)

    def _dropped(self, reason: str, detail: dict) -> None:
        if self._where is not None:
            tracer, now = self._where
            self._owner._record(tracer, now, "segment_dropped", {"reason": f"defragmentation: {reason}", **detail})


def _with_tcp_checksum(packet: bytes, hl: int, seg: bytearray, src: bytes, dst: bytes) -> bytes:
    """``packet`` with its TCP segment replaced by ``seg``, checksum recomputed."""
    seg[16:18] = b"\x00\x00"
    seg[16:18] = transport_checksum(src, dst, TCP_PROTOCOL, bytes(seg)).to_bytes(2, "big")
    return packet[:hl] + bytes(seg)


class Middlebox:
    """Base policy: passes everything."""

    name = "middlebox"

    def process(self, packet: bytes, *, now: float, ingress: str, egress: str, tracer: Tracer) -> bytes | None:
        return packet

    def prerouting(self, packet: bytes, *, now: float, ingress: str, tracer: Tracer) -> bytes | None:
        """Seen before the route lookup (netfilter PREROUTING); a NAT maps replies back here."""
        return packet

    def describe(self) -> dict:
        return {"policy": self.name}

    def _record(self, tracer: Tracer, now: float, name: str, data: dict) -> None:
        if tracer.enabled:
            data["policy"] = self.name
            tracer.record(now, "middlebox", name, data)


class BlockUdpPorts(Middlebox):
    """Drop UDP datagrams to (or from) the given ports, e.g. a hotspot blocking IKE (500, 4500)."""

    name = "block_udp"

    def __init__(self, ports: Iterable[int], *, both_directions: bool = True) -> None:
        self.ports = frozenset(int(p) for p in ports)
        for p in self.ports:
            if not 0 < p < 65536:
                raise ConfigError(f"UDP port must be 1..65535, got {p}")
        self.both_directions = both_directions

    def process(self, packet: bytes, *, now: float, ingress: str, egress: str, tracer: Tracer) -> bytes | None:
        parts = _split(packet)
        if parts is None or parts[0] != UDP_PROTOCOL or len(packet) < parts[1] + 4:
            return packet
        hl = parts[1]
        sport = int.from_bytes(packet[hl : hl + 2], "big")
        dport = int.from_bytes(packet[hl + 2 : hl + 4], "big")
        if dport in self.ports or (self.both_directions and sport in self.ports):
            self._record(
                tracer,
                now,
                "segment_dropped",
                {"reason": "UDP port blocked", "sport": sport, "dport": dport, "ingress": ingress},
            )
            return None
        return packet

    def describe(self) -> dict:
        return {"policy": self.name, "ports": sorted(self.ports)}


class StripTcpOptions(Middlebox):
    """Overwrite TCP options of the given kinds with NOPs, as iptables TCPOPTSTRIP does.

    ``when``: ``"all"`` segments, only ``"syn"`` segments, or only ``"after_handshake"``
    (segments without SYN).
    """

    name = "strip_tcp_options"

    def __init__(self, kinds: Iterable[int], *, when: str = "all") -> None:
        self.kinds = frozenset(int(k) for k in kinds)
        for k in self.kinds:
            if not 2 <= k <= 255:
                raise ConfigError(f"TCP option kind must be 2..255, got {k}")
        if when not in STRIP_WHEN:
            raise ConfigError(f"when must be one of {', '.join(STRIP_WHEN)}, got {when!r}")
        self.when = when

    def process(self, packet: bytes, *, now: float, ingress: str, egress: str, tracer: Tracer) -> bytes | None:
        tcp = _tcp(packet)
        if tcp is None:
            return packet
        hl, src, dst = tcp
        flags = packet[hl + 13]
        if (self.when == "syn" and not flags & SYN) or (self.when == "after_handshake" and flags & SYN):
            return packet
        doff = (packet[hl + 12] >> 4) * 4
        if doff <= 20 or hl + doff > len(packet):
            return packet
        opts = bytearray(packet[hl + 20 : hl + doff])
        stripped = []
        pos = 0
        while pos < len(opts):
            kind = opts[pos]
            if kind == 0:
                break
            if kind == 1:
                pos += 1
                continue
            if pos + 1 >= len(opts) or opts[pos + 1] < 2 or pos + opts[pos + 1] > len(opts):
                break  # malformed: leave the rest alone
            length = opts[pos + 1]
            if kind in self.kinds:
                opts[pos : pos + length] = b"\x01" * length
                stripped.append(kind)
            pos += length
        if not stripped:
            return packet
        seg = bytearray(packet[hl:])
        seg[20:doff] = opts
        self._record(
            tracer, now, "segment_sent", {"action": "rewritten", "stripped_kinds": stripped, "ingress": ingress}
        )
        return _with_tcp_checksum(packet, hl, seg, src, dst)

    def describe(self) -> dict:
        return {"policy": self.name, "kinds": sorted(self.kinds), "when": self.when}


class FlipPayloadBytes(Middlebox):
    """XOR one payload byte of selected TCP data segments (fixing the checksum, so only
    an end-to-end integrity check can notice).

    Selects the ``nth`` data segment seen (1-based) towards ``dst_port``, or,
    with ``probability``, each data segment at random (``rng_seed`` fixed).
    """

    name = "flip_payload"

    def __init__(
        self,
        *,
        dst_port: int | None = None,
        nth: int | None = 1,
        probability: float = 0.0,
        offset: int = 0,
        mask: int = 0xFF,
        rng_seed: int = 0,
    ) -> None:
        import random

        if nth is not None and nth < 1:
            raise ConfigError(f"nth must be at least 1, got {nth}")
        if not 0 <= probability <= 1:
            raise ConfigError(f"probability must be in [0, 1], got {probability}")
        if not 1 <= mask <= 0xFF:
            raise ConfigError(f"mask must be 1..255, got {mask}")
        self.dst_port = dst_port
        self.nth = nth
        self.probability = probability
        self.offset = offset
        self.mask = mask
        self._seen = 0
        self._rng = random.Random(rng_seed)
        self.flipped = 0

    def process(self, packet: bytes, *, now: float, ingress: str, egress: str, tracer: Tracer) -> bytes | None:
        tcp = _tcp(packet)
        if tcp is None:
            return packet
        hl, src, dst = tcp
        doff = (packet[hl + 12] >> 4) * 4
        payload_len = len(packet) - hl - doff
        if payload_len <= 0:
            return packet
        if self.dst_port is not None and int.from_bytes(packet[hl + 2 : hl + 4], "big") != self.dst_port:
            return packet
        self._seen += 1
        hit = (self.nth is not None and self._seen == self.nth) or (
            self.probability and self._rng.random() < self.probability
        )
        if not hit:
            return packet
        seg = bytearray(packet[hl:])
        index = doff + min(self.offset, payload_len - 1)
        seg[index] ^= self.mask
        self.flipped += 1
        self._record(
            tracer, now, "segment_sent", {"action": "rewritten", "flipped_offset": index - doff, "ingress": ingress}
        )
        return _with_tcp_checksum(packet, hl, seg, src, dst)

    def describe(self) -> dict:
        return {"policy": self.name, "dst_port": self.dst_port, "nth": self.nth, "probability": self.probability}


class BlockTcpPorts(Middlebox):
    """Drop TCP segments to (or from) the given ports, e.g. a network that allows TCP 443 but not 4500."""

    name = "block_tcp"

    def __init__(self, ports: Iterable[int], *, both_directions: bool = True) -> None:
        self.ports = frozenset(int(p) for p in ports)
        for p in self.ports:
            if not 0 < p < 65536:
                raise ConfigError(f"TCP port must be 1..65535, got {p}")
        self.both_directions = both_directions

    def process(self, packet: bytes, *, now: float, ingress: str, egress: str, tracer: Tracer) -> bytes | None:
        tcp = _tcp(packet)
        if tcp is None:
            return packet
        hl = tcp[0]
        sport = int.from_bytes(packet[hl : hl + 2], "big")
        dport = int.from_bytes(packet[hl + 2 : hl + 4], "big")
        if dport in self.ports or (self.both_directions and sport in self.ports):
            self._record(
                tracer,
                now,
                "segment_dropped",
                {"reason": "TCP port blocked", "sport": sport, "dport": dport, "ingress": ingress},
            )
            return None
        return packet

    def describe(self) -> dict:
        return {"policy": self.name, "ports": sorted(self.ports)}


class SourceNat(Middlebox):
    """IPv4 source NAT with port translation (NAPT), as a home router or a hotspot does.

    TCP and UDP leaving through any interface but ``inside`` get source address
    ``public_address`` and a public port (endpoint-independent mapping: one per
    inside address, port and protocol, allocated from ``port_base`` up, RFC 4787
    §4.1); replies to a mapped public port are translated back before routing.
    Packets to ``public_address`` without a mapping are dropped, as are other
    protocols from inside (no ICMP or ESP translation). Checksums are
    recomputed. IPv6 passes untouched. IPv4 fragments are reassembled before
    translation, as connection tracking does (the router fragments again on
    the way out).
    """

    name = "source_nat"

    def __init__(self, *, inside: str, public_address: str, port_base: int = 20000) -> None:
        try:
            self._public = pack_address(public_address)
        except (OSError, ValueError):
            raise ConfigError(f"public_address must be an IPv4 address, got {public_address!r}") from None
        if len(self._public) != 4:
            raise ConfigError(f"public_address must be an IPv4 address, got {public_address!r}")
        if not 1024 <= port_base < 65000:
            raise ConfigError(f"port_base must be 1024..64999, got {port_base}")
        self.inside = inside
        self.public_address = public_address
        self.port_base = port_base
        self._next_port = port_base
        self._out: dict[tuple[int, bytes, int], int] = {}  # (protocol, inside address, inside port) -> public port
        self._back: dict[tuple[int, int], tuple[bytes, int]] = {}  # (protocol, public port) -> inside endpoint
        self._defrag = _Defragmenter(self)

    @property
    def mappings(self) -> dict[tuple[int, str, int], int]:
        return {(proto, unpack_address(addr), port): public for (proto, addr, port), public in self._out.items()}

    def process(self, packet: bytes, *, now: float, ingress: str, egress: str, tracer: Tracer) -> bytes | None:
        if ingress != self.inside or egress == self.inside or packet[0] >> 4 != 4:
            return packet
        packet = self._defrag.whole(packet, now, tracer)
        if packet is None:
            return None
        hl = (packet[0] & 0x0F) * 4
        proto = packet[9]
        if proto not in (TCP_PROTOCOL, UDP_PROTOCOL) or len(packet) < hl + (20 if proto == TCP_PROTOCOL else 8):
            self._record(tracer, now, "segment_dropped", {"reason": "NAT: protocol not translated", "protocol": proto})
            return None
        src = packet[12:16]
        sport = int.from_bytes(packet[hl : hl + 2], "big")
        key = (proto, src, sport)
        public_port = self._out.get(key)
        if public_port is None:
            if self._next_port > 65535:
                self._record(tracer, now, "segment_dropped", {"reason": "NAT: out of ports"})
                return None
            public_port = self._next_port
            self._next_port += 1
            self._out[key] = public_port
            self._back[(proto, public_port)] = (src, sport)
            self._record(
                tracer,
                now,
                "state_updated",
                {
                    "mapping": "created",
                    "protocol": "tcp" if proto == TCP_PROTOCOL else "udp",
                    "inside": f"{unpack_address(src)}:{sport}",
                    "public": f"{self.public_address}:{public_port}",
                },
            )
        return _rewrite_ipv4(packet, hl, src=self._public, sport=public_port)

    def prerouting(self, packet: bytes, *, now: float, ingress: str, tracer: Tracer) -> bytes | None:
        if ingress == self.inside or packet[0] >> 4 != 4 or packet[16:20] != self._public:
            return packet
        packet = self._defrag.whole(packet, now, tracer)
        if packet is None:
            return None
        hl = (packet[0] & 0x0F) * 4
        proto = packet[9]
        if proto not in (TCP_PROTOCOL, UDP_PROTOCOL) or len(packet) < hl + 4:
            return packet
        dport = int.from_bytes(packet[hl + 2 : hl + 4], "big")
        inside = self._back.get((proto, dport))
        if inside is None:
            self._record(
                tracer, now, "segment_dropped", {"reason": "NAT: no mapping", "dport": dport, "ingress": ingress}
            )
            return None
        return _rewrite_ipv4(packet, hl, dst=inside[0], dport=inside[1])

    def describe(self) -> dict:
        return {"policy": self.name, "inside": self.inside, "public_address": self.public_address}


def _rewrite_ipv4(
    packet: bytes,
    hl: int,
    *,
    src: bytes | None = None,
    dst: bytes | None = None,
    sport: int | None = None,
    dport: int | None = None,
) -> bytes:
    """``packet`` with addresses/ports replaced and the IPv4 and TCP/UDP checksums recomputed."""
    header = bytearray(packet[:hl])
    if src is not None:
        header[12:16] = src
    if dst is not None:
        header[16:20] = dst
    header[10:12] = b"\x00\x00"
    header[10:12] = internet_checksum(bytes(header)).to_bytes(2, "big")
    total = int.from_bytes(packet[2:4], "big")
    seg = bytearray(packet[hl:total])
    if sport is not None:
        seg[0:2] = sport.to_bytes(2, "big")
    if dport is not None:
        seg[2:4] = dport.to_bytes(2, "big")
    proto = packet[9]
    offset = 16 if proto == TCP_PROTOCOL else 6
    if proto == UDP_PROTOCOL and seg[6:8] == b"\x00\x00":
        return bytes(header) + bytes(seg)  # no UDP checksum stays none (RFC 768)
    seg[offset : offset + 2] = b"\x00\x00"
    csum = transport_checksum(bytes(header[12:16]), bytes(header[16:20]), proto, bytes(seg))
    if proto == UDP_PROTOCOL and csum == 0:
        csum = 0xFFFF
    seg[offset : offset + 2] = csum.to_bytes(2, "big")
    return bytes(header) + bytes(seg) + packet[total:]


class BlockAllUdp(Middlebox):
    """Drop every UDP datagram, as a hotspot that lets only TCP through does."""

    name = "block_udp"

    def process(self, packet: bytes, *, now: float, ingress: str, egress: str, tracer: Tracer) -> bytes | None:
        if (
            packet[0] >> 4 == 4
            and packet[9] == UDP_PROTOCOL
            and is_fragment(packet)
            and (packet[6] & 0x1F or packet[7])
        ):
            self._record(
                tracer, now, "segment_dropped", {"reason": "UDP blocked", "fragment": True, "ingress": ingress}
            )
            return None
        parts = _split(packet)
        if parts is None or parts[0] != UDP_PROTOCOL or len(packet) < parts[1] + 4:
            return packet
        hl = parts[1]
        sport = int.from_bytes(packet[hl : hl + 2], "big")
        dport = int.from_bytes(packet[hl + 2 : hl + 4], "big")
        self._record(
            tracer,
            now,
            "segment_dropped",
            {"reason": "UDP blocked", "sport": sport, "dport": dport, "ingress": ingress},
        )
        return None

    def describe(self) -> dict:
        return {"policy": self.name, "ports": "all"}


class ForgeInfiniteMapping(Middlebox):
    """Rewrite the Data-Level Length of one DSS mapping to 0 (an infinite mapping, RFC 8684
    §3.7), fixing the TCP checksum: an on-path attacker's (or a broken box's) forged fallback.

    Picks the ``nth`` segment (1-based) towards ``dst_port`` whose MPTCP DSS carries a mapping
    with data; only an endpoint that checks when an infinite mapping may come can notice.
    """

    name = "forge_infinite_mapping"

    def __init__(self, *, dst_port: int | None = None, nth: int = 1) -> None:
        if nth < 1:
            raise ConfigError(f"nth must be at least 1, got {nth}")
        self.dst_port = dst_port
        self.nth = nth
        self._seen = 0
        self.forged = 0

    @staticmethod
    def _dss_length_at(opts: bytes) -> int | None:
        """Offset in ``opts`` of the Data-Level Length of a DSS with a mapping, else None."""
        pos = 0
        while pos < len(opts):
            kind = opts[pos]
            if kind == 0:
                return None
            if kind == 1:
                pos += 1
                continue
            if pos + 1 >= len(opts) or opts[pos + 1] < 2 or pos + opts[pos + 1] > len(opts):
                return None
            length = opts[pos + 1]
            if kind == 30 and length >= 4 and opts[pos + 2] >> 4 == 0x2:  # MPTCP DSS (RFC 8684 §3.3)
                flags = opts[pos + 3]
                if flags & 0x04:  # M: a mapping follows
                    at = pos + 4
                    if flags & 0x01:  # A: Data ACK, 8 bytes when a is set
                        at += 8 if flags & 0x02 else 4
                    at += (8 if flags & 0x08 else 4) + 4  # DSN (m: 8 bytes), subflow sequence number
                    if at + 2 <= pos + length and int.from_bytes(opts[at : at + 2], "big") > 0:
                        return at
            pos += length
        return None

    def process(self, packet: bytes, *, now: float, ingress: str, egress: str, tracer: Tracer) -> bytes | None:
        tcp = _tcp(packet)
        if tcp is None or self.forged:
            return packet
        hl, src, dst = tcp
        doff = (packet[hl + 12] >> 4) * 4
        if doff <= 20 or hl + doff > len(packet) or len(packet) - hl - doff <= 0:
            return packet
        if self.dst_port is not None and int.from_bytes(packet[hl + 2 : hl + 4], "big") != self.dst_port:
            return packet
        at = self._dss_length_at(packet[hl + 20 : hl + doff])
        if at is None:
            return packet
        self._seen += 1
        if self._seen != self.nth:
            return packet
        seg = bytearray(packet[hl:])
        seg[20 + at : 22 + at] = b"\x00\x00"
        self.forged += 1
        self._record(tracer, now, "segment_sent", {"action": "rewritten", "infinite_mapping": True, "ingress": ingress})
        return _with_tcp_checksum(packet, hl, seg, src, dst)

    def describe(self) -> dict:
        return {"policy": self.name, "dst_port": self.dst_port, "nth": self.nth}


class MangleTcpOptions(Middlebox):
    """Overwrite random bytes inside TCP options of the given kinds (length bytes kept, so the
    option list still parses), fixing the checksum: a broken box that rewrites what it does not
    understand. ``when`` as for :class:`StripTcpOptions`; each matching option is hit with
    ``probability`` (``rng_seed`` fixed), one to three of its data bytes replaced."""

    name = "mangle_tcp_options"

    def __init__(self, kinds: Iterable[int], *, when: str = "syn", probability: float = 1.0, rng_seed: int = 0) -> None:
        import random

        self.kinds = frozenset(int(k) for k in kinds)
        for k in self.kinds:
            if not 2 <= k <= 255:
                raise ConfigError(f"TCP option kind must be 2..255, got {k}")
        if when not in STRIP_WHEN:
            raise ConfigError(f"when must be one of {', '.join(STRIP_WHEN)}, got {when!r}")
        if not 0 <= probability <= 1:
            raise ConfigError(f"probability must be in [0, 1], got {probability}")
        self.when = when
        self.probability = probability
        self._rng = random.Random(rng_seed)
        self.mangled = 0

    def process(self, packet: bytes, *, now: float, ingress: str, egress: str, tracer: Tracer) -> bytes | None:
        tcp = _tcp(packet)
        if tcp is None:
            return packet
        hl, src, dst = tcp
        flags = packet[hl + 13]
        if (self.when == "syn" and not flags & SYN) or (self.when == "after_handshake" and flags & SYN):
            return packet
        doff = (packet[hl + 12] >> 4) * 4
        if doff <= 20 or hl + doff > len(packet):
            return packet
        opts = bytearray(packet[hl + 20 : hl + doff])
        changed = []
        pos = 0
        while pos < len(opts):
            kind = opts[pos]
            if kind == 0:
                break
            if kind == 1:
                pos += 1
                continue
            if pos + 1 >= len(opts) or opts[pos + 1] < 2 or pos + opts[pos + 1] > len(opts):
                break
            length = opts[pos + 1]
            if kind in self.kinds and length > 2 and self._rng.random() < self.probability:
                for _ in range(self._rng.randint(1, 3)):
                    opts[pos + 2 + self._rng.randrange(length - 2)] = self._rng.randrange(256)
                changed.append(kind)
            pos += length
        if not changed:
            return packet
        seg = bytearray(packet[hl:])
        seg[20:doff] = opts
        self.mangled += 1
        self._record(tracer, now, "segment_sent", {"action": "rewritten", "mangled_kinds": changed, "ingress": ingress})
        return _with_tcp_checksum(packet, hl, seg, src, dst)

    def describe(self) -> dict:
        return {"policy": self.name, "kinds": sorted(self.kinds), "when": self.when, "probability": self.probability}


class DropTcpOption(Middlebox):
    """Drop TCP segments that carry an option of the given kinds, as a firewall rule
    ``iptables -p tcp --tcp-option 69 -j DROP`` does (``when`` as for :class:`StripTcpOptions`)."""

    name = "drop_tcp_option"

    def __init__(self, kinds: Iterable[int], *, when: str = "all") -> None:
        self.kinds = frozenset(int(k) for k in kinds)
        for k in self.kinds:
            if not 2 <= k <= 255:
                raise ConfigError(f"TCP option kind must be 2..255, got {k}")
        if when not in STRIP_WHEN:
            raise ConfigError(f"when must be one of {', '.join(STRIP_WHEN)}, got {when!r}")
        self.when = when
        self.dropped = 0

    def process(self, packet: bytes, *, now: float, ingress: str, egress: str, tracer: Tracer) -> bytes | None:
        tcp = _tcp(packet)
        if tcp is None:
            return packet
        hl = tcp[0]
        flags = packet[hl + 13]
        if (self.when == "syn" and not flags & SYN) or (self.when == "after_handshake" and flags & SYN):
            return packet
        doff = (packet[hl + 12] >> 4) * 4
        opts = packet[hl + 20 : hl + doff]
        pos = 0
        while pos < len(opts):
            kind = opts[pos]
            if kind == 0:
                break
            if kind == 1:
                pos += 1
                continue
            if pos + 1 >= len(opts) or opts[pos + 1] < 2:
                break
            if kind in self.kinds:
                self.dropped += 1
                self._record(tracer, now, "segment_dropped", {"reason": f"TCP option {kind}", "ingress": ingress})
                return None
            pos += opts[pos + 1]
        return packet

    def describe(self) -> dict:
        return {"policy": self.name, "kinds": sorted(self.kinds), "when": self.when}


class DropIpFragments(Middlebox):
    """Drop every IP fragment (IPv4 with MF set or a non-zero offset, IPv6 with a Fragment header), as
    many firewalls and carrier-grade NATs do: a UDP datagram larger than the path never arrives.
    The nftables rule is ``ip frag-off & 0x3fff != 0 drop`` (iptables' ``-f`` matches only non-first fragments)."""

    name = "drop_ip_fragments"

    def process(self, packet: bytes, *, now: float, ingress: str, egress: str, tracer: Tracer) -> bytes | None:
        version = packet[0] >> 4
        if version == 4 and len(packet) >= 20:
            word = (packet[6] << 8) | packet[7]
            if not word & 0x3FFF:
                return packet
            detail = {"id": (packet[4] << 8) | packet[5], "offset": (word & 0x1FFF) * 8, "more": bool(word & 0x2000)}
        elif version == 6 and len(packet) >= 48 and packet[6] == 44:
            word = (packet[42] << 8) | packet[43]
            detail = {"id": int.from_bytes(packet[44:48], "big"), "offset": word & ~7, "more": bool(word & 1)}
        else:
            return packet
        self._record(
            tracer,
            now,
            "segment_dropped",
            {
                "reason": "IP fragment dropped",
                "protocol": packet[9] if version == 4 else packet[40],
                "len": len(packet),
                "ingress": ingress,
                **detail,
            },
        )
        return None


class DropLargeUdp(Middlebox):
    """Drop UDP datagrams larger than ``max_bytes`` (counted as IP packets: header included).

    A whole datagram is measured by its IP packet; a fragmented one by its first
    fragment, whose UDP length gives the whole datagram's size (later fragments
    pass: without their first they are never reassembled). Such boxes sit in
    some mobile and enterprise networks that "protect" against fragments and
    amplification by size.
    """

    name = "drop_large_udp"

    def __init__(self, max_bytes: int) -> None:
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or not 68 <= max_bytes <= 65535:
            raise ConfigError(f"max_bytes must be an integer in [68, 65535], got {max_bytes!r}")
        self.max_bytes = max_bytes

    def process(self, packet: bytes, *, now: float, ingress: str, egress: str, tracer: Tracer) -> bytes | None:
        parts = _split(packet)
        if (
            parts is not None
            and parts[0] == 44  # an IPv6 Fragment header: the first fragment carries the UDP header after it
            and len(packet) >= 56
            and packet[40] == UDP_PROTOCOL
            and not (packet[42] << 8 | packet[43]) & 0xFFF8
        ):
            parts = (UDP_PROTOCOL, 48, parts[2], parts[3])
        if parts is None or parts[0] != UDP_PROTOCOL or len(packet) < parts[1] + 8:
            return packet
        hl = parts[1]
        size = (40 if hl == 48 else hl) + int.from_bytes(packet[hl + 4 : hl + 6], "big")  # even when fragmented
        if size <= self.max_bytes:
            return packet
        self._record(
            tracer,
            now,
            "segment_dropped",
            {
                "reason": f"UDP datagram larger than {self.max_bytes} bytes",
                "size": size,
                "sport": int.from_bytes(packet[hl : hl + 2], "big"),
                "dport": int.from_bytes(packet[hl + 2 : hl + 4], "big"),
                "ingress": ingress,
            },
        )
        return None

    def describe(self) -> dict:
        return {"policy": self.name, "max_bytes": self.max_bytes}
