"""UDP datagrams: exact bytes, round trips and malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.errors import DecodeError
from lab.wire.udp import UdpDatagram, decode_datagram, encode_datagram
from tests.wire.test_checksum import naive_ones_sum, naive_pseudo_header, naive_transport_checksum_ok

CLIENT4 = bytes((192, 0, 2, 1))  # 192.0.2.1 (RFC 5737)
SERVER4 = bytes((198, 51, 100, 2))  # 198.51.100.2
CLIENT6 = bytes.fromhex("20010db8000000000000000000000001")  # 2001:db8::1 (RFC 3849)
SERVER6 = bytes.fromhex("20010db8000000000000000000000002")  # 2001:db8::2

DATAGRAM = UdpDatagram(src_port=5353, dst_port=53, payload=b"hello")
DATAGRAM_BYTES = bytes.fromhex(
    "14e9"  # source port 5353
    "0035"  # destination port 53
    "000d"  # length 13
    "baac"  # checksum over the pseudo-header 192.0.2.1 -> 198.51.100.2
    "68656c6c6f"  # "hello"
)

u16 = st.integers(min_value=0, max_value=0xFFFF)
address_pairs = st.one_of(
    st.tuples(st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4)),
    st.tuples(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16)),
)
datagrams = st.builds(UdpDatagram, src_port=u16, dst_port=u16, payload=st.binary(max_size=300))


def build_datagram(
    sport: int, dport: int, payload: bytes, src: bytes, dst: bytes, *, length: int | None = None
) -> bytes:
    """A datagram written field by field, checksummed by the reference (0 sent as 0xFFFF)."""
    if length is None:
        length = 8 + len(payload)
    raw = struct.pack("!HHHH", sport, dport, length, 0) + payload
    pad = b"\x00" if len(raw) % 2 else b""
    csum = ~naive_ones_sum(naive_pseudo_header(src, dst, 17, len(raw)) + raw + pad) & 0xFFFF
    return raw[:6] + (csum or 0xFFFF).to_bytes(2, "big") + raw[8:]


@st.composite
def valid_encodings(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    src, dst = draw(address_pairs)
    return build_datagram(draw(u16), draw(u16), draw(st.binary(max_size=200)), src, dst), src, dst


def payload_summing_to_zero_checksum(src: bytes, dst: bytes, sport: int, dport: int) -> bytes:
    """A two-byte payload that makes the computed checksum 0x0000."""
    head = struct.pack("!HHHH", sport, dport, 10, 0)
    partial = naive_ones_sum(naive_pseudo_header(src, dst, 17, 10) + head)
    word = 0xFFFF - partial  # partial + word == 0xFFFF, whose complement is 0
    return word.to_bytes(2, "big")


# --- exact bytes ------------------------------------------------------------------


def test_known_datagram_by_reference() -> None:
    assert naive_transport_checksum_ok(CLIENT4, SERVER4, 17, DATAGRAM_BYTES)


def test_encode_datagram() -> None:
    assert encode_datagram(DATAGRAM, CLIENT4, SERVER4) == DATAGRAM_BYTES


def test_decode_datagram() -> None:
    assert decode_datagram(DATAGRAM_BYTES, CLIENT4, SERVER4) == DATAGRAM
    assert decode_datagram(DATAGRAM_BYTES) == DATAGRAM


def test_datagram_over_ipv6_exact() -> None:
    expected = build_datagram(4500, 4500, b"\x00" * 7, CLIENT6, SERVER6)
    assert expected[:6] == bytes.fromhex("11941194000f")
    got = encode_datagram(UdpDatagram(4500, 4500, b"\x00" * 7), CLIENT6, SERVER6)
    assert got == expected
    assert decode_datagram(got, CLIENT6, SERVER6) == UdpDatagram(4500, 4500, b"\x00" * 7)


@pytest.mark.parametrize(("src", "dst"), [(CLIENT4, SERVER4), (CLIENT6, SERVER6)])
def test_computed_zero_checksum_is_sent_as_ffff(src: bytes, dst: bytes) -> None:
    payload = payload_summing_to_zero_checksum(src, dst, 1000, 2000)
    raw = encode_datagram(UdpDatagram(1000, 2000, payload), src, dst)
    assert raw[6:8] == b"\xff\xff"  # RFC 768: all ones stands for a computed zero
    assert naive_transport_checksum_ok(src, dst, 17, raw)
    assert decode_datagram(raw, src, dst) == UdpDatagram(1000, 2000, payload)


def test_zero_checksum_over_ipv4_means_none() -> None:
    raw = DATAGRAM_BYTES[:6] + b"\x00\x00" + DATAGRAM_BYTES[8:]
    assert decode_datagram(raw, CLIENT4, SERVER4) == DATAGRAM


def test_bytes_beyond_the_length_are_ignored() -> None:
    # Link-layer padding after the datagram is neither payload nor summed.
    assert decode_datagram(DATAGRAM_BYTES + b"\xaa\xbb\xcc", CLIENT4, SERVER4) == DATAGRAM


def test_encode_rejects_oversized_datagram() -> None:
    with pytest.raises(ValueError, match="65535"):
        encode_datagram(UdpDatagram(1, 2, b"\x00" * 65528), CLIENT4, SERVER4)


# --- round trips -------------------------------------------------------------------


@given(datagrams, address_pairs)
def test_decode_encode_round_trip(dgram: UdpDatagram, addrs: tuple[bytes, bytes]) -> None:
    src, dst = addrs
    raw = encode_datagram(dgram, src, dst)
    assert raw[6:8] != b"\x00\x00"
    assert naive_transport_checksum_ok(src, dst, 17, raw)
    assert decode_datagram(raw, src, dst) == dgram


@given(valid_encodings())
def test_encode_decode_round_trip(encoding: tuple[bytes, bytes, bytes]) -> None:
    raw, src, dst = encoding
    assert encode_datagram(decode_datagram(raw, src, dst), src, dst) == raw


# --- malformed input ------------------------------------------------------------------


def expect_error(
    data: bytes, field: str, offset: int, src: bytes | None = CLIENT4, dst: bytes | None = SERVER4
) -> None:
    with pytest.raises(DecodeError) as info:
        decode_datagram(data, src, dst)
    assert (info.value.field, info.value.offset) == (field, offset)


@pytest.mark.parametrize("length", [0, 1, 7])
def test_truncated_header(length: int) -> None:
    expect_error(DATAGRAM_BYTES[:length], "header", length)


@pytest.mark.parametrize("length", [0, 7, 14, 0xFFFF])
def test_bad_length(length: int) -> None:
    # 13 bytes on the wire: below the header or beyond the data.
    raw = build_datagram(5353, 53, b"hello", CLIENT4, SERVER4, length=length)
    expect_error(raw, "length", 4)
    expect_error(raw, "length", 4, None, None)


def test_checksum_mismatch() -> None:
    bad = bytearray(DATAGRAM_BYTES)
    bad[-1] ^= 0x20  # "hellO"
    expect_error(bytes(bad), "checksum", 6)
    assert decode_datagram(bytes(bad)).payload == b"hellO"  # nothing to verify against


def test_checksum_covers_the_pseudo_header() -> None:
    expect_error(DATAGRAM_BYTES, "checksum", 6, CLIENT4, bytes((198, 51, 100, 3)))
    expect_error(DATAGRAM_BYTES, "checksum", 6, CLIENT6, SERVER6)


def test_zero_checksum_over_ipv6() -> None:
    raw = build_datagram(5353, 53, b"hello", CLIENT6, SERVER6)
    expect_error(raw[:6] + b"\x00\x00" + raw[8:], "checksum", 6, CLIENT6, SERVER6)


@given(valid_encodings(), st.data())
def test_any_flipped_byte_fails(encoding: tuple[bytes, bytes, bytes], data: st.DataObject) -> None:
    raw, src, dst = encoding
    index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    bad = bytearray(raw)
    bad[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    if bad[6:8] == b"\x00\x00" and len(src) == 4:
        decode_datagram(bytes(bad), src, dst)  # the flip turned the checksum off, which IPv4 allows
        return
    if index in (4, 5):
        # A shorter length also drops payload bytes from the sum: almost always a mismatch.
        try:
            decode_datagram(bytes(bad), src, dst)
        except DecodeError as exc:
            assert exc.field in ("length", "checksum")
        return
    with pytest.raises(DecodeError) as info:
        decode_datagram(bytes(bad), src, dst)
    assert (info.value.field, info.value.offset) == ("checksum", 6)


# --- arbitrary input: a result or DecodeError, nothing else ------------------------------


@given(st.binary(max_size=40), address_pairs)
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes, addrs: tuple[bytes, bytes]) -> None:
    for args in ((), addrs):
        try:
            dgram = decode_datagram(data, *args)
        except DecodeError as exc:
            assert 0 <= exc.offset <= len(data)
        else:
            assert len(dgram.payload) <= len(data) - 8
