"""lab.iketcp: RFC 9329 framing in any TCP chunking, and what closes the stream."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.errors import LocalProtocolError
from lab.iketcp import (
    CLOSED_BAD_LENGTH,
    CLOSED_BAD_PREFIX,
    CLOSED_END_OF_STREAM,
    CLOSED_UNPARSABLE,
    EspPacketReceived,
    IkeMessageReceived,
    IketcpEvent,
    IketcpStream,
    Role,
    StreamClosed,
    StreamState,
)
from lab.trace import RECORD_NAMES, MemoryTracer

H = bytes.fromhex
GOLD = json.loads((Path(__file__).parent.parent / "ike" / "captures" / "ikev2_psk_aesgcm256_dh19_vs_libreswan.json").read_text())
MSG1, MSG2 = H(GOLD["msg1"]), H(GOLD["msg2"])
ESP = H("c0ffee01 00000001") + bytes(8 + 4 + 16)


def events(stream: IketcpStream) -> list[IketcpEvent]:
    out = []
    while (event := stream.next_event()) is not None:
        out.append(event)
    return out


def received(stream: IketcpStream) -> list[tuple[str, bytes | str]]:
    """What went up, as ("ike"|"esp", bytes), and ("closed", reason) if the stream closed."""
    out: list[tuple[str, bytes | str]] = []
    for event in events(stream):
        if isinstance(event, IkeMessageReceived):
            out.append(("ike", event.message))
        elif isinstance(event, EspPacketReceived):
            out.append(("esp", event.packet))
        else:
            assert isinstance(event, StreamClosed)
            out.append(("closed", event.reason))
    return out


def frame(body: bytes) -> bytes:
    return (len(body) + 2).to_bytes(2, "big") + body


def responder(tracer: MemoryTracer | None = None) -> IketcpStream:
    return IketcpStream(role=Role.RESPONDER, tracer=tracer or MemoryTracer())


# --- sending --------------------------------------------------------------------------------------------------------


def test_initiator_sends_the_prefix_then_length_framed_messages() -> None:
    stream = IketcpStream(role="initiator")
    stream.send_ike(MSG1)
    stream.send_esp(ESP)
    data = stream.data_to_send()
    assert (
        data
        == b"IKETCP" + (len(MSG1) + 6).to_bytes(2, "big") + bytes(4) + MSG1 + (len(ESP) + 2).to_bytes(2, "big") + ESP
    )
    assert data[:6] == H("494b45544350")
    assert stream.data_to_send() == b""


def test_responder_sends_no_prefix() -> None:
    stream = IketcpStream(role=Role.RESPONDER)
    assert stream.data_to_send() == b""
    assert stream.state is StreamState.AWAITING_PREFIX


def test_refused_sends_change_nothing() -> None:
    stream = IketcpStream(role=Role.INITIATOR)
    stream.data_to_send()
    with pytest.raises(LocalProtocolError, match="SPI 0"):
        stream.send_esp(bytes(12))
    with pytest.raises(LocalProtocolError):
        stream.send_esp(H("c0ffee01"))
    with pytest.raises(LocalProtocolError):
        stream.send_ike(MSG1[:27])
    with pytest.raises(LocalProtocolError, match="65533"):
        stream.send_ike(MSG1 + bytes(65530))
    assert stream.data_to_send() == b""
    stream.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="closed"):
        stream.send_ike(MSG1)


# --- receiving --------------------------------------------------------------------------------------------------------

STREAM = b"IKETCP" + frame(bytes(4) + MSG1) + frame(ESP) + frame(bytes(4) + MSG2)
EXPECTED = [("ike", MSG1), ("esp", ESP), ("ike", MSG2)]


def test_whole_stream_at_once() -> None:
    tracer = MemoryTracer()
    stream = responder(tracer)
    stream.receive_data(STREAM, now=1.0)
    evs = events(stream)
    assert [type(e) for e in evs] == [IkeMessageReceived, EspPacketReceived, IkeMessageReceived]
    assert evs[0].header.spi_i == H(GOLD["SPIi"]) and evs[0].header.length == len(MSG1)
    assert (evs[1].spi, evs[1].seq) == (0xC0FFEE01, 1)
    assert [r.name for r in tracer.records] == ["state_updated"] + ["segment_received"] * 3
    assert all(r.layer == "iketcp" and r.name in RECORD_NAMES and r.t == 1.0 for r in tracer.records)


def test_one_byte_at_a_time() -> None:
    stream = responder()
    for i in range(len(STREAM)):
        stream.receive_data(STREAM[i : i + 1])
    assert received(stream) == EXPECTED


@given(st.lists(st.integers(0, len(STREAM)), max_size=12))
def test_any_chunking_gives_the_same_messages(cuts: list[int]) -> None:
    points = [0, *sorted(cuts), len(STREAM)]
    stream = responder()
    for a, b in itertools.pairwise(points):
        if b > a:
            stream.receive_data(STREAM[a:b])
    stream.receive_data(b"")
    assert received(stream) == [*EXPECTED, ("closed", CLOSED_END_OF_STREAM)]


IKE_BODIES = st.binary(min_size=28, max_size=300).map(lambda m: ("ike", m))
ESP_BODIES = st.binary(min_size=8, max_size=300).filter(lambda p: p[:4] != bytes(4)).map(lambda p: ("esp", p))


@given(st.lists(st.one_of(IKE_BODIES, ESP_BODIES), max_size=8), st.data())
def test_initiator_to_responder_round_trip(messages: list[tuple[str, bytes]], data: st.DataObject) -> None:
    messages = [(kind, _ike_like(body) if kind == "ike" else body) for kind, body in messages]
    sender = IketcpStream(role=Role.INITIATOR)
    for kind, body in messages:
        (sender.send_ike if kind == "ike" else sender.send_esp)(body)
    wire = sender.data_to_send()
    receiver = responder()
    pos = 0
    while pos < len(wire):
        step = data.draw(st.integers(1, 64))
        receiver.receive_data(wire[pos : pos + step])
        pos += step
    assert received(receiver) == messages


def _ike_like(body: bytes) -> bytes:
    """Put a plausible IKE header Length in a random message."""
    return body[:24] + len(body).to_bytes(4, "big") + body[28:]


def test_the_initiator_parses_the_responders_frames_without_a_prefix() -> None:
    stream = IketcpStream(role=Role.INITIATOR)
    stream.receive_data(frame(bytes(4) + MSG2))
    assert received(stream) == [("ike", MSG2)]


# --- what the RFC says to ignore -----------------------------------------------------------------------------------------


def test_empty_messages_and_keepalives_are_silently_dropped() -> None:
    tracer = MemoryTracer()
    stream = responder(tracer)
    stream.receive_data(b"IKETCP" + H("0002") + H("0003ff") + frame(ESP))
    assert received(stream) == [("esp", ESP)]
    assert [r.data["reason"] for r in tracer.select(name="segment_dropped")] == ["empty_message", "nat_keepalive"]
    assert stream.state is StreamState.OPEN


def test_ike_frame_with_a_bad_message_inside_goes_up_to_ike() -> None:
    """RFC 9329 §6.1: a syntax issue inside an IKE message is IKE's to answer (INVALID_SYNTAX), not a TCP teardown."""
    wrong_length = MSG1[:24] + (len(MSG1) + 9).to_bytes(4, "big") + MSG1[28:]
    stream = responder()
    stream.receive_data(b"IKETCP" + frame(bytes(4) + wrong_length))
    assert received(stream) == [("ike", wrong_length)]


# --- what closes the stream ----------------------------------------------------------------------------------------------

CLOSING = [
    pytest.param(b"IKETCQ", CLOSED_BAD_PREFIX, id="bad-prefix"),
    pytest.param(b"X", CLOSED_BAD_PREFIX, id="bad-first-byte"),
    pytest.param(b"IKETCP" + H("0000"), CLOSED_BAD_LENGTH, id="length-0"),
    pytest.param(b"IKETCP" + H("0001"), CLOSED_BAD_LENGTH, id="length-1"),
    pytest.param(b"IKETCP" + H("0003 00"), CLOSED_UNPARSABLE, id="one-byte-not-keepalive"),
    pytest.param(b"IKETCP" + H("0005 000000"), CLOSED_UNPARSABLE, id="three-zero-bytes"),
    pytest.param(b"IKETCP" + frame(bytes(4)), CLOSED_UNPARSABLE, id="marker-only"),
    pytest.param(b"IKETCP" + frame(bytes(4) + MSG1[:27]), CLOSED_UNPARSABLE, id="short-ike-header"),
    pytest.param(b"IKETCP" + frame(bytes(4) + MSG1[:24] + H("00000010")), CLOSED_UNPARSABLE, id="ike-length-below-28"),
    pytest.param(b"IKETCP" + frame(H("c0ffee01 0000")), CLOSED_UNPARSABLE, id="esp-without-seq"),
]


@pytest.mark.parametrize(("data", "reason"), CLOSING)
def test_framing_errors_close_with_a_recorded_reason(data: bytes, reason: str) -> None:
    tracer = MemoryTracer()
    stream = responder(tracer)
    stream.receive_data(data + frame(ESP), now=3.0)  # nothing after the error is parsed
    assert received(stream) == [("closed", reason)]
    assert stream.closed
    (error,) = tracer.select(name="error")
    assert error.data["reason"] == reason and error.t == 3.0
    assert tracer.records[-1].name == "state_updated" and tracer.records[-1].data["to"] == "closed"
    stream.receive_data(frame(ESP))  # ignored once closed
    assert received(stream) == []


def test_bad_prefix_is_refused_at_the_first_wrong_byte() -> None:
    stream = responder()
    stream.receive_data(b"IKE")
    assert received(stream) == [] and stream.state is StreamState.AWAITING_PREFIX
    stream.receive_data(b"Z")
    assert received(stream) == [("closed", CLOSED_BAD_PREFIX)]


def test_end_of_stream_discards_a_partial_message() -> None:
    tracer = MemoryTracer()
    stream = responder(tracer)
    stream.receive_data(b"IKETCP" + frame(ESP) + frame(bytes(4) + MSG1)[:50])
    stream.receive_data(b"", now=9.0)
    assert received(stream) == [("esp", ESP), ("closed", CLOSED_END_OF_STREAM)]
    (dropped,) = tracer.select(name="segment_dropped")
    assert dropped.data == {"reason": "partial_message", "length": 50}
    assert not tracer.select(name="error")


def test_libreswan_impaired_framing_is_refused() -> None:
    """iketcp.md §1.7: without espintcp libreswan writes no Length, so 00 00 reads as Length 0."""
    stream = responder()
    stream.receive_data(b"IKETCP" + bytes(4) + MSG1)
    assert received(stream) == [("closed", CLOSED_BAD_LENGTH)]


@given(st.binary(max_size=200), st.lists(st.integers(0, 200), max_size=6))
def test_arbitrary_bytes_never_raise(garbage: bytes, cuts: list[int]) -> None:
    data = b"IKETCP" + garbage
    points = [0, *sorted(min(c, len(data)) for c in cuts), len(data)]
    stream = responder()
    for a, b in itertools.pairwise(points):
        if b > a:
            stream.receive_data(data[a:b])
    stream.receive_data(b"")
    evs = events(stream)
    assert isinstance(evs[-1], StreamClosed)
    assert sum(isinstance(e, StreamClosed) for e in evs) == 1
