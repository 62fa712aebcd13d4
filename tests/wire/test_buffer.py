"""Buffer: big-endian reads that name the field they failed on."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.errors import DecodeError
from lab.wire.buffer import Buffer


def test_pulls_big_endian_integers_and_bytes() -> None:
    buf = Buffer(bytes.fromhex("01 0203 04050607 08090a0b0c0d0e0f 6869 7a7a"))
    assert buf.pull_u8() == 0x01
    assert buf.pull_u16() == 0x0203
    assert buf.pull_u32() == 0x04050607
    assert buf.pull_u64() == 0x08090A0B0C0D0E0F
    assert buf.tell() == 15
    assert buf.pull_bytes(2) == b"hi"
    assert buf.remaining() == 2
    assert not buf.eof()
    assert buf.pull_rest() == b"zz"
    assert buf.eof()
    assert buf.remaining() == 0
    assert buf.pull_rest() == b""


def test_empty_buffer() -> None:
    buf = Buffer()
    assert buf.eof()
    assert buf.tell() == 0
    assert buf.pull_bytes(0) == b""
    with pytest.raises(DecodeError) as info:
        buf.pull_u8("kind")
    assert (info.value.field, info.value.offset) == ("kind", 0)


@pytest.mark.parametrize(
    ("method", "size"),
    [("pull_u8", 1), ("pull_u16", 2), ("pull_u32", 4), ("pull_u64", 8)],
)
def test_truncated_integer_names_field_and_offset(method: str, size: int) -> None:
    buf = Buffer(b"\xaa" * (3 + size - 1))
    buf.pull_bytes(3)
    with pytest.raises(DecodeError) as info:
        getattr(buf, method)("token")
    assert info.value.field == "token"
    assert info.value.offset == 3
    assert f"need {size} bytes, have {size - 1}" in info.value.reason
    assert buf.tell() == 3  # a failed pull consumes nothing


def test_truncated_bytes_and_default_field_names() -> None:
    buf = Buffer(b"abc")
    with pytest.raises(DecodeError) as info:
        buf.pull_bytes(4)
    assert (info.value.field, info.value.offset) == ("bytes", 0)
    with pytest.raises(DecodeError) as info:
        Buffer(b"").pull_u32()
    assert info.value.field == "u32"


def test_base_offset_shifts_tell_and_error_offsets() -> None:
    buf = Buffer(b"\x00\x01\x02", base_offset=20)
    assert buf.tell() == 20
    buf.pull_u16()
    assert buf.tell() == 22
    with pytest.raises(DecodeError) as info:
        buf.pull_u16("length")
    assert (info.value.field, info.value.offset) == ("length", 22)


def test_commit_and_rollback() -> None:
    buf = Buffer(b"\x00\x05abc")
    buf.commit()
    assert buf.pull_u16() == 5
    with pytest.raises(DecodeError):
        buf.pull_bytes(5, "payload")
    buf.rollback()
    assert buf.tell() == 0
    assert buf.pull_u16() == 5


def test_push_data_then_rollback_completes_a_half_frame() -> None:
    # The frame header was read, the body had not arrived yet: the parser waits.
    buf = Buffer(b"\x00\x04ab")
    buf.commit()
    assert buf.pull_u16("length") == 4
    with pytest.raises(DecodeError):
        buf.pull_bytes(4, "body")
    buf.push_data(b"cd")
    buf.rollback()
    assert buf.tell() == 0
    assert buf.pull_u16("length") == 4
    assert buf.pull_bytes(4, "body") == b"abcd"
    assert buf.eof()


def test_push_data_keeps_stream_offsets() -> None:
    buf = Buffer(b"\x00\x02hi")
    assert buf.pull_u16() == 2
    assert buf.pull_bytes(2) == b"hi"
    buf.commit()
    buf.push_data(b"\x00\x03")
    assert buf.tell() == 4
    assert buf.pull_u16() == 3
    with pytest.raises(DecodeError) as info:
        buf.pull_bytes(3, "body")
    assert info.value.offset == 6  # counted from the start of the stream
    buf.rollback()
    buf.push_data(b"xyz")
    buf.rollback()
    assert buf.tell() == 4
    assert buf.pull_u16() == 3
    assert buf.pull_bytes(3) == b"xyz"
    assert buf.eof()


@given(st.lists(st.binary(max_size=12), max_size=8), st.lists(st.integers(0, 8), min_size=1, max_size=20))
def test_stream_of_length_prefixed_frames_in_any_chunks(frames: list[bytes], cuts: list[int]) -> None:
    """Feeding a stream in arbitrary chunks yields the same frames as feeding it at once."""
    stream = b"".join(struct.pack("!B", len(f)) + f for f in frames)
    chunks = []
    pos = 0
    for cut in cuts:
        chunks.append(stream[pos : pos + cut])
        pos += cut
    chunks.append(stream[pos:])

    buf = Buffer()
    got: list[bytes] = []
    for chunk in chunks:
        buf.push_data(chunk)
        while True:
            buf.rollback()  # back to the start of the first unfinished frame
            try:
                length = buf.pull_u8("length")
                body = buf.pull_bytes(length, "body")
            except DecodeError:
                break
            got.append(body)
            buf.commit()
    assert got == frames
    buf.rollback()
    assert buf.eof()
    assert buf.tell() == len(stream)


@given(st.binary(max_size=64), st.lists(st.sampled_from([1, 2, 4, 8]), max_size=20))
def test_reads_match_struct(data: bytes, sizes: list[int]) -> None:
    buf = Buffer(data)
    pos = 0
    codes = {1: "!B", 2: "!H", 4: "!I", 8: "!Q"}
    pulls = {1: buf.pull_u8, 2: buf.pull_u16, 4: buf.pull_u32, 8: buf.pull_u64}
    for size in sizes:
        if pos + size > len(data):
            with pytest.raises(DecodeError) as info:
                pulls[size]("x")
            assert info.value.offset == pos
            break
        assert pulls[size]("x") == struct.unpack_from(codes[size], data, pos)[0]
        pos += size
        assert buf.tell() == pos
        assert buf.remaining() == len(data) - pos
