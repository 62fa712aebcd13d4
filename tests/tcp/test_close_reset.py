"""Ending a connection: FIN in both orders, simultaneous close, TIME-WAIT, RST (RFC 5961), abort, keepalive."""

from __future__ import annotations

import itertools
import random

import pytest

from lab.tcp import TcpConfig, TcpState
from lab.tcp.events import ConnectionTerminated, StreamEnded
from lab.wire.tcp import ACK, FIN, RST, SYN, TcpSegment
from tests.tcp.pair import TcpPair, payload, peek, random_loss

MSL_S = TcpConfig().msl_s


def states(pair: TcpPair, node: str) -> list[str]:
    return [r.data["to"] for r in pair.records(node=node, name="state_updated") if "to" in r.data]


def state_times(pair: TcpPair, node: str) -> dict[str, float]:
    return {r.data["to"]: r.t for r in pair.records(node=node, name="state_updated") if "to" in r.data}


def sent_by(pair: TcpPair, conn) -> list[TcpSegment]:
    """Segments ``conn`` has queued towards its peer and not yet delivered."""
    return [peek(data) for _, _, dst, data in sorted(pair.in_flight) if dst is pair.peer(conn)]


def wire_seq(conn, offset: int) -> int:
    """The sequence number of offset ``offset`` in ``conn``'s peer's stream, as ``conn`` expects it."""
    return (conn._irs + offset) % 2**32


def wire_ack(conn) -> int:
    """An acknowledgment number that acknowledges everything ``conn`` has sent."""
    return (conn._iss + conn._snd_max) % 2**32


def rst_for(pair: TcpPair, conn, seq_off: int, *, flags: int = RST | ACK) -> TcpSegment:
    a = conn.addr
    return TcpSegment(a.remote_port, a.local_port, wire_seq(conn, seq_off), wire_ack(conn), flags, 0)


def established_with_data(**kw) -> tuple[TcpPair, bytes, bytes]:
    pair = TcpPair(**kw)
    pair.handshake()
    up, down = payload(50_000, 1), payload(30_000, 2)
    pair.client.send(up)
    pair.server.send(down)
    pair.run(
        until=5.0, stop=lambda: len(pair.data(pair.server)) == len(up) and len(pair.data(pair.client)) == len(down)
    )
    pair.run(until=pair.now + 0.5)  # let delayed ACKs settle
    assert pair.data(pair.server) == up and pair.data(pair.client) == down
    return pair, up, down


# --- orderly close


def test_client_closes_first() -> None:
    pair, _up, down = established_with_data()
    pair.client.close(now=pair.now)
    pair.run(until=pair.now + 1.0)
    assert pair.client.state is TcpState.FIN_WAIT_2
    assert pair.server.state is TcpState.CLOSE_WAIT
    assert pair.events_of(pair.server, StreamEnded) == [StreamEnded()]
    assert pair.events_of(pair.client, StreamEnded) == []
    # the half-closed server can still send
    more = payload(20_000, 3)
    pair.server.send(more)
    pair.run(until=pair.now + 1.0)
    assert pair.data(pair.client) == down + more
    pair.server.close(now=pair.now)
    pair.run(until=pair.now + 1.0)
    assert pair.server.state is TcpState.CLOSED
    assert pair.client.state is TcpState.TIME_WAIT
    assert pair.terminated(pair.server) == [ConnectionTerminated(reason="closed", reset=False)]
    assert states(pair, "client")[-3:] == ["FIN-WAIT-1", "FIN-WAIT-2", "TIME-WAIT"]
    assert states(pair, "server")[-3:] == ["CLOSE-WAIT", "LAST-ACK", "CLOSED"]
    pair.run(until=pair.now + 2 * MSL_S + 1)
    assert pair.client.state is TcpState.CLOSED
    assert pair.terminated(pair.client) == [ConnectionTerminated(reason="closed", reset=False)]
    assert pair.client.get_timer() is None and pair.server.get_timer() is None


def test_server_closes_first() -> None:
    pair, _up, _down = established_with_data()
    pair.server.close(now=pair.now)
    pair.run(until=pair.now + 1.0)
    assert pair.server.state is TcpState.FIN_WAIT_2
    assert pair.client.state is TcpState.CLOSE_WAIT
    pair.client.close(now=pair.now)
    pair.run(until=pair.now + 1.0)
    assert pair.client.state is TcpState.CLOSED
    assert pair.server.state is TcpState.TIME_WAIT
    pair.run(until=pair.now + 2 * MSL_S + 1)
    assert pair.server.state is TcpState.CLOSED


def test_fin_with_data_and_fin_in_same_ack() -> None:
    """close() right after send(): the FIN rides on the last data segment."""
    pair = TcpPair()
    pair.handshake()
    pair.client.send(b"last words")
    pair.client.close(now=pair.now)
    pair.collect()
    (seg,) = sent_by(pair, pair.client)
    assert seg.flags & FIN and seg.payload == b"last words"
    pair.run(until=pair.now + 1.0)
    assert pair.data(pair.server) == b"last words"
    assert pair.server.state is TcpState.CLOSE_WAIT


def test_lost_fin_is_retransmitted() -> None:
    dropped = []

    def fault(sender, data: bytes) -> list[bytes]:
        if sender is pair.client and peek(data).flags & FIN and not dropped:
            dropped.append(pair.now)
            return []
        return [data]

    pair = TcpPair(fault=fault)
    pair.handshake()
    pair.client.close(now=pair.now)
    pair.run(until=pair.now + 5.0)
    assert dropped
    fins = [r for r in pair.records(node="client", name="segment_sent") if "F" in r.data["flags"]]
    assert len(fins) == 2 and fins[0].data["seq"] == fins[1].data["seq"]
    assert pair.client.state is TcpState.FIN_WAIT_2
    assert pair.server.state is TcpState.CLOSE_WAIT
    assert pair.events_of(pair.server, StreamEnded) == [StreamEnded()]


def test_simultaneous_close() -> None:
    pair, _up, _down = established_with_data()
    t0 = pair.now
    pair.client.close(now=t0)
    pair.server.close(now=t0)
    pair.run(until=t0 + 1.0)
    for conn, node in ((pair.client, "client"), (pair.server, "server")):
        # RFC 9293 figure 13: FIN-WAIT-1 -> CLOSING -> TIME-WAIT on both sides
        assert states(pair, node)[-3:] == ["FIN-WAIT-1", "CLOSING", "TIME-WAIT"]
        assert conn.state is TcpState.TIME_WAIT
        assert pair.events_of(conn, StreamEnded) == [StreamEnded()]
    entered = state_times(pair, "client")["TIME-WAIT"]
    pair.run(until=entered + 2 * MSL_S - 0.001)
    assert pair.client.state is TcpState.TIME_WAIT
    pair.run(until=entered + 2 * MSL_S + 0.001)
    assert pair.client.state is TcpState.CLOSED
    assert pair.server.state is TcpState.CLOSED
    for conn in (pair.client, pair.server):
        assert pair.terminated(conn) == [ConnectionTerminated(reason="closed", reset=False)]


def test_time_wait_lasts_two_msl() -> None:
    cfg = TcpConfig(msl_s=5.0)
    pair = TcpPair(client_config=cfg, server_config=cfg)
    pair.handshake()
    pair.client.close(now=pair.now)
    pair.run(until=pair.now + 0.5)
    pair.server.close(now=pair.now)
    pair.run(until=pair.now + 0.5)
    assert pair.client.state is TcpState.TIME_WAIT
    entered = state_times(pair, "client")["TIME-WAIT"]
    assert pair.client.get_timer() == pytest.approx(entered + 10.0)
    pair.run(until=entered + 9.999)
    assert pair.client.state is TcpState.TIME_WAIT
    pair.run(until=entered + 10.001)
    assert pair.client.state is TcpState.CLOSED
    ended = [r for r in pair.records(node="client", name="state_updated") if r.data.get("to") == "CLOSED"]
    assert ended[-1].t == pytest.approx(entered + 10.0)
    assert ended[-1].data["input"] == "2MSL expired"


def test_time_wait_reacks_a_retransmitted_fin_and_restarts() -> None:
    """RFC 9293 3.10.7.4: a FIN arriving in TIME-WAIT is acknowledged and restarts the 2 MSL timeout."""
    cfg = TcpConfig(msl_s=5.0)
    state = {"drop_acks": False}

    def fault(sender, data: bytes) -> list[bytes]:
        seg = peek(data)
        if state["drop_acks"] and sender is pair.client and not seg.flags & FIN and not seg.payload:
            return []  # the client's ACK of the server's FIN is lost
        return [data]

    pair = TcpPair(client_config=cfg, server_config=cfg, fault=fault)
    pair.handshake()
    pair.client.close(now=pair.now)
    pair.run(until=pair.now + 0.5)
    state["drop_acks"] = True
    pair.server.close(now=pair.now)
    pair.run(until=pair.now + 0.1)
    assert pair.client.state is TcpState.TIME_WAIT
    first_deadline = pair.client.get_timer()
    pair.run(until=pair.now + 1.5)  # the server's RTO resends its FIN
    assert pair.server.state is TcpState.LAST_ACK
    assert pair.client.get_timer() > first_deadline
    state["drop_acks"] = False
    pair.run(until=pair.now + 30.0)
    assert pair.server.state is TcpState.CLOSED
    assert pair.client.state is TcpState.CLOSED
    assert [t.reset for t in pair.terminated(pair.server)] == [False]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_close_under_loss(seed: int) -> None:
    pair = TcpPair(fault=random_loss(random.Random(seed), 20.0), seed=seed)
    pair.handshake(until=120.0)
    assert pair.both_established()
    up = payload(20_000, seed)
    pair.transfer(up, up[::-1], until=1000.0)
    assert pair.data(pair.server) == up
    assert pair.data(pair.client) == up[::-1]
    # both ends are gone: TIME-WAIT expired on one, LAST-ACK finished (or a lost last ACK was re-sent)
    assert pair.client.state is TcpState.CLOSED
    assert pair.server.state is TcpState.CLOSED


# --- RST (RFC 5961 3.2)


def test_exact_rst_terminates() -> None:
    pair, _, _ = established_with_data()
    pair.inject(pair.server, rst_for(pair, pair.server, pair.server._rcv_nxt))
    assert pair.server.state is TcpState.CLOSED
    assert pair.terminated(pair.server) == [ConnectionTerminated(reason="connection reset by peer", reset=True)]
    assert pair.server.get_timer() is None
    # a reset connection sends nothing more
    assert sent_by(pair, pair.server) == []


def test_rst_without_ack_flag_also_terminates() -> None:
    pair, _, _ = established_with_data()
    pair.inject(pair.client, rst_for(pair, pair.client, pair.client._rcv_nxt, flags=RST))
    assert pair.client.state is TcpState.CLOSED
    assert [t.reset for t in pair.terminated(pair.client)] == [True]


@pytest.mark.parametrize("delta", [1, 1000, 30_000])
def test_in_window_rst_gets_a_challenge_ack(delta: int) -> None:
    pair, up, down = established_with_data()
    rcv_nxt = pair.server._rcv_nxt
    pair.inject(pair.server, rst_for(pair, pair.server, rcv_nxt + delta))
    assert pair.server.state is TcpState.ESTABLISHED
    assert pair.terminated(pair.server) == []
    (challenge,) = sent_by(pair, pair.server)
    assert challenge.flags == ACK
    assert challenge.ack == wire_seq(pair.server, rcv_nxt)
    assert challenge.seq == (pair.server._iss + pair.server._snd_nxt) % 2**32
    # the connection survives and still carries data both ways
    more = payload(40_000, 4)
    pair.client.send(more)
    pair.server.send(more[::-1])
    pair.run(until=pair.now + 2.0)
    assert pair.data(pair.server) == up + more
    assert pair.data(pair.client) == down + more[::-1]


@pytest.mark.parametrize("delta", [-1, -5000, 5 * 2**20, 2**31 - 1])
def test_out_of_window_rst_is_ignored(delta: int) -> None:
    pair, _, _ = established_with_data()
    rcv_nxt = pair.server._rcv_nxt
    pair.inject(pair.server, rst_for(pair, pair.server, rcv_nxt + delta))
    assert pair.server.state is TcpState.ESTABLISHED
    assert pair.terminated(pair.server) == []
    # RFC 5961 3.2 (1): silently discarded, no challenge
    assert sent_by(pair, pair.server) == []


def test_challenge_ack_lets_a_real_peer_reset_exactly() -> None:
    """The blind RST's victim answers with a challenge ACK; a peer that really lost state
    answers that with an exact RST (RFC 5961 3.2), which is accepted."""
    pair, _, _ = established_with_data()
    rcv_nxt = pair.server._rcv_nxt
    pair.inject(pair.server, rst_for(pair, pair.server, rcv_nxt + 10))
    (challenge,) = sent_by(pair, pair.server)
    pair.in_flight.clear()
    # RFC 9293 3.10.7.1: a CLOSED endpoint answers an ACK with <SEQ=SEG.ACK><CTL=RST>
    a = pair.server.addr
    pair.inject(pair.server, TcpSegment(a.remote_port, a.local_port, challenge.ack, 0, RST, 0))
    assert pair.server.state is TcpState.CLOSED
    assert [t.reset for t in pair.terminated(pair.server)] == [True]


def test_syn_on_established_connection_gets_challenge_ack() -> None:
    """RFC 5961 4.2: a SYN in a synchronized state is answered with an ACK, not a reset."""
    pair, _, _ = established_with_data()
    a = pair.server.addr
    for seq in (wire_seq(pair.server, pair.server._rcv_nxt + 7), 12345):
        pair.inject(pair.server, TcpSegment(a.remote_port, a.local_port, seq, 0, SYN, 65535))
        assert pair.server.state is TcpState.ESTABLISHED
        (challenge,) = sent_by(pair, pair.server)
        assert challenge.flags == ACK
        pair.in_flight.clear()
    assert pair.terminated(pair.server) == []


def test_rst_in_every_synchronized_state() -> None:
    """A RST at RCV.NXT ends the connection in FIN-WAIT-2, CLOSE-WAIT and the others."""
    for closer, victim, expected in (
        ("client", "client", TcpState.FIN_WAIT_2),
        ("client", "server", TcpState.CLOSE_WAIT),
    ):
        pair, _, _ = established_with_data()
        getattr(pair, closer).close(now=pair.now)
        pair.run(until=pair.now + 1.0)
        conn = getattr(pair, victim)
        assert conn.state is expected
        pair.inject(conn, rst_for(pair, conn, conn._rcv_nxt))
        assert conn.state is TcpState.CLOSED
        assert [t.reset for t in pair.terminated(conn)] == [True]


# --- abort


def test_abort_sends_rst_and_peer_terminates() -> None:
    pair, _, _ = established_with_data()
    pair.client.abort("application gave up", now=pair.now)
    assert pair.client.state is TcpState.CLOSED
    pair.collect()
    assert pair.terminated(pair.client) == [ConnectionTerminated(reason="application gave up", reset=True)]
    (rst,) = sent_by(pair, pair.client)
    assert rst.flags & RST
    assert rst.seq == (pair.client._iss + pair.client._snd_nxt) % 2**32
    pair.run(until=pair.now + 1.0)
    assert pair.server.state is TcpState.CLOSED
    assert pair.terminated(pair.server) == [ConnectionTerminated(reason="connection reset by peer", reset=True)]
    assert pair.client.get_timer() is None
    assert pair.server.get_timer() is None


def test_abort_during_zero_window_probing_resets_peer() -> None:
    """RFC 9293 3.10.4 sends the RST at SND.NXT, but a zero-window probe byte lies beyond the
    peer's (empty) window, where a RST is dropped (RFC 5961 3.2). The RST must stay acceptable."""
    pair = TcpPair(server_config=TcpConfig(receive_buffer_bytes=20_000))
    pair.handshake()
    pair.server.pause_reading()
    pair.client.send(payload(100_000, 5))
    pair.run(until=pair.now + 3.0)
    assert pair.client.send_buffered > 0
    assert pair.client._snd_nxt > pair.server._rcv_nxt  # the probe byte
    pair.client.abort(now=pair.now)
    aborted_at = pair.now
    pair.run(until=pair.now + 5.0)
    assert pair.client.state is TcpState.CLOSED
    assert pair.server.state is TcpState.CLOSED
    assert pair.terminated(pair.server) == [ConnectionTerminated(reason="connection reset by peer", reset=True)]
    # the aborted side sent nothing after its RST
    late = [r for r in pair.records(node="client", name="segment_sent") if r.t > aborted_at]
    assert late == []


def test_abort_during_zero_window_probing_in_the_simulator() -> None:
    """The same through HostStack: the receiving application learns of the reset."""
    from lab.sim import SimNetwork
    from lab.stack.host import StreamHandler
    from lab.topology import build_topology
    from topologies import TOPOLOGIES

    lost: list[tuple[str, bool]] = []
    streams = []

    class Sink(StreamHandler):
        def connection_made(self, stream) -> None:
            stream.pause_reading()
            streams.append(stream)

        def connection_lost(self, stream, reason: str, reset: bool) -> None:
            lost.append((reason, reset))

    class Sender(StreamHandler):
        def connection_made(self, stream) -> None:
            stream.send(payload(200_000, 6))

    spec = build_topology("single-path", TOPOLOGIES["single-path"], delay_ms=10.0)
    net = SimNetwork.build(spec, seed=5, tcp_config=TcpConfig(receive_buffer_bytes=30_000))
    net.host("h2").listen(7000, Sink)
    stream = net.host("h1").connect(spec.addresses_of("h2")[0], 7000, Sender())
    net.run(until=5.0)
    assert stream.conn._snd_nxt > streams[0].conn._rcv_nxt  # a probe byte is outstanding
    stream.abort()
    net.run(until=10.0)
    assert lost == [("connection reset by peer", True)]
    assert net.host("h2").connections() == []


def test_abort_in_syn_sent_sends_nothing() -> None:
    pair = TcpPair()
    pair.client.connect(now=0.0)
    pair.collect()
    pair.in_flight.clear()
    pair.client.abort(now=0.0)
    pair.collect()
    assert pair.in_flight == []
    assert pair.client.state is TcpState.CLOSED
    assert [t.reset for t in pair.terminated(pair.client)] == [True]


def test_abort_in_listen() -> None:
    pair = TcpPair()
    pair.server.listen(now=0.0)
    pair.server.abort(now=0.0)
    assert pair.server.state is TcpState.CLOSED
    pair.client.connect(now=0.0)
    pair.run(until=2.0)
    assert pair.client.state is TcpState.SYN_SENT


# --- keepalive (RFC 9293 3.8.4)


def keepalive_cfg(**kw) -> TcpConfig:
    return TcpConfig(keepalive_idle_s=10.0, keepalive_interval_s=2.0, keepalive_probes=3, **kw)


def probes(pair: TcpPair, node: str = "client") -> list:
    conn = pair.client if node == "client" else pair.server
    return [
        r
        for r in pair.records(node=node, name="segment_sent")
        if r.data["flags"] == "A" and r.data["len"] == 0 and r.data["seq"] == (conn._iss + conn._snd_nxt - 1) % 2**32
    ]


def test_keepalive_probes_an_idle_connection() -> None:
    pair = TcpPair(client_config=keepalive_cfg())
    pair.handshake()
    t0 = pair.now
    pair.run(until=t0 + 35.0)
    assert pair.client.state is TcpState.ESTABLISHED
    sent = probes(pair)
    # one probe after every 10 s of silence; each is answered, which restarts the idle time
    assert len(sent) == 3
    assert sent[0].t == pytest.approx(0.02 + 10.0, abs=0.02)
    answered = [r for r in pair.records(node="server", name="segment_sent") if r.t > t0]
    assert len(answered) == 3
    assert pair.terminated(pair.client) == []


def test_keepalive_timeout_aborts() -> None:
    state = {"dead": False}

    def fault(sender, data: bytes) -> list[bytes]:
        return [] if state["dead"] else [data]

    pair = TcpPair(client_config=keepalive_cfg(), fault=fault)
    pair.handshake()
    state["dead"] = True  # the server vanished without a trace
    pair.run(until=pair.now + 60.0)
    sent = probes(pair)
    assert len(sent) == 3
    gaps = [b.t - a.t for a, b in itertools.pairwise(sent)]
    assert gaps == pytest.approx([2.0, 2.0])
    assert pair.client.state is TcpState.CLOSED
    assert pair.terminated(pair.client) == [ConnectionTerminated(reason="keepalive timeout", reset=True)]
    (ended,) = [r for r in pair.records(node="client", name="state_updated") if "terminated" in r.data]
    assert ended.t == pytest.approx(sent[-1].t + 2.0)


def test_keepalive_not_sent_while_data_flows() -> None:
    pair = TcpPair(client_config=keepalive_cfg())
    pair.handshake()
    for i in range(30):
        pair.server.send(payload(500, i))
        pair.run(until=pair.now + 1.0)
    assert probes(pair) == []
    assert len(pair.data(pair.client)) == 30 * 500


def test_keepalive_off_by_default() -> None:
    pair = TcpPair()
    pair.handshake()
    pair.run(until=10_000.0)
    assert pair.client.get_timer() is None
    assert len(pair.records(name="segment_sent")) == 3
