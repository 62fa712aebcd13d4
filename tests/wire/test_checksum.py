"""The fast Internet checksum against a word-by-word RFC 1071 reference."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lab.wire.checksum import (
    finish_partial_checksum,
    internet_checksum,
    mod_ffff,
    ones_sum,
    pack_address,
    pseudo_header_sum,
    transport_checksum,
    transport_checksum_ok,
    unpack_address,
)

# --- the reference: RFC 1071 §4.1, one 16-bit word at a time --------------------


def naive_ones_sum(data: bytes) -> int:
    """16-bit one's-complement sum, folding the carry after every word (RFC 1071 §4.1)."""
    if len(data) % 2:
        data += b"\x00"
    total = 0
    for i in range(0, len(data), 2):
        total += (data[i] << 8) | data[i + 1]
        total = (total & 0xFFFF) + (total >> 16)
    return total


def naive_internet_checksum(data: bytes) -> int:
    return ~naive_ones_sum(data) & 0xFFFF


def naive_pseudo_header(src: bytes, dst: bytes, protocol: int, length: int) -> bytes:
    """The pseudo-header as bytes: RFC 9293 §3.1 (IPv4) or RFC 8200 §8.1 (IPv6)."""
    if len(src) == 4:
        return src + dst + bytes((0, protocol)) + length.to_bytes(2, "big")
    return src + dst + length.to_bytes(4, "big") + bytes((0, 0, 0, protocol))


def naive_transport_checksum(src: bytes, dst: bytes, protocol: int, segment: bytes) -> int:
    """Checksum of ``segment`` (checksum field zeroed); the segment is padded, not the pseudo-header."""
    pad = b"\x00" if len(segment) % 2 else b""
    return naive_internet_checksum(naive_pseudo_header(src, dst, protocol, len(segment)) + segment + pad)


def naive_transport_checksum_ok(src: bytes, dst: bytes, protocol: int, segment: bytes) -> bool:
    pad = b"\x00" if len(segment) % 2 else b""
    return naive_ones_sum(naive_pseudo_header(src, dst, protocol, len(segment)) + segment + pad) == 0xFFFF


# --- strategies -----------------------------------------------------------------

# Lengths around word boundaries, all-zero and all-ones buffers, and anything else.
edge_data = st.integers(min_value=0, max_value=70).flatmap(
    lambda n: st.sampled_from([b"\x00" * n, b"\xff" * n, bytes(range(n)), bytes(255 - i for i in range(n))])
)
data = st.one_of(st.binary(max_size=300), edge_data)
ipv4 = st.binary(min_size=4, max_size=4)
ipv6 = st.binary(min_size=16, max_size=16)
address_pair = st.one_of(st.tuples(ipv4, ipv4), st.tuples(ipv6, ipv6))
protocol = st.one_of(st.sampled_from([6, 17]), st.integers(min_value=0, max_value=255))


# --- exact values -----------------------------------------------------------------


def test_rfc1071_numerical_example() -> None:
    # RFC 1071 §3: the bytes 00 01 f2 03 f4 f5 f6 f7 sum to ddf2.
    data = bytes.fromhex("0001f203f4f5f6f7")
    assert naive_ones_sum(data) == 0xDDF2
    assert ones_sum(data) == 0xDDF2
    assert internet_checksum(data) == 0x220D


def test_known_ipv4_header_checksum() -> None:
    # A widely quoted example header: 192.168.0.1 -> 192.168.0.199, UDP, checksum b861.
    header = bytes.fromhex("450000730000400040110000c0a80001c0a800c7")
    assert naive_internet_checksum(header) == 0xB861
    assert internet_checksum(header) == 0xB861
    with_checksum = header[:10] + b"\xb8\x61" + header[12:]
    assert ones_sum(with_checksum) == 0xFFFF


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", 0),
        (b"\x00", 0),
        (b"\x00\x00\x00", 0),
        (b"\x01", 0x0100),  # an odd trailing byte is the high byte of a zero-padded word
        (b"\xff\xff", 0xFFFF),
        (b"\xff\xff\xff\xff", 0xFFFF),  # a nonzero multiple of 0xFFFF folds to 0xFFFF (minus zero)
        (b"\xff", 0xFF00),
        (b"\x80\x00\x80\x00", 0x0001),  # the carry goes around
    ],
)
def test_ones_sum_edges(data: bytes, expected: int) -> None:
    assert naive_ones_sum(data) == expected
    assert ones_sum(data) == expected


def test_known_tcp_checksum() -> None:
    # The SYN of tests/wire/test_tcp.py, checksum computed by hand with the reference above.
    src, dst = bytes((192, 0, 2, 1)), bytes((198, 51, 100, 2))
    segment = bytes.fromhex("303900500102030400000000a002ffff00000000020405b40402080a112233440000000001030307")
    assert transport_checksum(src, dst, 6, segment) == 0xE2D3
    assert naive_transport_checksum(src, dst, 6, segment) == 0xE2D3
    assert transport_checksum_ok(src, dst, 6, segment[:16] + b"\xe2\xd3" + segment[18:])


# --- fast == reference under Hypothesis ---------------------------------------------


@given(data)
@example(b"")
@example(b"\x00" * 7)
@example(b"\xff" * 9)
def test_ones_sum_matches_reference(data: bytes) -> None:
    assert ones_sum(data) == naive_ones_sum(data)


@given(data)
def test_internet_checksum_matches_reference(data: bytes) -> None:
    assert internet_checksum(data) == naive_internet_checksum(data)


@given(data)
def test_internet_checksum_verifies(data: bytes) -> None:
    # Appending the checksum as a word (at an even offset) makes the whole sum 0xFFFF.
    if len(data) % 2:
        data += b"\x00"
    assert naive_ones_sum(data + internet_checksum(data).to_bytes(2, "big")) == 0xFFFF


@given(address_pair, protocol, data)
@example((b"\x00" * 4, b"\x00" * 4), 0, b"")
@example((b"\x00" * 16, b"\x00" * 16), 0, b"")
@example((b"\xff" * 4, b"\xff" * 4), 255, b"\xff" * 31)
@example((b"\xff" * 16, b"\xff" * 16), 255, b"\xff" * 31)
def test_transport_checksum_matches_reference(addrs: tuple[bytes, bytes], protocol: int, segment: bytes) -> None:
    src, dst = addrs
    assert transport_checksum(src, dst, protocol, segment) == naive_transport_checksum(src, dst, protocol, segment)


@given(address_pair, protocol, data)
def test_pseudo_header_sum_is_congruent_to_reference(addrs: tuple[bytes, bytes], protocol: int, segment: bytes) -> None:
    src, dst = addrs
    pseudo = naive_pseudo_header(src, dst, protocol, len(segment))
    assert pseudo_header_sum(src, dst, protocol, len(segment)) % 0xFFFF == naive_ones_sum(pseudo) % 0xFFFF


@given(address_pair, protocol, st.binary(min_size=2, max_size=300), st.data())
def test_transport_checksum_ok_matches_reference(
    addrs: tuple[bytes, bytes], protocol: int, segment: bytes, draw: st.DataObject
) -> None:
    src, dst = addrs
    # Put the checksum at an even offset, as TCP (16) and UDP (6) do.
    at = draw.draw(st.integers(min_value=0, max_value=(len(segment) - 2) // 2)) * 2
    zeroed = segment[:at] + b"\x00\x00" + segment[at + 2 :]
    csum = transport_checksum(src, dst, protocol, zeroed)
    good = segment[:at] + csum.to_bytes(2, "big") + segment[at + 2 :]
    assert transport_checksum_ok(src, dst, protocol, good)
    assert naive_transport_checksum_ok(src, dst, protocol, good)
    # Any other checksum value is either equivalent (0x0000 <-> 0xFFFF) or wrong, for both.
    assert transport_checksum_ok(src, dst, protocol, segment) == naive_transport_checksum_ok(
        src, dst, protocol, segment
    )


@given(address_pair, st.sampled_from([6, 17]), st.binary(min_size=18, max_size=200), st.data())
def test_flipping_one_byte_breaks_the_checksum(
    addrs: tuple[bytes, bytes], protocol: int, segment: bytes, draw: st.DataObject
) -> None:
    src, dst = addrs
    zeroed = segment[:16] + b"\x00\x00" + segment[18:]
    good = segment[:16] + transport_checksum(src, dst, protocol, zeroed).to_bytes(2, "big") + segment[18:]
    index = draw.draw(st.integers(min_value=0, max_value=len(good) - 1))
    mask = draw.draw(st.integers(min_value=1, max_value=255))
    bad = bytearray(good)
    bad[index] ^= mask
    # A one-byte change moves the sum by d * 2**k with 0 < |d| < 256: never a multiple of 0xFFFF.
    assert not transport_checksum_ok(src, dst, protocol, bytes(bad))
    assert not naive_transport_checksum_ok(src, dst, protocol, bytes(bad))


# --- addresses ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "packed"),
    [
        ("192.0.2.1", bytes((192, 0, 2, 1))),
        ("0.0.0.0", b"\x00" * 4),
        ("2001:db8::1", bytes.fromhex("20010db8000000000000000000000001")),
        ("::", b"\x00" * 16),
    ],
)
def test_pack_address(text: str, packed: bytes) -> None:
    assert pack_address(text) == packed
    assert unpack_address(packed) == text


@given(st.one_of(ipv4, ipv6))
def test_unpack_then_pack_address(packed: bytes) -> None:
    assert pack_address(unpack_address(packed)) == packed


# --- buffers larger than a packet: a coalesced (GRO) segment ----------------------------


@pytest.mark.parametrize("size", [1500, 4001, 9000, 44_000, 65_535, 262_144])
def test_large_buffers_sum_as_the_reference(size: int) -> None:
    data = bytes((i * 131 + (i >> 8) * 7) & 0xFF for i in range(size))
    assert ones_sum(data) == naive_ones_sum(data)
    value = int.from_bytes(data, "big")
    assert mod_ffff(value) == value % 0xFFFF


@pytest.mark.parametrize("payload_len", [0, 1, 1448, 43_440])
def test_a_partial_checksum_finished_is_the_full_one(payload_len: int) -> None:
    """CHECKSUM_PARTIAL (what a kernel leaves in a segment it coalesced): the field holds the
    pseudo-header's sum, folded and not complemented; finishing it gives the checksum itself."""
    src, dst = bytes((10, 0, 1, 1)), bytes((10, 0, 2, 1))
    tcp = bytearray(bytes.fromhex("c3500050000003e8000007d08010fffe00000000") + bytes(i & 0xFF for i in range(payload_len)))
    ip = bytes.fromhex("4500") + (20 + len(tcp)).to_bytes(2, "big") + bytes.fromhex("00014000400600000a0001010a000201")
    full = transport_checksum(src, dst, 6, bytes(tcp))
    tcp[16:18] = (mod_ffff(pseudo_header_sum(src, dst, 6, len(tcp))) or 0xFFFF).to_bytes(2, "big")
    finished = finish_partial_checksum(ip + bytes(tcp), 20, 16)
    assert finished[36:38] == full.to_bytes(2, "big")
    assert finished[:36] == ip + bytes(tcp[:16]) and finished[38:] == bytes(tcp[18:])
