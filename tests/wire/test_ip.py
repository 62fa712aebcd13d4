"""IPv4 and IPv6 headers: exact bytes, round trips and malformed input."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.errors import DecodeError
from lab.wire.ip import (
    FLAG_DF,
    FLAG_MF,
    Ipv4Packet,
    Ipv6Packet,
    decode_ip,
    decode_ipv4,
    decode_ipv6,
    encode_ip,
    encode_ipv4,
    encode_ipv6,
    ip_protocol,
)
from tests.wire.test_checksum import naive_internet_checksum, naive_ones_sum

# A widely quoted example: 192.168.0.1 -> 192.168.0.199, UDP, 115 bytes, checksum b861.
IPV4_HEADER = bytes.fromhex(
    "45"  # version 4, IHL 5
    "00"  # DSCP 0, ECN 0
    "0073"  # total length 115
    "0000"  # identification
    "4000"  # flags DF, fragment offset 0
    "40"  # TTL 64
    "11"  # protocol UDP
    "b861"  # header checksum
    "c0a80001"  # 192.168.0.1
    "c0a800c7"  # 192.168.0.199
)
IPV4_PAYLOAD = bytes(range(95))
IPV4_PACKET = Ipv4Packet(src="192.168.0.1", dst="192.168.0.199", protocol=17, payload=IPV4_PAYLOAD)

IPV6_BYTES = bytes.fromhex(
    "6123"  # version 6, traffic class 0x12, ...
    "4567"  # ... flow label 0x34567
    "0003"  # payload length 3
    "06"  # next header TCP
    "ff"  # hop limit 255
    "20010db8000000000000000000000001"  # 2001:db8::1
    "20010db80000000000000000000000ff"  # 2001:db8::ff
    "616263"  # payload
)
IPV6_PACKET = Ipv6Packet(
    src="2001:db8::1",
    dst="2001:db8::ff",
    next_header=6,
    payload=b"abc",
    hop_limit=255,
    traffic_class=0x12,
    flow_label=0x34567,
)

# --- strategies ------------------------------------------------------------------

u8 = st.integers(min_value=0, max_value=0xFF)
u16 = st.integers(min_value=0, max_value=0xFFFF)
# Text as inet_ntop writes it, so that the decoded text compares equal.
ipv4_addresses = st.binary(min_size=4, max_size=4).map(lambda b: socket.inet_ntop(socket.AF_INET, b))
ipv6_addresses = st.one_of(
    st.binary(min_size=16, max_size=16),
    st.binary(min_size=2, max_size=2).map(lambda b: bytes.fromhex("fe80" + "00" * 12) + b),
    st.binary(min_size=4, max_size=4).map(lambda b: b"\x00" * 10 + b"\xff\xff" + b),  # IPv4-mapped
).map(lambda b: socket.inet_ntop(socket.AF_INET6, b))

ipv4_packets = st.builds(
    Ipv4Packet,
    src=ipv4_addresses,
    dst=ipv4_addresses,
    protocol=u8,
    payload=st.binary(max_size=200),
    ttl=u8,
    identification=u16,
    flags=st.integers(min_value=0, max_value=7),
    fragment_offset=st.integers(min_value=0, max_value=0x1FFF),
    dscp=st.integers(min_value=0, max_value=63),
    ecn=st.integers(min_value=0, max_value=3),
    options=st.integers(min_value=0, max_value=10).flatmap(lambda n: st.binary(min_size=4 * n, max_size=4 * n)),
)
ipv6_packets = st.builds(
    Ipv6Packet,
    src=ipv6_addresses,
    dst=ipv6_addresses,
    next_header=u8,
    payload=st.binary(max_size=200),
    hop_limit=u8,
    traffic_class=u8,
    flow_label=st.integers(min_value=0, max_value=0xFFFFF),
)


def build_ipv4(
    *,
    ihl: int = 5,
    total: int | None = None,
    version: int = 4,
    tos: int = 0,
    identification: int = 1,
    flags_frag: int = 0x4000,
    ttl: int = 64,
    protocol: int = 6,
    src: bytes = bytes((10, 0, 0, 1)),
    dst: bytes = bytes((10, 0, 0, 2)),
    options: bytes = b"",
    payload: bytes = b"",
) -> bytes:
    """An IPv4 packet written field by field, checksummed by the reference."""
    if total is None:
        total = 20 + len(options) + len(payload)
    header = struct.pack("!BBHHHBBH", version << 4 | ihl, tos, total, identification, flags_frag, ttl, protocol, 0)
    header += src + dst + options
    csum = naive_internet_checksum(header)
    return header[:10] + csum.to_bytes(2, "big") + header[12:] + payload


@st.composite
def valid_ipv4(draw: st.DrawFn) -> bytes:
    words = draw(st.integers(min_value=0, max_value=10))
    return build_ipv4(
        ihl=5 + words,
        tos=draw(u8),
        identification=draw(u16),
        flags_frag=draw(u16),
        ttl=draw(u8),
        protocol=draw(u8),
        src=draw(st.binary(min_size=4, max_size=4)),
        dst=draw(st.binary(min_size=4, max_size=4)),
        options=draw(st.binary(min_size=4 * words, max_size=4 * words)),
        payload=draw(st.binary(max_size=100)),
    )


@st.composite
def valid_ipv6(draw: st.DrawFn) -> bytes:
    payload = draw(st.binary(max_size=100))
    first = 6 << 28 | draw(u8) << 20 | draw(st.integers(min_value=0, max_value=0xFFFFF))
    return (
        struct.pack("!IHBB", first, len(payload), draw(u8), draw(u8))
        + draw(st.binary(min_size=32, max_size=32))
        + payload
    )


# --- exact bytes -------------------------------------------------------------------


def test_known_ipv4_header_by_reference() -> None:
    assert naive_ones_sum(IPV4_HEADER) == 0xFFFF


def test_encode_ipv4() -> None:
    assert encode_ipv4(IPV4_PACKET) == IPV4_HEADER + IPV4_PAYLOAD


def test_decode_ipv4() -> None:
    assert decode_ipv4(IPV4_HEADER + IPV4_PAYLOAD) == IPV4_PACKET
    assert decode_ip(IPV4_HEADER + IPV4_PAYLOAD) == IPV4_PACKET


def test_ipv4_fields_and_options_exact() -> None:
    pkt = Ipv4Packet(
        src="10.1.2.3",
        dst="10.4.5.6",
        protocol=6,
        payload=b"xy",
        ttl=1,
        identification=0xABCD,
        flags=FLAG_MF,
        fragment_offset=0x1234,
        dscp=46,
        ecn=3,
        options=b"\x01\x01\x01\x00",  # NOP NOP NOP EOL
    )
    unsummed = bytes.fromhex(
        "46"  # IHL 6
        "bb"  # DSCP 46 (EF), ECN 3
        "001a"  # 24 + 2
        "abcd"
        "3234"  # MF, offset 0x1234
        "01"
        "06"
        "0000"
        "0a010203"
        "0a040506"
        "01010100"
        "7879"
    )
    expected = unsummed[:10] + naive_internet_checksum(unsummed[:24]).to_bytes(2, "big") + unsummed[12:]
    assert encode_ipv4(pkt) == expected
    assert decode_ipv4(expected) == pkt


def test_encode_ipv6() -> None:
    assert encode_ipv6(IPV6_PACKET) == IPV6_BYTES
    assert encode_ip(IPV6_PACKET) == IPV6_BYTES


def test_decode_ipv6() -> None:
    assert decode_ipv6(IPV6_BYTES) == IPV6_PACKET
    assert decode_ip(IPV6_BYTES) == IPV6_PACKET


def test_trailing_link_padding_is_ignored() -> None:
    assert decode_ipv4(IPV4_HEADER + IPV4_PAYLOAD + b"\x00" * 6) == IPV4_PACKET
    assert decode_ipv6(IPV6_BYTES + b"\x00" * 6) == IPV6_PACKET


def test_ip_protocol_and_defaults() -> None:
    assert ip_protocol(IPV4_PACKET) == 17
    assert ip_protocol(IPV6_PACKET) == 6
    assert Ipv4Packet("10.0.0.1", "10.0.0.2", 6).flags == FLAG_DF
    assert encode_ip(IPV4_PACKET) == IPV4_HEADER + IPV4_PAYLOAD


def test_decode_ipv4_can_skip_checksum() -> None:
    bad = bytearray(IPV4_HEADER + IPV4_PAYLOAD)
    bad[8] = 63  # TTL
    assert decode_ipv4(bytes(bad), verify=False).ttl == 63


def test_encode_rejects_what_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="options"):
        encode_ipv4(Ipv4Packet("10.0.0.1", "10.0.0.2", 6, options=b"\x01\x01\x01"))
    with pytest.raises(ValueError, match="options"):
        encode_ipv4(Ipv4Packet("10.0.0.1", "10.0.0.2", 6, options=b"\x01" * 44))
    with pytest.raises(ValueError, match="65535"):
        encode_ipv4(Ipv4Packet("10.0.0.1", "10.0.0.2", 6, payload=b"\x00" * 65516))
    with pytest.raises(ValueError, match="jumbogram"):
        encode_ipv6(Ipv6Packet("::1", "::1", 6, payload=b"\x00" * 65536))


# --- round trips -------------------------------------------------------------------


@given(ipv4_packets)
def test_ipv4_round_trip(pkt: Ipv4Packet) -> None:
    raw = encode_ipv4(pkt)
    assert naive_ones_sum(raw[: (raw[0] & 0x0F) * 4]) == 0xFFFF
    assert decode_ipv4(raw) == pkt
    assert decode_ip(raw) == pkt


@given(ipv6_packets)
def test_ipv6_round_trip(pkt: Ipv6Packet) -> None:
    raw = encode_ipv6(pkt)
    assert len(raw) == 40 + len(pkt.payload)
    assert decode_ipv6(raw) == pkt
    assert decode_ip(raw) == pkt


@given(valid_ipv4())
def test_ipv4_encode_decode_round_trip(raw: bytes) -> None:
    assert encode_ipv4(decode_ipv4(raw)) == raw


@given(valid_ipv6())
def test_ipv6_encode_decode_round_trip(raw: bytes) -> None:
    assert encode_ipv6(decode_ipv6(raw)) == raw


# --- malformed input ------------------------------------------------------------------


def expect_error(decode: Callable[[bytes], object], data: bytes, field: str, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        decode(data)
    assert (info.value.field, info.value.offset) == (field, offset)


@pytest.mark.parametrize("length", [0, 1, 19])
def test_ipv4_truncated_header(length: int) -> None:
    expect_error(decode_ipv4, IPV4_HEADER[:length], "header", length)


@pytest.mark.parametrize("version", [0, 5, 6, 15])
def test_ipv4_bad_version(version: int) -> None:
    expect_error(decode_ipv4, build_ipv4(version=version), "version", 0)


@pytest.mark.parametrize("ihl", [0, 1, 4])
def test_ipv4_ihl_below_five(ihl: int) -> None:
    expect_error(decode_ipv4, build_ipv4(ihl=ihl, payload=b"\x00" * 8), "ihl", 0)


def test_ipv4_ihl_past_the_end() -> None:
    # IHL 15 (60 bytes) with a 40-byte packet: the total length cannot hold the header.
    expect_error(decode_ipv4, build_ipv4(ihl=15, total=40, payload=b"\x00" * 20), "total_length", 2)


@pytest.mark.parametrize("total", [0, 19, 21, 0xFFFF])
def test_ipv4_bad_total_length(total: int) -> None:
    # 20 bytes on the wire: anything but 20 is below the header or beyond the data.
    expect_error(decode_ipv4, build_ipv4(total=total), "total_length", 2)


def test_ipv4_total_length_below_ihl_with_options() -> None:
    expect_error(decode_ipv4, build_ipv4(ihl=6, total=22, options=b"\x01" * 4), "total_length", 2)


@pytest.mark.parametrize("index", [1, 4, 5, 6, 8, 9, 10, 11, 12, 19])
def test_ipv4_header_checksum_mismatch(index: int) -> None:
    bad = bytearray(IPV4_HEADER + IPV4_PAYLOAD)
    bad[index] ^= 0x01
    expect_error(decode_ipv4, bytes(bad), "header_checksum", 10)


def test_ipv4_checksum_does_not_cover_payload() -> None:
    bad = bytearray(IPV4_HEADER + IPV4_PAYLOAD)
    bad[-1] ^= 0xFF
    assert decode_ipv4(bytes(bad)).payload[-1] == IPV4_PAYLOAD[-1] ^ 0xFF


@pytest.mark.parametrize("length", [0, 1, 39])
def test_ipv6_truncated_header(length: int) -> None:
    expect_error(decode_ipv6, IPV6_BYTES[:length], "header", length)


@pytest.mark.parametrize("version", [0, 4, 7])
def test_ipv6_bad_version(version: int) -> None:
    bad = bytes([version << 4 | IPV6_BYTES[0] & 0x0F]) + IPV6_BYTES[1:]
    expect_error(decode_ipv6, bad, "version", 0)


@pytest.mark.parametrize("payload_length", [4, 100, 0xFFFF])
def test_ipv6_payload_length_beyond_the_data(payload_length: int) -> None:
    bad = IPV6_BYTES[:4] + payload_length.to_bytes(2, "big") + IPV6_BYTES[6:]
    expect_error(decode_ipv6, bad, "payload_length", 4)


def test_decode_ip_dispatch_errors() -> None:
    expect_error(decode_ip, b"", "version", 0)
    expect_error(decode_ip, b"\x50" + b"\x00" * 39, "version", 0)
    expect_error(decode_ip, b"\x45" + b"\x00" * 10, "header", 11)
    expect_error(decode_ip, b"\x60" + b"\x00" * 10, "header", 11)


@given(valid_ipv4(), st.data())
def test_ipv4_any_flipped_header_byte_fails(raw: bytes, data: st.DataObject) -> None:
    ihl = (raw[0] & 0x0F) * 4
    # Not byte 0: a different IHL moves the checksummed range, which may sum right by chance.
    index = data.draw(st.integers(min_value=1, max_value=ihl - 1))
    bad = bytearray(raw)
    bad[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    with pytest.raises(DecodeError) as info:
        decode_ipv4(bytes(bad))
    if index not in (2, 3):  # but for the total length, only the checksum can notice
        assert (info.value.field, info.value.offset) == ("header_checksum", 10)


# --- arbitrary input: a result or DecodeError, nothing else ------------------------------


@given(st.binary(max_size=80))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    for decode in (decode_ipv4, decode_ipv6, decode_ip):
        try:
            decode(data)
        except DecodeError as exc:
            assert 0 <= exc.offset <= len(data)


@given(st.sampled_from([0x45, 0x4F, 0x60, 0x6F]), st.binary(max_size=80))
def test_plausible_first_byte_decodes_or_raises_decode_error(first: int, rest: bytes) -> None:
    data = bytes([first]) + rest
    try:
        pkt = decode_ip(data)
    except DecodeError as exc:
        assert 0 <= exc.offset <= len(data)
    else:
        assert isinstance(pkt, Ipv4Packet | Ipv6Packet)
