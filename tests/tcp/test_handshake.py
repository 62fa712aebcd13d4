"""Opening a connection: the three-way handshake, options, simultaneous open, SYN loss and refusal."""

from __future__ import annotations

import pytest

from lab.errors import LocalProtocolError
from lab.sim import SimNetwork
from lab.stack.apps import BulkSender, BulkSink, TransferResult, bulk_payload
from lab.stack.host import StreamHandler
from lab.tcp import TcpConfig, TcpState
from lab.tcp.events import ConnectionEstablished, ConnectionTerminated
from lab.topology import build_topology
from lab.wire.tcp import ACK, RST, SYN, MaxSegmentSize, SackPermitted, TcpSegment, Timestamps, WindowScale
from tests.tcp.pair import TcpPair, payload, peek, sha256
from topologies import TOPOLOGIES


def syn_records(pair: TcpPair, node: str) -> list:
    return [r for r in pair.records(node=node, name="segment_sent") if "S" in r.data["flags"]]


def option_kinds(record) -> set[str]:
    return {o["kind"] for o in record.data.get("options", [])}


def test_three_way_handshake() -> None:
    pair = TcpPair()
    pair.handshake()
    assert pair.client.state is TcpState.ESTABLISHED
    assert pair.server.state is TcpState.ESTABLISHED
    assert pair.events_of(pair.client, ConnectionEstablished) == [ConnectionEstablished()]
    assert pair.events_of(pair.server, ConnectionEstablished) == [ConnectionEstablished()]
    sent = [(r.node, r.data["flags"]) for r in pair.tracer.select(layer="tcp", name="segment_sent")]
    assert sent == [("client", "S"), ("server", "SA"), ("client", "A")]
    syn, synack, ack = (r.data for r in pair.tracer.select(layer="tcp", name="segment_sent"))
    assert synack["ack"] == (syn["seq"] + 1) % 2**32
    assert ack["seq"] == (syn["seq"] + 1) % 2**32
    assert ack["ack"] == (synack["seq"] + 1) % 2**32
    # the client measured the handshake's round trip (2 x 10 ms), the server the SYN/ACK's
    assert pair.client.srtt == pytest.approx(0.02)
    assert pair.server.srtt == pytest.approx(0.02)
    # a handshake carries no data and leaves nothing pending
    assert pair.client.send_buffered == 0
    assert pair.data(pair.client) == pair.data(pair.server) == b""


def test_default_options_are_all_negotiated() -> None:
    pair = TcpPair()
    pair.handshake()
    (syn,) = syn_records(pair, "client")
    (synack,) = syn_records(pair, "server")
    assert option_kinds(syn) == option_kinds(synack) == {"MSS", "SACK_PERM", "TS", "WS"}
    ws = next(o for o in syn.data["options"] if o["kind"] == "WS")
    assert ws["shift"] == TcpConfig().window_shift == 7  # 4 MiB buffer needs a shift of 7
    # MSS 1460 less the 12 bytes of timestamps on every segment
    assert pair.client.mss == pair.server.mss == 1448
    # the window in a SYN is never scaled (RFC 7323 2.2); after it, it is
    assert syn.data["win"] == 65535
    (third_ack,) = [r for r in pair.records(node="client", name="segment_sent") if r.data["flags"] == "A"]
    assert third_ack.data["win"] == (4 * 1024 * 1024) >> 7
    assert option_kinds(third_ack) == {"TS"}


@pytest.mark.parametrize(
    ("client", "server", "expected"),
    [
        (TcpConfig(), TcpConfig(sack=False), {"MSS", "TS", "WS"}),
        (TcpConfig(sack=False), TcpConfig(), {"MSS", "TS", "WS"}),
        (TcpConfig(timestamps=False), TcpConfig(), {"MSS", "SACK_PERM", "WS"}),
        (TcpConfig(), TcpConfig(timestamps=False), {"MSS", "SACK_PERM", "WS"}),
        (TcpConfig(window_scaling=False), TcpConfig(), {"MSS", "SACK_PERM", "TS"}),
        (TcpConfig(), TcpConfig(window_scaling=False), {"MSS", "SACK_PERM", "TS"}),
        (
            TcpConfig(sack=False, timestamps=False, window_scaling=False),
            TcpConfig(),
            {"MSS"},
        ),
        (
            TcpConfig(),
            TcpConfig(sack=False, timestamps=False, window_scaling=False),
            {"MSS"},
        ),
    ],
)
def test_option_combinations(client: TcpConfig, server: TcpConfig, expected: set[str]) -> None:
    pair = TcpPair(client_config=client, server_config=server)
    pair.handshake()
    assert pair.both_established()
    # the SYN/ACK answers only with what both sides support
    (synack,) = syn_records(pair, "server")
    assert option_kinds(synack) == expected
    for conn in (pair.client, pair.server):
        assert conn._sack_ok == ("SACK_PERM" in expected)
        assert conn._ts_ok == ("TS" in expected)
        assert conn._wscale_ok == ("WS" in expected)
        assert conn.mss == (1448 if "TS" in expected else 1460)
    # segments after the handshake carry timestamps exactly when both agreed
    later = [r for r in pair.records(name="segment_sent") if "S" not in r.data["flags"]]
    assert later
    for r in later:
        assert ("TS" in option_kinds(r)) == ("TS" in expected)
    # and data still flows, byte for byte, in both directions
    up, down = payload(150_000, 1), payload(120_000, 2)
    pair.transfer(up, down)
    assert sha256(pair.data(pair.server)) == sha256(up)
    assert sha256(pair.data(pair.client)) == sha256(down)


def test_mss_is_the_smaller_of_both() -> None:
    pair = TcpPair(client_config=TcpConfig(mss=1000), server_config=TcpConfig(mss=1460, timestamps=False))
    pair.handshake()
    (syn,) = syn_records(pair, "client")
    (synack,) = syn_records(pair, "server")
    assert {"kind": "MSS", "value": 1000} in syn.data["options"]
    assert {"kind": "MSS", "value": 1460} in synack.data["options"]
    assert pair.client.mss == pair.server.mss == 1000
    data = payload(50_000, 3)
    pair.transfer(data)
    assert pair.data(pair.server) == data
    sizes = {r.data["len"] for r in pair.records(node="client", name="segment_sent")}
    assert max(sizes) == 1000


def test_small_receive_buffer_means_no_window_shift() -> None:
    cfg = TcpConfig(receive_buffer_bytes=60_000)
    assert cfg.window_shift == 0
    pair = TcpPair(client_config=cfg, server_config=cfg)
    pair.handshake()
    (syn,) = syn_records(pair, "client")
    assert {"kind": "WS", "shift": 0} in syn.data["options"]
    assert syn.data["win"] == 60_000


def test_simultaneous_open() -> None:
    pair = TcpPair()
    pair.client.connect(now=0.0)
    pair.server.connect(now=0.0)
    pair.run(until=5.0, stop=pair.both_established)
    assert pair.both_established()
    for conn, node in ((pair.client, "client"), (pair.server, "server")):
        assert pair.events_of(conn, ConnectionEstablished) == [ConnectionEstablished()]
        states = [(r.data["from"], r.data["to"]) for r in pair.records(node=node, name="state_updated")]
        # RFC 9293 3.5 figure 8: SYN-SENT -> SYN-RECEIVED -> ESTABLISHED on both sides
        assert states == [("CLOSED", "SYN-SENT"), ("SYN-SENT", "SYN-RECEIVED"), ("SYN-RECEIVED", "ESTABLISHED")]
        flags = [r.data["flags"] for r in pair.records(node=node, name="segment_sent")]
        assert flags[:2] == ["S", "SA"]
        assert conn._sack_ok and conn._ts_ok and conn._wscale_ok
    a, b = payload(80_000, 4), payload(90_000, 5)
    pair.transfer(a, b)
    assert pair.data(pair.server) == a
    assert pair.data(pair.client) == b


def test_simultaneous_open_with_different_options() -> None:
    pair = TcpPair(client_config=TcpConfig(sack=False), server_config=TcpConfig(timestamps=False))
    pair.client.connect(now=0.0)
    pair.server.connect(now=0.0)
    pair.run(until=5.0, stop=pair.both_established)
    assert pair.both_established()
    for conn in (pair.client, pair.server):
        assert not conn._sack_ok and not conn._ts_ok and conn._wscale_ok
    data = payload(70_000, 6)
    pair.transfer(data, data[::-1])
    assert pair.data(pair.server) == data
    assert pair.data(pair.client) == data[::-1]


def test_lost_syn_is_retransmitted_with_backoff() -> None:
    lost: list[float] = []

    def fault(sender, data: bytes) -> list[bytes]:
        seg = peek(data)
        if sender is pair.client and seg.flags & SYN and len(lost) < 3:
            lost.append(pair.now)
            return []
        return [data]

    pair = TcpPair(fault=fault)
    pair.handshake()
    assert pair.both_established()
    syns = [r.t for r in syn_records(pair, "client")]
    # RFC 6298 (2.1) initial RTO 1 s, doubled on each expiry (5.5): 0, 1, 3, 7
    assert syns == pytest.approx([0.0, 1.0, 3.0, 7.0])
    assert lost == pytest.approx([0.0, 1.0, 3.0])
    timeouts = [r.data for r in pair.records(node="client", name="state_updated") if r.data.get("timeout") == "syn"]
    assert [t["rto_ms"] for t in timeouts] == [2000.0, 4000.0, 8000.0]
    # the retransmitted SYN is the same SYN: same sequence number
    assert len({r.data["seq"] for r in syn_records(pair, "client")}) == 1
    # Karn: no RTT sample from a retransmitted SYN
    assert pair.client.srtt is None
    assert pair.server.srtt == pytest.approx(0.02)
    data = payload(100_000, 7)
    pair.transfer(data)
    assert sha256(pair.data(pair.server)) == sha256(data)


def test_lost_synack_is_retransmitted_by_the_server() -> None:
    dropped = []

    def fault(sender, data: bytes) -> list[bytes]:
        seg = peek(data)
        if sender is pair.server and seg.flags & SYN and not dropped:
            dropped.append(pair.now)
            return []
        return [data]

    pair = TcpPair(fault=fault)
    pair.handshake()
    assert pair.both_established()
    assert dropped == [pytest.approx(0.01)]
    synacks = [r.t for r in syn_records(pair, "server")]
    assert synacks[0] == pytest.approx(0.01)
    assert len(synacks) >= 2
    # the client got its SYN/ACK within a second or so of the loss
    assert pair.client.state is TcpState.ESTABLISHED
    assert pair.now < 2.5


def test_syn_retry_limit_terminates() -> None:
    pair = TcpPair(client_config=TcpConfig(syn_retries=3), fault=lambda sender, data: [])
    pair.server.listen(now=0.0)
    pair.client.connect(now=0.0)
    pair.run(until=600.0)
    # 1 + 3 SYNs at 0, 1, 3, 7; given up when the 8 s RTO of the last one expires
    assert [r.t for r in syn_records(pair, "client")] == pytest.approx([0.0, 1.0, 3.0, 7.0])
    assert pair.client.state is TcpState.CLOSED
    (term,) = pair.terminated(pair.client)
    assert term.reset is False
    assert "timed out" in term.reason
    ended = [r for r in pair.records(node="client", name="state_updated") if "terminated" in r.data]
    assert [r.t for r in ended] == pytest.approx([15.0])
    assert pair.client.get_timer() is None
    assert pair.server.state is TcpState.LISTEN


def test_synack_retry_limit_terminates_server() -> None:
    def fault(sender, data: bytes) -> list[bytes]:
        return [] if sender is pair.server else [data]

    pair = TcpPair(client_config=TcpConfig(syn_retries=2), server_config=TcpConfig(syn_retries=2), fault=fault)
    pair.server.listen(now=0.0)
    pair.client.connect(now=0.0)
    pair.run(until=600.0)
    for conn in (pair.client, pair.server):
        assert conn.state is TcpState.CLOSED
        (term,) = pair.terminated(conn)
        assert not term.reset


def test_rst_in_reply_to_syn_refuses_the_connection() -> None:
    pair = TcpPair()
    pair.client.connect(now=0.0)
    pair.collect()
    syn = peek(pair.in_flight.pop()[3])
    # what RFC 9293 3.10.7.1 has a CLOSED port answer: <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>
    pair.inject(pair.client, TcpSegment(80, 40000, 0, (syn.seq + 1) % 2**32, RST | ACK, 0))
    assert pair.client.state is TcpState.CLOSED
    assert pair.terminated(pair.client) == [ConnectionTerminated(reason="connection refused", reset=True)]
    assert pair.client.get_timer() is None


def test_rst_with_unacceptable_ack_is_ignored_in_syn_sent() -> None:
    pair = TcpPair()
    pair.client.connect(now=0.0)
    pair.collect()
    syn = peek(pair.in_flight[-1][3])
    # RFC 9293 3.10.7.3: a RST whose ACK does not acknowledge our SYN is dropped
    pair.inject(pair.client, TcpSegment(80, 40000, 0, (syn.seq + 1000) % 2**32, RST | ACK, 0))
    assert pair.client.state is TcpState.SYN_SENT
    assert pair.terminated(pair.client) == []
    # and a bare RST (no ACK) is dropped as well
    pair.inject(pair.client, TcpSegment(80, 40000, 0, 0, RST, 0))
    assert pair.client.state is TcpState.SYN_SENT
    pair.server.listen(now=pair.now)
    pair.run(until=5.0, stop=pair.both_established)
    assert pair.both_established()


def test_syn_ack_with_bad_ack_gets_reset() -> None:
    pair = TcpPair()
    pair.client.connect(now=0.0)
    pair.collect()
    syn = peek(pair.in_flight.pop()[3])
    bogus = TcpSegment(80, 40000, 12345, (syn.seq + 77) % 2**32, SYN | ACK, 1000)
    pair.inject(pair.client, bogus)
    # RFC 9293 3.10.7.3: <SEQ=SEG.ACK><CTL=RST>, and we stay in SYN-SENT
    assert pair.client.state is TcpState.SYN_SENT
    (rst,) = [peek(x[3]) for x in pair.in_flight]
    assert rst.flags == RST
    assert rst.seq == bogus.ack


class _Recorder(StreamHandler):
    def __init__(self) -> None:
        self.lost: list[tuple[str, bool]] = []
        self.made = False

    def connection_made(self, stream) -> None:
        self.made = True

    def connection_lost(self, stream, reason: str, reset: bool) -> None:
        self.lost.append((reason, reset))


def test_connect_to_a_closed_port_is_refused_in_the_simulator() -> None:
    spec = build_topology("single-path", TOPOLOGIES["single-path"], delay_ms=10.0)
    net = SimNetwork.build(spec, seed=3)
    h1 = net.host("h1")
    handler = _Recorder()
    stream = h1.connect(spec.addresses_of("h2")[0], 4444, handler)
    net.run(until=5.0)
    assert not handler.made
    assert handler.lost == [("connection refused", True)]
    assert stream.closed
    assert stream.conn.state is TcpState.CLOSED
    # the refusal took one round trip, not a timeout
    assert h1.connections() == []


def test_connect_and_transfer_in_the_simulator() -> None:
    spec = build_topology("single-path", TOPOLOGIES["single-path"], delay_ms=10.0, bw_mbps=50.0)
    net = SimNetwork.build(spec, seed=4)
    data = bulk_payload(300_000, 9)
    result = TransferResult("bulk", len(data), sha256(data))
    net.host("h2").listen(5001, lambda: BulkSink(result))
    BulkSender(result, data).start(net.host("h1"), spec.addresses_of("h2")[0], 5001)
    net.run(until=60.0, stop=lambda: result.complete)
    assert result.ok, result.to_dict()


# --- API misuse raises LocalProtocolError and changes nothing


def snapshot(conn) -> tuple:
    return (
        conn.state,
        conn._snd_nxt,
        conn._snd_max,
        bytes(conn._sbuf),
        conn._fin_queued,
        conn.get_timer(),
        len(conn._out),
        len(conn._events),
    )


def test_misuse_in_closed_state() -> None:
    pair = TcpPair()
    conn = pair.client
    before = snapshot(conn)
    with pytest.raises(LocalProtocolError, match="CLOSED"):
        conn.send(b"x")
    with pytest.raises(LocalProtocolError, match="CLOSED"):
        conn.close(now=0.0)
    assert snapshot(conn) == before
    assert conn.segments_to_send(now=0.0) == []
    assert conn.next_event() is None


def test_misuse_in_listen_state() -> None:
    pair = TcpPair()
    pair.server.listen(now=0.0)
    before = snapshot(pair.server)
    with pytest.raises(LocalProtocolError, match="LISTEN"):
        pair.server.send(b"x")
    with pytest.raises(LocalProtocolError, match="LISTEN"):
        pair.server.connect(now=0.0)
    with pytest.raises(LocalProtocolError, match="LISTEN"):
        pair.server.listen(now=0.0)
    assert snapshot(pair.server) == before


def test_misuse_while_connecting_and_established() -> None:
    pair = TcpPair()
    pair.server.listen(now=0.0)
    pair.client.connect(now=0.0)
    before = snapshot(pair.client)
    with pytest.raises(LocalProtocolError, match="SYN_SENT"):
        pair.client.connect(now=0.0)
    with pytest.raises(LocalProtocolError, match="SYN_SENT"):
        pair.client.listen(now=0.0)
    assert snapshot(pair.client) == before
    pair.run(until=5.0, stop=pair.both_established)
    before = snapshot(pair.client)
    for call in (lambda: pair.client.connect(now=1.0), lambda: pair.client.listen(now=1.0)):
        with pytest.raises(LocalProtocolError, match="ESTABLISHED"):
            call()
    assert snapshot(pair.client) == before


def test_misuse_after_close() -> None:
    pair = TcpPair()
    pair.handshake()
    pair.client.send(b"hello")
    pair.client.close(now=pair.now)
    before = snapshot(pair.client)
    with pytest.raises(LocalProtocolError):
        pair.client.send(b"more")
    with pytest.raises(LocalProtocolError):
        pair.client.close(now=pair.now)
    with pytest.raises(LocalProtocolError):
        pair.client.send_stream(b"more")
    assert snapshot(pair.client) == before
    pair.run(until=200.0)
    assert pair.data(pair.server) == b"hello"
    # after the connection is gone it cannot be reused
    pair.server.close(now=pair.now)
    pair.run(until=400.0)
    assert pair.client.state is TcpState.CLOSED
    before = snapshot(pair.client)
    for call in (
        lambda: pair.client.connect(now=pair.now),
        lambda: pair.client.listen(now=pair.now),
        lambda: pair.client.send(b"x"),
        lambda: pair.client.close(now=pair.now),
    ):
        with pytest.raises(LocalProtocolError):
            call()
    assert snapshot(pair.client) == before


def test_close_while_connecting_ends_quietly() -> None:
    pair = TcpPair()
    pair.client.connect(now=0.0)
    pair.client.close(now=0.0)
    assert pair.client.state is TcpState.CLOSED
    assert pair.client.get_timer() is None
    pair.collect()
    assert pair.terminated(pair.client) == [ConnectionTerminated(reason="closed before established", reset=False)]
    pair.server.listen(now=0.0)
    pair.server.close(now=0.0)
    assert pair.server.state is TcpState.CLOSED


def test_abort_when_closed_does_nothing() -> None:
    pair = TcpPair()
    before = snapshot(pair.client)
    pair.client.abort(now=0.0)
    assert snapshot(pair.client) == before


def test_data_queued_before_established_is_sent_after() -> None:
    pair = TcpPair()
    pair.server.listen(now=0.0)
    pair.client.connect(now=0.0)
    data = payload(20_000, 11)
    pair.client.send(data)  # allowed in SYN-SENT: queued
    pair.run(until=10.0, stop=lambda: len(pair.data(pair.server)) >= len(data))
    assert pair.data(pair.server) == data
    # no data segment left before the handshake completed
    first_data = min(r.t for r in pair.records(node="client", name="segment_sent") if r.data["len"])
    assert first_data >= 0.02


def test_options_carried_on_the_wire() -> None:
    """Decode the actual SYN bytes, not just the trace."""
    pair = TcpPair(client_config=TcpConfig(mss=1200))
    pair.client.connect(now=0.0)
    pair.collect()
    syn = peek(pair.in_flight[0][3])
    assert syn.flags == SYN
    assert syn.option(MaxSegmentSize) == MaxSegmentSize(1200)
    assert syn.option(SackPermitted) == SackPermitted()
    assert syn.option(WindowScale) == WindowScale(7)
    ts = syn.option(Timestamps)
    assert ts is not None and ts.tsecr == 0


# --- close() before the ACK of our SYN (RFC 9293 3.10.4: CLOSE in SYN-RECEIVED)


def test_close_in_syn_received_after_simultaneous_open() -> None:
    pair = TcpPair()
    pair.client.connect(now=0.0)
    pair.server.connect(now=0.0)
    pair.run(until=0.015)
    assert pair.client.state is TcpState.SYN_RECEIVED
    pair.client.send(b"hello world")
    pair.client.close(now=pair.now)
    pair.run(until=200.0)
    # the connection was established (the application hears of it) and then closed in order
    for conn in (pair.client, pair.server):
        assert pair.events_of(conn, ConnectionEstablished) == [ConnectionEstablished()]
    assert pair.data(pair.server) == b"hello world"
    assert pair.server.state is TcpState.CLOSE_WAIT
    assert pair.client.state is TcpState.FIN_WAIT_2
    # "queue for processing after entering ESTABLISHED state": no data before our SYN was acknowledged
    acked_at = next(
        r.t for r in pair.records(node="client", name="state_updated") if r.data.get("from") == "SYN-RECEIVED"
    )
    first_data = min(r.t for r in pair.records(node="client", name="segment_sent") if r.data["len"])
    assert first_data >= acked_at
    pair.server.close(now=pair.now)
    pair.run(until=400.0)
    assert pair.client.state is TcpState.CLOSED and pair.server.state is TcpState.CLOSED


def test_close_in_syn_received_with_lost_synack() -> None:
    """The responder closes before the handshake completes and its SYN/ACK is lost:
    the SYN/ACK must still be retransmitted, then the data and FIN follow."""
    dropped = []

    def fault(sender, data: bytes) -> list[bytes]:
        if sender is pair.server and peek(data).flags & SYN and not dropped:
            dropped.append(pair.now)
            return []
        return [data]

    pair = TcpPair(fault=fault)
    pair.server.listen(now=0.0)
    pair.client.connect(now=0.0)
    pair.run(until=0.015)
    assert pair.server.state is TcpState.SYN_RECEIVED
    pair.server.send(b"goodbye")
    pair.server.close(now=pair.now)
    pair.run(until=30.0)
    assert dropped
    assert pair.client.state is TcpState.CLOSE_WAIT
    assert pair.data(pair.client) == b"goodbye"
    assert pair.events_of(pair.server, ConnectionEstablished) == [ConnectionEstablished()]
    assert pair.server.state is TcpState.FIN_WAIT_2


# --- RFC 6298 (5.7), option edge cases, data on a SYN


@pytest.mark.parametrize("syn_losses", [1, 3])
def test_rto_after_a_retransmitted_syn_is_three_seconds(syn_losses: int) -> None:
    """RFC 6298 (5.7): after the SYN timed out, the RTO is re-initialized to 3 s when data
    transmission begins (there is no RTT sample: Karn)."""
    state = {"syns": 0, "data": 0}

    def fault(sender, data: bytes) -> list[bytes]:
        seg = peek(data)
        if sender is pair.client and seg.flags & SYN and state["syns"] < syn_losses:
            state["syns"] += 1
            return []
        if sender is pair.client and seg.payload and state["data"] == 0:
            state["data"] += 1  # the first data segment is lost too
            return []
        return [data]

    pair = TcpPair(fault=fault)
    pair.handshake()
    assert pair.client.srtt is None
    t0 = pair.now
    pair.client.send(b"x" * 500)
    pair.run(until=t0 + 20.0, stop=lambda: pair.data(pair.server) == b"x" * 500)
    sent = [r.t for r in pair.records(node="client", name="segment_sent") if r.data["len"]]
    assert sent[0] == pytest.approx(t0)
    assert sent[1] == pytest.approx(t0 + 3.0)


def test_window_scale_above_14_is_treated_as_14() -> None:
    """RFC 7323 2.3."""
    from lab.wire.tcp import MaxSegmentSize as Mss

    pair = TcpPair()
    pair.server.listen(now=0.0)
    a = pair.server.addr
    pair.inject(pair.server, TcpSegment(a.remote_port, a.local_port, 1000, 0, SYN, 65535, (Mss(1460), WindowScale(15))))
    assert pair.server.state is TcpState.SYN_RECEIVED
    assert pair.server._snd_wscale == 14


def test_syn_without_mss_uses_536() -> None:
    """RFC 9293 3.7.1: without an MSS option the peer is assumed to take 536 bytes."""
    pair = TcpPair()
    pair.server.listen(now=0.0)
    a = pair.server.addr
    pair.inject(pair.server, TcpSegment(a.remote_port, a.local_port, 1000, 0, SYN, 65535))
    assert pair.server.mss == 536
    (synack,) = [peek(d) for *_, d in pair.in_flight]
    assert synack.flags == SYN | ACK
    # the peer offered nothing, so nothing but MSS comes back
    assert [type(o).__name__ for o in synack.options if type(o).__name__ != "NoOperation"] == ["MaxSegmentSize"]


def test_data_on_a_syn_is_not_delivered_before_the_connection_is_established() -> None:
    """RFC 9293 3.10.7.2: text on a SYN is queued until ESTABLISHED (or, not acknowledged, sent again)."""
    from lab.tcp.events import DataReceived

    pair = TcpPair()
    pair.server.listen(now=0.0)
    a = pair.server.addr
    iss = 5000
    pair.inject(
        pair.server, TcpSegment(a.remote_port, a.local_port, iss, 0, SYN, 65535, (MaxSegmentSize(1460),), b"early")
    )
    assert pair.events_of(pair.server, DataReceived) == []
    (synack,) = [peek(d) for *_, d in pair.in_flight if peek(d).flags & SYN]
    pair.in_flight.clear()
    acked = (synack.ack - iss - 1) % 2**32  # 0: only the SYN, or 5: the data too
    assert acked in (0, 5)
    # the client completes the handshake, resending whatever was not acknowledged
    rest = b"early"[acked:] + b" and late"
    pair.inject(
        pair.server,
        TcpSegment(a.remote_port, a.local_port, iss + 1 + acked, (synack.seq + 1) % 2**32, ACK, 65535, (), rest),
    )
    assert pair.server.state is TcpState.ESTABLISHED
    kinds = [type(e).__name__ for e in pair.events[id(pair.server)]]
    assert kinds[0] == "ConnectionEstablished"
    assert pair.data(pair.server) == b"early and late"
