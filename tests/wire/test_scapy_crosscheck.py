"""Our codecs against Scapy, an independent implementation, in both directions."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

scapy = pytest.importorskip("scapy")

from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, TCP, UDP, TCPOptions
from scapy.layers.inet6 import IPv6
from scapy.packet import Raw

from lab.errors import DecodeError
from lab.wire.checksum import pack_address
from lab.wire.ip import FLAG_DF, Ipv4Packet, Ipv6Packet, decode_ipv4, decode_ipv6, encode_ipv4, encode_ipv6
from lab.wire.tcp import (
    ACK,
    PSH,
    SYN,
    MaxSegmentSize,
    NoOperation,
    Sack,
    SackPermitted,
    TcpOption,
    TcpSegment,
    Timestamps,
    UnknownOption,
    WindowScale,
    decode_segment,
    encode_segment,
)
from lab.wire.udp import UdpDatagram, decode_datagram, encode_datagram
from tests.wire.test_ip import ipv4_addresses, ipv6_addresses
from tests.wire.test_tcp import KNOWN_KINDS, tcp_segments
from tests.wire.test_udp import datagrams

# Kinds Scapy has names for (MD5, UTO, TFO, ...) come back from Scapy as names, not numbers.
SCAPY_KINDS = frozenset(TCPOptions[0])
plain_kinds = st.integers(min_value=0, max_value=255).filter(lambda k: k not in KNOWN_KINDS | SCAPY_KINDS)

u8 = st.integers(min_value=0, max_value=0xFF)
u16 = st.integers(min_value=0, max_value=0xFFFF)
# IPv4 options Scapy parses and rebuilds byte for byte: none, NOPs, Router Alert (RFC 2113).
ipv4_options = st.sampled_from([b"", b"\x01\x01\x01\x00", b"\x94\x04\x00\x00", b"\x01\x01\x01\x01\x94\x04\x00\x00"])
crosscheck = settings(max_examples=100, deadline=None)


@pytest.fixture(autouse=True, scope="module")
def raw_payloads() -> Iterator[None]:
    """Keep Scapy from dissecting payloads as whatever a port number suggests (UDP 4754 is GRE)."""
    saved = {cls: cls.payload_guess for cls in (TCP, UDP)}
    for cls in saved:
        cls.payload_guess = []
    yield
    for cls, guess in saved.items():
        cls.payload_guess = guess


def to_scapy_options(options: tuple[TcpOption, ...]) -> list[tuple[Any, Any]]:
    out: list[tuple[Any, Any]] = []
    for opt in options:
        if isinstance(opt, NoOperation):
            out.append(("NOP", None))
        elif isinstance(opt, MaxSegmentSize):
            out.append(("MSS", opt.value))
        elif isinstance(opt, WindowScale):
            out.append(("WScale", opt.shift))
        elif isinstance(opt, SackPermitted):
            out.append(("SAckOK", b""))
        elif isinstance(opt, Sack):
            out.append(("SAck", tuple(edge for block in opt.blocks for edge in block)))
        elif isinstance(opt, Timestamps):
            out.append(("Timestamp", (opt.tsval, opt.tsecr)))
        else:
            out.append((opt.kind, opt.data))
    return out


def scapy_options(tcp: Any) -> list[tuple[Any, Any]]:
    """Scapy's parsed options without the End of Option List that stands for the padding."""
    options = list(tcp.options)
    if options and options[-1] == ("EOL", None):
        options.pop()
    return options


def scapy_tcp(seg: TcpSegment) -> Any:
    """Scapy's TCP layer for ``seg``; Scapy's 9-bit flags take the lowest of our 4 reserved bits (NS)."""
    return TCP(
        sport=seg.src_port,
        dport=seg.dst_port,
        seq=seg.seq,
        ack=seg.ack,
        reserved=seg.reserved >> 1,
        flags=(seg.reserved & 1) << 8 | seg.flags,
        window=seg.window,
        urgptr=seg.urgent,
        options=to_scapy_options(seg.options),
    ) / Raw(seg.payload)


def assert_scapy_tcp_matches(tcp: Any, seg: TcpSegment, wire: bytes) -> None:
    assert tcp.sport == seg.src_port
    assert tcp.dport == seg.dst_port
    assert tcp.seq == seg.seq
    assert tcp.ack == seg.ack
    assert tcp.dataofs == 5 + (len(wire) - 20 - len(seg.payload)) // 4
    assert tcp.reserved == seg.reserved >> 1
    assert int(tcp.flags) == (seg.reserved & 1) << 8 | seg.flags
    assert tcp.window == seg.window
    assert tcp.chksum == int.from_bytes(wire[16:18], "big")
    assert tcp.urgptr == seg.urgent
    assert scapy_options(tcp) == to_scapy_options(seg.options)
    assert bytes(tcp.payload) == seg.payload


def assert_scapy_checksums_agree(pkt: Any, layer: Any, wire: bytes) -> None:
    """Scapy recomputes every checksum we filled in and gets the same bytes."""
    rebuilt = pkt.copy()
    if rebuilt.haslayer(IP):
        del rebuilt[IP].chksum
    del rebuilt[layer].chksum
    assert bytes(rebuilt) == wire


def same_address(scapy_text: str, ours: str) -> bool:
    family = socket.AF_INET6 if ":" in ours else socket.AF_INET
    return socket.inet_pton(family, scapy_text) == socket.inet_pton(family, ours)


# --- ours -> Scapy ---------------------------------------------------------------------


def test_our_syn_in_scapy() -> None:
    seg = TcpSegment(
        12345,
        80,
        0x01020304,
        0,
        SYN,
        65535,
        options=(MaxSegmentSize(1460), SackPermitted(), Timestamps(0x11223344, 0), NoOperation(), WindowScale(7)),
    )
    src, dst = "192.0.2.1", "198.51.100.2"
    wire = encode_ipv4(Ipv4Packet(src, dst, 6, encode_segment(seg, pack_address(src), pack_address(dst))))
    pkt = IP(wire)
    assert pkt[TCP].options == [
        ("MSS", 1460),
        ("SAckOK", b""),
        ("Timestamp", (0x11223344, 0)),
        ("NOP", None),
        ("WScale", 7),
    ]
    assert pkt[TCP].chksum == 0xE2D3
    assert pkt[TCP].flags == "S"
    assert_scapy_checksums_agree(pkt, TCP, wire)


@crosscheck
@given(
    seg=tcp_segments(plain_kinds),
    src=ipv4_addresses,
    dst=ipv4_addresses,
    ttl=u8,
    identification=u16,
    flags=st.sampled_from([0, FLAG_DF]),
    dscp=st.integers(min_value=0, max_value=63),
    ecn=st.integers(min_value=0, max_value=3),
    options=ipv4_options,
)
def test_our_ipv4_tcp_in_scapy(
    seg: TcpSegment, src: str, dst: str, ttl: int, identification: int, flags: int, dscp: int, ecn: int, options: bytes
) -> None:
    segment = encode_segment(seg, pack_address(src), pack_address(dst))
    ip = Ipv4Packet(src, dst, 6, segment, ttl, identification, flags, 0, dscp, ecn, options)
    wire = encode_ipv4(ip)
    pkt = IP(wire)
    assert pkt.version == 4
    assert pkt.ihl == 5 + len(options) // 4
    assert pkt.tos == dscp << 2 | ecn
    assert pkt.len == len(wire)
    assert pkt.id == identification
    assert int(pkt.flags) == flags
    assert pkt.frag == 0
    assert pkt.ttl == ttl
    assert pkt.proto == 6
    assert pkt.chksum == int.from_bytes(wire[10:12], "big")
    assert same_address(pkt.src, src)
    assert same_address(pkt.dst, dst)
    assert b"".join(bytes(o) for o in pkt.options) == options
    assert_scapy_tcp_matches(pkt[TCP], seg, segment)
    assert_scapy_checksums_agree(pkt, TCP, wire)


@crosscheck
@given(
    seg=tcp_segments(plain_kinds),
    src=ipv6_addresses,
    dst=ipv6_addresses,
    hop_limit=u8,
    traffic_class=u8,
    flow_label=st.integers(min_value=0, max_value=0xFFFFF),
)
def test_our_ipv6_tcp_in_scapy(
    seg: TcpSegment, src: str, dst: str, hop_limit: int, traffic_class: int, flow_label: int
) -> None:
    segment = encode_segment(seg, pack_address(src), pack_address(dst))
    wire = encode_ipv6(Ipv6Packet(src, dst, 6, segment, hop_limit, traffic_class, flow_label))
    pkt = IPv6(wire)
    assert pkt.version == 6
    assert pkt.tc == traffic_class
    assert pkt.fl == flow_label
    assert pkt.plen == len(segment)
    assert pkt.nh == 6
    assert pkt.hlim == hop_limit
    assert same_address(pkt.src, src)
    assert same_address(pkt.dst, dst)
    assert_scapy_tcp_matches(pkt[TCP], seg, segment)
    assert_scapy_checksums_agree(pkt, TCP, wire)


@crosscheck
@given(
    dgram=datagrams,
    v6=st.booleans(),
    src4=ipv4_addresses,
    dst4=ipv4_addresses,
    src6=ipv6_addresses,
    dst6=ipv6_addresses,
)
def test_our_udp_in_scapy(dgram: UdpDatagram, v6: bool, src4: str, dst4: str, src6: str, dst6: str) -> None:
    src, dst = (src6, dst6) if v6 else (src4, dst4)
    datagram = encode_datagram(dgram, pack_address(src), pack_address(dst))
    if v6:
        wire = encode_ipv6(Ipv6Packet(src, dst, 17, datagram))
        pkt = IPv6(wire)
    else:
        wire = encode_ipv4(Ipv4Packet(src, dst, 17, datagram))
        pkt = IP(wire)
    udp = pkt[UDP]
    assert udp.sport == dgram.src_port
    assert udp.dport == dgram.dst_port
    assert udp.len == 8 + len(dgram.payload)
    assert udp.chksum == int.from_bytes(datagram[6:8], "big")
    assert bytes(udp.payload) == dgram.payload
    assert_scapy_checksums_agree(pkt, UDP, wire)


# --- Scapy -> ours ------------------------------------------------------------------------


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_scapy_sack_and_extension_options_in_ours(v6: bool) -> None:
    src, dst = ("2001:db8::1", "2001:db8::2") if v6 else ("192.0.2.1", "198.51.100.2")
    options = [
        ("NOP", None),
        ("NOP", None),
        ("SAck", (1000, 2000, 3000, 4000, 0xFFFFFF00, 0x00000100)),  # the last block wraps
        (69, b"\x23"),  # TCP-ENO (RFC 8547)
        (30, b"\x01\x01"),  # MP_CAPABLE v1 (RFC 8684)
    ]
    tcp = TCP(sport=40000, dport=443, seq=7, ack=8, flags="A", window=1024, options=options) / Raw(b"payload")
    pkt = (IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)) / tcp
    wire = bytes(pkt)
    segment = decode_ipv6(wire).payload if v6 else decode_ipv4(wire).payload
    seg = decode_segment(segment, pack_address(src), pack_address(dst))
    assert seg == TcpSegment(
        40000,
        443,
        7,
        8,
        ACK,
        1024,
        options=(
            NoOperation(),
            NoOperation(),
            Sack(((1000, 2000), (3000, 4000), (0xFFFFFF00, 0x00000100))),
            UnknownOption(69, b"\x23"),
            UnknownOption(30, b"\x01\x01"),
        ),
        payload=b"payload",
    )


def test_scapy_named_options_we_do_not_know_stay_unknown() -> None:
    src, dst = "10.0.0.1", "10.0.0.2"
    options = [("UTO", 300), ("MD5", b"\xa5" * 16), (254, b"\xf9\x89"), (30, b"")]
    wire = bytes(IP(src=src, dst=dst) / TCP(flags="S", options=options))
    seg = decode_segment(decode_ipv4(wire).payload, pack_address(src), pack_address(dst))
    assert seg.options == (
        UnknownOption(28, b"\x01\x2c"),
        UnknownOption(19, b"\xa5" * 16),
        UnknownOption(254, b"\xf9\x89"),
        UnknownOption(30, b""),
    )


def test_scapy_wrong_checksums_are_rejected() -> None:
    src, dst = "10.0.0.1", "10.0.0.2"
    good = bytes(IP(src=src, dst=dst) / TCP(flags="PA") / Raw(b"x"))
    bad_tcp = bytes(IP(src=src, dst=dst) / TCP(flags="PA", chksum=IP(good)[TCP].chksum ^ 0x0100) / Raw(b"x"))
    with pytest.raises(DecodeError) as info:
        decode_segment(decode_ipv4(bad_tcp).payload, pack_address(src), pack_address(dst))
    assert (info.value.field, info.value.offset) == ("checksum", 16)

    bad_ip = bytes(IP(src=src, dst=dst, chksum=IP(good).chksum ^ 0x0001) / TCP(flags="PA") / Raw(b"x"))
    with pytest.raises(DecodeError) as info:
        decode_ipv4(bad_ip)
    assert (info.value.field, info.value.offset) == ("header_checksum", 10)

    bad_udp = bytes(IPv6(src="::1", dst="::2") / UDP(sport=1, dport=2, chksum=0) / Raw(b"x"))
    with pytest.raises(DecodeError) as info:
        decode_datagram(decode_ipv6(bad_udp).payload, pack_address("::1"), pack_address("::2"))
    assert (info.value.field, info.value.offset) == ("checksum", 6)


@crosscheck
@given(
    seg=tcp_segments(plain_kinds),
    src=ipv4_addresses,
    dst=ipv4_addresses,
    ttl=u8,
    identification=u16,
    flags=st.sampled_from([0, FLAG_DF]),
    tos=u8,
)
def test_scapy_ipv4_tcp_in_ours(
    seg: TcpSegment, src: str, dst: str, ttl: int, identification: int, flags: int, tos: int
) -> None:
    wire = bytes(IP(src=src, dst=dst, ttl=ttl, id=identification, flags=flags, tos=tos) / scapy_tcp(seg))
    ip = decode_ipv4(wire)
    assert ip == Ipv4Packet(src, dst, 6, ip.payload, ttl, identification, flags, 0, tos >> 2, tos & 3)
    assert decode_segment(ip.payload, pack_address(src), pack_address(dst)) == seg
    # Scapy and we write the very same bytes.
    assert encode_ipv4(ip) == wire
    assert encode_segment(seg, pack_address(src), pack_address(dst)) == ip.payload


@crosscheck
@given(seg=tcp_segments(plain_kinds), src=ipv6_addresses, dst=ipv6_addresses, hop_limit=u8, tc=u8)
def test_scapy_ipv6_tcp_in_ours(seg: TcpSegment, src: str, dst: str, hop_limit: int, tc: int) -> None:
    wire = bytes(IPv6(src=src, dst=dst, hlim=hop_limit, tc=tc, fl=0xABCDE) / scapy_tcp(seg))
    ip = decode_ipv6(wire)
    assert ip == Ipv6Packet(src, dst, 6, ip.payload, hop_limit, tc, 0xABCDE)
    assert decode_segment(ip.payload, pack_address(src), pack_address(dst)) == seg
    assert encode_ipv6(ip) == wire


@crosscheck
@given(
    dgram=datagrams,
    v6=st.booleans(),
    src4=ipv4_addresses,
    dst4=ipv4_addresses,
    src6=ipv6_addresses,
    dst6=ipv6_addresses,
)
def test_scapy_udp_in_ours(dgram: UdpDatagram, v6: bool, src4: str, dst4: str, src6: str, dst6: str) -> None:
    udp = UDP(sport=dgram.src_port, dport=dgram.dst_port) / Raw(dgram.payload)
    if v6:
        src, dst = src6, dst6
        wire = bytes(IPv6(src=src, dst=dst) / udp)
        datagram = decode_ipv6(wire).payload
    else:
        src, dst = src4, dst4
        wire = bytes(IP(src=src, dst=dst) / udp)
        datagram = decode_ipv4(wire).payload
    assert decode_datagram(datagram, pack_address(src), pack_address(dst)) == dgram
    assert encode_datagram(dgram, pack_address(src), pack_address(dst)) == datagram


def test_scapy_sends_a_computed_zero_udp_checksum_as_ffff() -> None:
    # Find a payload word whose checksum computes to zero, then let Scapy build it.
    from tests.wire.test_udp import payload_summing_to_zero_checksum

    for src, dst, layer in (("10.0.0.1", "10.0.0.2", IP), ("2001:db8::1", "2001:db8::2", IPv6)):
        payload = payload_summing_to_zero_checksum(pack_address(src), pack_address(dst), 1000, 2000)
        wire = bytes(layer(src=src, dst=dst) / UDP(sport=1000, dport=2000) / Raw(payload))
        datagram = wire[20:] if layer is IP else wire[40:]
        assert datagram[6:8] == b"\xff\xff"
        assert encode_datagram(UdpDatagram(1000, 2000, payload), pack_address(src), pack_address(dst)) == datagram
        assert decode_datagram(datagram, pack_address(src), pack_address(dst)) == UdpDatagram(1000, 2000, payload)


def test_flags_agree_with_scapy_names() -> None:
    wire = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / TCP(flags="SAPFURECN"))
    seg = decode_segment(decode_ipv4(wire).payload)
    assert seg.flags == 0xFF
    assert seg.reserved == 0x1  # NS, RFC 3540 (historic), is Scapy's ninth flag
    assert TCP(flags=PSH | ACK).flags == "PA"
