"""TCP segments and options: exact bytes, round trips and malformed input."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.errors import DecodeError
from lab.wire.tcp import (
    ACK,
    CWR,
    ECE,
    FIN,
    PSH,
    RST,
    SYN,
    URG,
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
    flags_text,
    pull_options,
    push_option,
    push_options,
)
from tests.wire.test_checksum import naive_transport_checksum, naive_transport_checksum_ok

CLIENT4 = bytes((192, 0, 2, 1))  # 192.0.2.1 (RFC 5737)
SERVER4 = bytes((198, 51, 100, 2))  # 198.51.100.2
CLIENT6 = bytes.fromhex("20010db8000000000000000000000001")  # 2001:db8::1 (RFC 3849)
SERVER6 = bytes.fromhex("20010db8000000000000000000000002")  # 2001:db8::2

# The SYN Linux sends: MSS 1460, SACK-permitted, timestamps, NOP, window scale 7.
SYN_SEGMENT = TcpSegment(
    src_port=12345,
    dst_port=80,
    seq=0x01020304,
    ack=0,
    flags=SYN,
    window=65535,
    options=(MaxSegmentSize(1460), SackPermitted(), Timestamps(0x11223344, 0), NoOperation(), WindowScale(7)),
)
SYN_BYTES = bytes.fromhex(
    "3039"  # source port 12345
    "0050"  # destination port 80
    "01020304"  # sequence number
    "00000000"  # acknowledgment number
    "a0"  # data offset 10 words, reserved 0
    "02"  # flags: SYN
    "ffff"  # window
    "e2d3"  # checksum over the pseudo-header 192.0.2.1 -> 198.51.100.2
    "0000"  # urgent pointer
    "020405b4"  # MSS 1460
    "0402"  # SACK-permitted
    "080a1122334400000000"  # timestamps tsval=0x11223344 tsecr=0
    "01"  # NOP
    "030307"  # window scale 7
)

# --- strategies -------------------------------------------------------------------

u8 = st.integers(min_value=0, max_value=0xFF)
u16 = st.integers(min_value=0, max_value=0xFFFF)
u32 = st.integers(min_value=0, max_value=0xFFFFFFFF)
KNOWN_KINDS = frozenset({0, 1, 2, 3, 4, 5, 8})
unknown_kinds = st.integers(min_value=0, max_value=255).filter(lambda k: k not in KNOWN_KINDS)
address_pairs = st.one_of(
    st.tuples(st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4)),
    st.tuples(st.binary(min_size=16, max_size=16), st.binary(min_size=16, max_size=16)),
)


def option_size(opt: TcpOption) -> int:
    """Bytes an option takes on the wire, counted here independently of push_option()."""
    if isinstance(opt, NoOperation):
        return 1
    if isinstance(opt, Sack):
        return 2 + 8 * len(opt.blocks)
    if isinstance(opt, UnknownOption):
        return 2 + len(opt.data)
    return {MaxSegmentSize: 4, WindowScale: 3, SackPermitted: 2, Timestamps: 10}[type(opt)]


def single_options(kinds: st.SearchStrategy[int] = unknown_kinds) -> st.SearchStrategy[TcpOption]:
    return st.one_of(
        st.just(NoOperation()),
        st.builds(MaxSegmentSize, u16),
        st.builds(WindowScale, u8),
        st.just(SackPermitted()),
        st.builds(Sack, st.lists(st.tuples(u32, u32), min_size=1, max_size=4).map(tuple)),
        st.builds(Timestamps, u32, u32),
        st.builds(UnknownOption, kinds, st.binary(max_size=38)),
    )


def tcp_options(kinds: st.SearchStrategy[int] = unknown_kinds) -> st.SearchStrategy[tuple[TcpOption, ...]]:
    """Any options but EOL, at most 40 bytes in all; ``kinds`` are the UnknownOption kinds."""

    def fit(options: list[TcpOption]) -> tuple[TcpOption, ...]:
        kept, used = [], 0
        for opt in options:
            if used + option_size(opt) <= 40:
                kept.append(opt)
                used += option_size(opt)
        return tuple(kept)

    return st.lists(single_options(kinds), max_size=12).map(fit)


def tcp_segments(kinds: st.SearchStrategy[int] = unknown_kinds) -> st.SearchStrategy[TcpSegment]:
    return st.builds(
        TcpSegment,
        src_port=u16,
        dst_port=u16,
        seq=u32,
        ack=u32,
        flags=u8,
        window=u16,
        options=tcp_options(kinds),
        payload=st.binary(max_size=200),
        urgent=u16,
        reserved=st.integers(min_value=0, max_value=15),
    )


@st.composite
def raw_option(draw: st.DrawFn) -> bytes:
    """One well-formed option, written as bytes without the codec."""
    kind = draw(st.sampled_from(["nop", "mss", "wscale", "sackok", "sack", "ts", "other"]))
    if kind == "nop":
        return b"\x01"
    if kind == "mss":
        return b"\x02\x04" + draw(st.binary(min_size=2, max_size=2))
    if kind == "wscale":
        return b"\x03\x03" + draw(st.binary(min_size=1, max_size=1))
    if kind == "sackok":
        return b"\x04\x02"
    if kind == "sack":
        n = draw(st.integers(min_value=1, max_value=4))
        return bytes((5, 2 + 8 * n)) + draw(st.binary(min_size=8 * n, max_size=8 * n))
    if kind == "ts":
        return b"\x08\x0a" + draw(st.binary(min_size=8, max_size=8))
    data = draw(st.binary(max_size=38))
    return bytes((draw(unknown_kinds), 2 + len(data))) + data


def build_segment(
    *,
    options: bytes = b"",
    payload: bytes = b"",
    offset_words: int | None = None,
    header: tuple[int, int, int, int, int, int, int, int] = (1234, 80, 1, 0, 0, ACK, 1000, 0),
    src: bytes = CLIENT4,
    dst: bytes = SERVER4,
) -> bytes:
    """A segment written field by field (options zero-padded), checksummed by the reference."""
    options += b"\x00" * (-len(options) % 4)
    sport, dport, seq, ack, reserved, flags, window, urgent = header
    if offset_words is None:
        offset_words = 5 + len(options) // 4
    raw = struct.pack("!HHIIBBHHH", sport, dport, seq, ack, offset_words << 4 | reserved, flags, window, 0, urgent)
    raw += options + payload
    csum = naive_transport_checksum(src, dst, 6, raw)
    return raw[:16] + csum.to_bytes(2, "big") + raw[18:]


@st.composite
def valid_encodings(draw: st.DrawFn) -> tuple[bytes, bytes, bytes]:
    src, dst = draw(address_pairs)
    options, used = [], 0
    for opt in draw(st.lists(raw_option(), max_size=12)):
        if used + len(opt) <= 40:
            options.append(opt)
            used += len(opt)
    header = (
        draw(u16),
        draw(u16),
        draw(u32),
        draw(u32),
        draw(st.integers(min_value=0, max_value=15)),
        draw(u8),
        draw(u16),
        draw(u16),
    )
    payload = draw(st.binary(max_size=100))
    return build_segment(options=b"".join(options), payload=payload, header=header, src=src, dst=dst), src, dst


# --- exact bytes ------------------------------------------------------------------


def test_syn_checksum_by_reference() -> None:
    assert naive_transport_checksum_ok(CLIENT4, SERVER4, 6, SYN_BYTES)


def test_encode_syn() -> None:
    assert encode_segment(SYN_SEGMENT, CLIENT4, SERVER4) == SYN_BYTES


def test_decode_syn() -> None:
    seg = decode_segment(SYN_BYTES, CLIENT4, SERVER4)
    assert seg == SYN_SEGMENT
    assert seg.seg_len == 1
    assert seg.option(WindowScale) == WindowScale(7)
    assert seg.option(Sack) is None


def test_encode_data_segment_with_timestamps_over_ipv6() -> None:
    seg = TcpSegment(
        src_port=443,
        dst_port=50000,
        seq=0xFFFFFFFF,
        ack=0x80000000,
        flags=PSH | ACK,
        window=502,
        options=(NoOperation(), NoOperation(), Timestamps(4000000000, 123)),
        payload=b"hello",
    )
    unsummed = bytes.fromhex(
        "01bb"  # 443
        "c350"  # 50000
        "ffffffff"
        "80000000"
        "80"  # 8 words
        "18"  # PSH|ACK
        "01f6"  # 502
        "0000"  # checksum, filled in below
        "0000"
        "0101080aee6b28000000007b"  # NOP NOP timestamps
        "68656c6c6f"  # "hello" (odd length: the last word is zero-padded)
    )
    csum = naive_transport_checksum(SERVER6, CLIENT6, 6, unsummed)
    expected = unsummed[:16] + csum.to_bytes(2, "big") + unsummed[18:]
    assert encode_segment(seg, SERVER6, CLIENT6) == expected
    assert decode_segment(expected, SERVER6, CLIENT6) == seg


def test_sack_and_unknown_options_exact() -> None:
    seg = TcpSegment(
        1,
        2,
        3,
        4,
        ACK,
        5,
        options=(NoOperation(), NoOperation(), Sack(((100, 200), (300, 400))), UnknownOption(30, b"\x00\x81")),
    )
    options = bytes.fromhex("0101051200000064000000c80000012c000001901e040081")
    expected = build_segment(options=options, header=(1, 2, 3, 4, 0, ACK, 5, 0))
    assert len(expected) == 20 + 24
    assert encode_segment(seg, CLIENT4, SERVER4) == expected
    assert decode_segment(expected, CLIENT4, SERVER4) == seg


def test_reserved_bits_and_urgent_pointer() -> None:
    seg = TcpSegment(7, 8, 9, 10, URG | FIN | CWR | ECE, 11, urgent=0xBEEF, reserved=0x1)
    raw = encode_segment(seg, CLIENT4, SERVER4)
    assert raw[12:14] == b"\x51\xe1"
    assert raw[18:20] == b"\xbe\xef"
    assert decode_segment(raw, CLIENT4, SERVER4) == seg


def test_options_are_padded_with_eol() -> None:
    assert push_options([NoOperation()]) == b"\x01\x00\x00\x00"
    assert push_options([WindowScale(14)]) == b"\x03\x03\x0e\x00"
    assert push_options([]) == b""
    assert pull_options(b"\x01\x00\x00\x00") == (NoOperation(),)
    # Anything after End of Option List is ignored.
    assert pull_options(b"\x03\x03\x0e\x00\xff\xff\xff\xff") == (WindowScale(14),)


@pytest.mark.parametrize(
    ("opt", "raw"),
    [
        (NoOperation(), "01"),
        (MaxSegmentSize(536), "02040218"),
        (WindowScale(0), "030300"),
        (SackPermitted(), "0402"),
        (Sack(((1, 2),)), "050a0000000100000002"),
        (Timestamps(1, 0xFFFFFFFF), "080a00000001ffffffff"),
        (UnknownOption(69, b""), "4502"),
        (UnknownOption(254, b"\xf9\x89"), "fe04f989"),
    ],
)
def test_each_option(opt: TcpOption, raw: str) -> None:
    assert push_option(opt) == bytes.fromhex(raw)
    assert pull_options(bytes.fromhex(raw)) == (opt,)


def test_flags_text_and_seg_len() -> None:
    assert flags_text(SYN | ACK) == "SA"
    assert flags_text(FIN | PSH | ACK) == "FPA"
    assert flags_text(RST) == "R"
    assert flags_text(0) == "."
    assert flags_text(0xFF) == "FSRPAUEC"
    assert TcpSegment(1, 2, 0, 0, SYN | FIN, 0, payload=b"abc").seg_len == 5
    assert TcpSegment(1, 2, 0, 0, ACK, 0).seg_len == 0


def test_push_rejects_what_cannot_be_encoded() -> None:
    with pytest.raises(ValueError, match="too long"):
        push_option(UnknownOption(99, b"\x00" * 39))
    with pytest.raises(ValueError, match="more than 40"):
        push_options([Timestamps(0, 0)] * 5)
    with pytest.raises(TypeError):
        push_option("MSS")  # type: ignore[arg-type]


# --- round trips -------------------------------------------------------------------


@given(tcp_segments(), address_pairs)
def test_decode_encode_round_trip(seg: TcpSegment, addrs: tuple[bytes, bytes]) -> None:
    src, dst = addrs
    raw = encode_segment(seg, src, dst)
    assert naive_transport_checksum_ok(src, dst, 6, raw)
    assert raw[12] >> 4 == 5 + -(-sum(option_size(o) for o in seg.options) // 4)
    assert decode_segment(raw, src, dst) == seg


@given(tcp_options())
def test_options_round_trip(options: tuple[TcpOption, ...]) -> None:
    raw = push_options(options)
    assert len(raw) % 4 == 0
    assert len(raw) <= 40
    assert pull_options(raw) == options


@given(valid_encodings())
def test_encode_decode_round_trip(encoding: tuple[bytes, bytes, bytes]) -> None:
    raw, src, dst = encoding
    assert encode_segment(decode_segment(raw, src, dst), src, dst) == raw


# --- malformed input ------------------------------------------------------------------


def expect_error(data: bytes, field: str, offset: int, src: bytes | None = CLIENT4, dst: bytes | None = SERVER4) -> str:
    with pytest.raises(DecodeError) as info:
        decode_segment(data, src, dst)
    assert (info.value.field, info.value.offset) == (field, offset)
    return info.value.reason


@pytest.mark.parametrize("length", [0, 1, 12, 19])
def test_truncated_header(length: int) -> None:
    expect_error(SYN_BYTES[:length], "header", length)


@pytest.mark.parametrize("offset_words", [0, 4, 11, 15])
def test_bad_data_offset(offset_words: int) -> None:
    # 40 bytes on the wire: 0..4 words is below the header, 11..15 runs past the end.
    raw = build_segment(options=b"\x01" * 20, offset_words=offset_words)
    expect_error(raw, "data_offset", 12)
    expect_error(raw, "data_offset", 12, None, None)


@pytest.mark.parametrize(
    ("options", "field", "offset"),
    [
        pytest.param("1e000000", "options[0].length", 21, id="length-0"),
        pytest.param("1e010000", "options[0].length", 21, id="length-1"),
        pytest.param("011e0600", "options[1].length", 22, id="overrun"),
        pytest.param("020402181e0a0000", "options[1].length", 25, id="overrun-after-mss"),
        pytest.param("0101011e", "options[3].length", 24, id="no-length-byte"),
        pytest.param("0808000000000000", "options[0].length", 21, id="timestamps-8"),
        pytest.param("0101080b000000000000000000000000", "options[2].length", 23, id="timestamps-11"),
        pytest.param("05020000", "options[0].length", 21, id="sack-no-blocks"),
        pytest.param("0509000000000000000000", "options[0].length", 21, id="sack-9"),
        pytest.param("01050b" + "00" * 9, "options[1].length", 22, id="sack-11"),
        pytest.param("02030500", "options[0].length", 21, id="mss-3"),
        pytest.param("03020000", "options[0].length", 21, id="wscale-2"),
        pytest.param("04030000", "options[0].length", 21, id="sackok-3"),
    ],
)
def test_malformed_option(options: str, field: str, offset: int) -> None:
    raw = build_segment(options=bytes.fromhex(options), payload=b"data")
    assert naive_transport_checksum_ok(CLIENT4, SERVER4, 6, raw)  # the checksum is fine
    reason = expect_error(raw, field, offset)
    assert "length" in reason
    expect_error(raw, field, offset, None, None)
    with pytest.raises(DecodeError) as info:
        pull_options(raw[20 : (raw[12] >> 4) * 4])
    assert (info.value.field, info.value.offset) == (field, offset)


def test_checksum_mismatch() -> None:
    bad = bytearray(SYN_BYTES)
    bad[-1] ^= 0x01  # window scale 7 -> 6
    reason = expect_error(bytes(bad), "checksum", 16)
    assert "checksum" in reason
    # Without addresses there is nothing to verify against.
    assert decode_segment(bytes(bad)).option(WindowScale) == WindowScale(6)


def test_checksum_covers_the_pseudo_header() -> None:
    expect_error(SYN_BYTES, "checksum", 16, CLIENT4, bytes((198, 51, 100, 3)))
    expect_error(SYN_BYTES, "checksum", 16, CLIENT6, SERVER6)
    # Swapping source and destination leaves a one's-complement sum unchanged.
    assert decode_segment(SYN_BYTES, SERVER4, CLIENT4) == SYN_SEGMENT


@given(valid_encodings(), st.data())
def test_any_flipped_byte_is_a_checksum_mismatch(encoding: tuple[bytes, bytes, bytes], data: st.DataObject) -> None:
    raw, src, dst = encoding
    index = data.draw(st.integers(min_value=0, max_value=len(raw) - 1).filter(lambda i: i != 12))
    bad = bytearray(raw)
    bad[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    expect_error(bytes(bad), "checksum", 16, src, dst)


# --- arbitrary input: a result or DecodeError, nothing else ------------------------------


@given(st.binary(max_size=80), address_pairs)
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes, addrs: tuple[bytes, bytes]) -> None:
    for args in ((), addrs):
        try:
            seg = decode_segment(data, *args)
        except DecodeError as exc:
            assert 0 <= exc.offset <= len(data)
        else:
            assert isinstance(seg, TcpSegment)


@given(st.binary(max_size=40).map(lambda b: b + b"\x00" * (-len(b) % 4)), st.binary(max_size=8))
def test_arbitrary_options_decode_or_raise_decode_error(options: bytes, payload: bytes) -> None:
    # A valid header and checksum, so that the option parser sees every arbitrary byte.
    raw = build_segment(options=options, payload=payload)
    try:
        seg = decode_segment(raw, CLIENT4, SERVER4)
    except DecodeError as exc:
        assert exc.field.startswith("options[")
        assert exc.field.endswith("].length")
        assert 20 < exc.offset <= 20 + len(options)
    else:
        assert seg.payload == payload
        # What decoded re-encodes to an equivalent options area.
        assert pull_options(push_options(seg.options)) == seg.options


def test_options_of_kind_returns_all_in_order() -> None:
    from lab.wire.tcp import NoOperation, TcpSegment, Timestamps, UnknownOption

    a, b = UnknownOption(30, b"\x20\x01"), UnknownOption(30, b"\x50\x01")
    seg = TcpSegment(1, 2, 0, 0, 0x10, 100, (a, NoOperation(), Timestamps(1, 2), b))
    assert seg.options_of_kind(30) == [a, b]
    assert seg.options_of_kind(69) == []
