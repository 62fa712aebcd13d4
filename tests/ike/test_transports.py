"""Transports and fallback (RFC 9329): sequential and racing, port ladders, framing errors, reconnects."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.ike.events import FallbackToTcp, IkeSaDeleted, IkeSaEstablished, LivenessChecked, PacketReceived
from lab.wire.iketcp import STREAM_PREFIX
from tests.ike.pair import R_ADDR, Pair, configs


def attempts(pair: Pair) -> list[tuple[int, str, str, int]]:
    return [
        (r.data["attempt"], r.data["event"], r.data["transport"], r.data["port"])
        for r in pair.tracer.select(layer="ike", name="state_updated", node="i")
        if "attempt" in r.data
    ]


def start(pair: Pair, until: float = 10.0) -> Pair:
    pair.i.connect(now=0.0)
    pair.run(until)
    return pair


def test_sequential_fallback_waits_out_the_udp_timeout() -> None:
    pair = start(Pair(*configs(udp_timeout_s=2.0), blocked_udp_ports={500, 4500}))
    assert attempts(pair) == [
        (1, "started", "udp", 500),
        (1, "timeout", "udp", 500),
        (2, "started", "tcp", 4500),
        (2, "won", "tcp", 4500),
    ]
    (ev,) = pair.of("i", IkeSaEstablished)
    assert ev.transport == "tcp"
    assert pair.of("i", FallbackToTcp) == [FallbackToTcp(port=4500)]
    (won,) = [
        r for r in pair.tracer.select(layer="ike", name="state_updated", node="i") if r.data.get("event") == "won"
    ]
    assert won.data["sa"] == ev.spi_i.hex()
    established_at = next(
        r.t
        for r in pair.tracer.select(layer="ike", name="state_updated", node="i")
        if r.data.get("to") == "ESTABLISHED"
    )
    assert established_at == pytest.approx(2.0 + 3 * 0.02)  # TCP handshake, IKE_SA_INIT, IKE_AUTH
    spis = {r.data["sa"] for r in pair.tracer.select(layer="ike", name="segment_sent", node="i")}
    assert len(spis) == 2  # the TCP attempt starts over with a new SPI (RFC 9329 §5)


def test_racing_takes_tcp_when_udp_is_blocked() -> None:
    pair = start(Pair(*configs(fallback="racing", race_head_start_s=0.02), blocked_udp_ports={500, 4500}))
    assert attempts(pair)[:3] == [(1, "started", "udp", 500), (2, "started", "tcp", 4500), (2, "won", "tcp", 4500)]
    assert (1, "abandoned", "udp", 500) in attempts(pair)
    established_at = next(
        r.t
        for r in pair.tracer.select(layer="ike", name="state_updated", node="i")
        if r.data.get("to") == "ESTABLISHED"
    )
    assert established_at == pytest.approx(0.02 + 3 * 0.02)
    assert len(pair.of("r", IkeSaEstablished)) == 1


def test_racing_keeps_udp_when_it_is_faster_and_drops_the_tcp_connection() -> None:
    pair = start(Pair(*configs(fallback="racing", race_head_start_s=0.01)))
    assert pair.of("i", IkeSaEstablished)[0].transport == "udp"
    assert (2, "abandoned", "tcp", 4500) in attempts(pair)
    tcp_events = [r.data["event"] for r in pair.tracer.select(layer="iketcp", name="state_updated", node="i")]
    assert tcp_events == ["connecting"]  # given up before it connected; the late connection is closed unused
    assert not any(kind == "tcp" for kind, _, _ in pair.sent)
    pair.run(pair.now + 40)  # the responder's half-open TCP-born SA expires quietly
    assert len(pair.r.sas()) == 1


def test_udp_500_blocked_4500_works() -> None:
    pair = start(Pair(*configs(udp_ports=(500, 4500)), blocked_udp_ports={500}))
    assert [a for a in attempts(pair) if a[1] != "timeout"] == [
        (1, "started", "udp", 500),
        (2, "started", "udp", 4500),
        (2, "won", "udp", 4500),
    ]
    assert pair.of("i", IkeSaEstablished)[0].port == 4500 and not pair.of("i", FallbackToTcp)


def test_tcp_port_ladder_to_443() -> None:
    pair = start(
        Pair(
            *configs(tcp_ports=(4500, 443), tcp_connect_timeout_s=1.0),
            blocked_udp_ports={500, 4500},
            blocked_tcp_ports={4500},
        )
    )
    assert attempts(pair)[-3:] == [(2, "timeout", "tcp", 4500), (3, "started", "tcp", 443), (3, "won", "tcp", 443)]
    assert pair.of("i", IkeSaEstablished)[0].port == 443


def test_nothing_gets_through() -> None:
    pair = start(
        Pair(*configs(tcp_connect_timeout_s=1.0), blocked_udp_ports={500, 4500}, blocked_tcp_ports={4500}), until=30
    )
    (deleted,) = pair.of("i", IkeSaDeleted)
    assert deleted.error and deleted.reason.startswith("no transport got through")


def test_tcp_only_mode_never_sends_udp() -> None:
    pair = start(Pair(*configs(transport="tcp")))
    assert pair.of("i", IkeSaEstablished)[0].transport == "tcp"
    assert not any(kind == "udp" for kind, _, _ in pair.sent)
    first = next(data for kind, from_i, data in pair.sent if kind == "tcp" and from_i)
    assert first.startswith(STREAM_PREFIX)


# --- the responder's side of RFC 9329 ------------------------------------------------------------------------------------------


def _raw_connection(pair: Pair) -> int:
    return pair.r.tcp_accepted(local=(R_ADDR, 4500), remote=("192.0.2.66", 40000), now=pair.now)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\n", "bad_prefix"),
        (STREAM_PREFIX + b"\x00\x01", "bad_length"),
        (STREAM_PREFIX + b"\x00\x05\x00\x00\x00", "unparsable_frame"),
        (STREAM_PREFIX + b"\x00\x0a" + bytes(8), "unparsable_frame"),  # marker, then no room for an IKE header
    ],
)
def test_responder_closes_on_bad_prefix_or_unparsable_frame(data: bytes, reason: str) -> None:
    pair = Pair(*configs())
    conn = _raw_connection(pair)
    pair.r.receive_tcp_data(conn, data, now=0.0)
    actions = pair.r.actions_to_send()
    assert [type(a).__name__ for a in actions] == ["TcpClose"] and actions[0].conn_id == conn
    closing = [r.data for r in pair.tracer.select(layer="iketcp", node="r") if r.data.get("event") == "closing"]
    assert closing and closing[0]["reason"] == reason
    errors = pair.tracer.select(layer="iketcp", name="error", node="r")
    assert errors and errors[0].data["reason"] == reason


def test_truncated_frame_waits_then_is_discarded_at_end_of_stream() -> None:
    pair = Pair(*configs())
    conn = _raw_connection(pair)
    pair.r.receive_tcp_data(conn, STREAM_PREFIX + b"\x01\x00" + bytes(20), now=0.0)
    assert pair.r.actions_to_send() == []  # half a frame: wait for the rest
    pair.r.receive_tcp_data(conn, b"", now=0.1)
    dropped = pair.tracer.select(layer="iketcp", name="segment_dropped", node="r")
    assert dropped and dropped[0].data["reason"] == "partial_message"


def test_non_ike_after_marker_is_an_ike_error_not_a_stream_error() -> None:
    """A frame with the marker and a parsable header but junk payloads is IKE's business (dropped), the stream lives."""
    pair = Pair(*configs())
    conn = _raw_connection(pair)
    header = bytes(8) + bytes(8) + bytes((0x21, 0x20, 34, 0x08)) + (0).to_bytes(4, "big") + (40).to_bytes(4, "big")
    frame = bytes(4) + header + bytes(12)
    pair.r.receive_tcp_data(conn, STREAM_PREFIX + (len(frame) + 2).to_bytes(2, "big") + frame, now=0.0)
    assert pair.r.actions_to_send() == []
    assert any(
        r.data.get("reason") == "malformed" for r in pair.tracer.select(layer="ike", name="segment_dropped", node="r")
    )


@given(st.binary(max_size=400), st.lists(st.integers(1, 399), max_size=5))
def test_hostile_bytes_on_a_tcp_connection_never_raise(data: bytes, cuts: list[int]) -> None:
    pair = Pair(*configs())
    conn = _raw_connection(pair)
    stream = STREAM_PREFIX + data
    points = [0, *sorted(c for c in cuts if c < len(stream)), len(stream)]
    for a, b in zip(points, points[1:]):
        pair.r.receive_tcp_data(conn, stream[a:b], now=0.0)
    pair.r.receive_tcp_data(conn, b"", now=0.0)
    actions = pair.r.actions_to_send()
    assert all(type(a).__name__ in ("TcpClose", "TcpSend") for a in actions)
    assert not any(sa.established for sa in pair.r.sas())


def test_initiator_reconnects_and_the_ike_sa_lives_on() -> None:
    pair = start(Pair(*configs(transport="tcp")), until=1)
    sa = pair.i.sa
    pair.break_tcp()
    pair.i.check_liveness(now=pair.now)
    pair.run(pair.now + 1)
    assert pair.i.sa is sa and sa.established and pair.of("i", LivenessChecked)
    events = [r.data["event"] for r in pair.tracer.select(layer="iketcp", name="state_updated", node="i")]
    assert events.count("reconnecting") == 1 and events.count("connected") == 2
    prefixes = [data for kind, from_i, data in pair.sent if kind == "tcp" and from_i and data.startswith(STREAM_PREFIX)]
    assert len(prefixes) == 2  # a new prefix on the new connection
    pair.r.send_packet(b"over the new connection", now=pair.now)  # the responder follows the latest valid message
    pair.run(pair.now + 1)
    assert [e.data for e in pair.of("i", PacketReceived)] == [b"over the new connection"]


def test_request_outstanding_when_the_connection_breaks_is_sent_again_after_reconnect() -> None:
    pair = start(Pair(*configs(transport="tcp")), until=1)
    pair.i.check_liveness(now=pair.now)
    pair.flush()
    pair.break_tcp()  # the request (and its answer) are lost with the connection
    pair.run(pair.now + 2)
    assert len(pair.of("i", LivenessChecked)) == 1
    resent = [r.data for r in pair.tracer.select(layer="ike", name="segment_sent", node="i") if r.data.get("resent")]
    assert resent and resent[0]["exchange"] == "INFORMATIONAL"


def test_nat_keepalives_only_behind_a_nat_over_udp() -> None:
    pair = start(Pair(*configs(nat_keepalive_s=0.5)), until=3)
    assert not [
        r
        for r in pair.tracer.select(layer="ike", name="segment_sent", node="i")
        if r.data.get("kind") == "nat_keepalive"
    ]
