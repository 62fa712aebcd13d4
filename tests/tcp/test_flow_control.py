"""Flow control: a receiver that stops reading closes its window; the sender probes (persist) until it reopens."""

from __future__ import annotations

import itertools
import random

import pytest

from lab.tcp import TcpConfig, TcpState
from lab.tcp.events import DataReceived
from tests.tcp.pair import TcpPair, payload, random_loss, sha256

# 40 full segments exactly, a power of two, and an odd size: the window must close in every case
BUFFERS = [40 * 1448, 65536, 40000]


def persist_timeouts(pair: TcpPair, node: str = "client") -> list:
    return [r for r in pair.records(node=node, name="state_updated") if r.data.get("timeout") == "persist"]


def windows_sent(pair: TcpPair, node: str) -> list[int]:
    return [r.data["win"] for r in pair.records(node=node, name="segment_sent") if "S" not in r.data["flags"]]


def paused_pair(buffer_bytes: int, **kw) -> TcpPair:
    pair = TcpPair(server_config=TcpConfig(receive_buffer_bytes=buffer_bytes), **kw)
    pair.handshake()
    pair.server.pause_reading()
    return pair


@pytest.mark.parametrize("buffer_bytes", BUFFERS)
def test_zero_window_persist_then_resume(buffer_bytes: int) -> None:
    pair = paused_pair(buffer_bytes)
    up = payload(300_000, 1)
    pair.client.send(up)
    pair.run(until=20.0)
    # nothing was handed to the application, and the buffer filled up exactly
    assert pair.data(pair.server) == b""
    assert len(pair.server._rcv_buf) == buffer_bytes
    assert windows_sent(pair, "server")[-1] == 0
    assert pair.client.metrics()["snd_wnd"] == 0
    # the sender kept probing the zero window (RFC 9293 3.8.6.1), with backoff
    probes = persist_timeouts(pair)
    assert len(probes) >= 3
    assert [p.data["backoff"] for p in probes] == list(range(len(probes)))
    gaps = [b.t - a.t for a, b in itertools.pairwise(probes)]
    for a, b in itertools.pairwise(gaps):
        assert b == pytest.approx(2 * a)
    # each probe was answered with a zero-window ACK, and nothing beyond the buffer was accepted
    assert pair.client.state is TcpState.ESTABLISHED
    assert pair.server.metrics()["bytes_received"] <= buffer_bytes + len(probes)
    # the application reads again: a window update restarts the transfer
    resumed_at = pair.now
    pair.server.resume_reading(now=pair.now)
    pair.run(until=resumed_at + 0.001)
    update = [r for r in pair.records(node="server", name="segment_sent") if r.t >= resumed_at]
    assert update and update[0].data["win"] > 0 and update[0].data["len"] == 0
    pair.client.close(now=pair.now)
    pair.run(until=200.0, stop=lambda: pair.server.state is TcpState.CLOSE_WAIT)
    assert sha256(pair.data(pair.server)) == sha256(up)
    # the transfer finished promptly after the update, not at the next probe
    assert pair.now - resumed_at < 1.0


@pytest.mark.parametrize("buffer_bytes", BUFFERS)
def test_lost_window_update_is_recovered_by_probes(buffer_bytes: int) -> None:
    """The window update after resume_reading() is lost; only the sender's probes can find out."""
    state = {"drop": False, "dropped": 0}

    def fault(sender, data: bytes) -> list[bytes]:
        if state["drop"] and sender is pair.server and state["dropped"] == 0:
            state["dropped"] += 1
            return []
        return [data]

    pair = paused_pair(buffer_bytes, fault=fault)
    up = payload(200_000, 2)
    pair.client.send(up)
    pair.run(until=10.0)
    assert pair.data(pair.server) == b""
    state["drop"] = True
    pair.server.resume_reading(now=pair.now)
    pair.run(until=300.0, stop=lambda: len(pair.data(pair.server)) >= len(up))
    assert state["dropped"] == 1
    assert sha256(pair.data(pair.server)) == sha256(up)


def test_probe_answered_while_paused_for_long() -> None:
    """A long pause never kills the connection: probes are answered, so no retransmission limit applies."""
    pair = paused_pair(40 * 1448)
    up = payload(100_000, 3)
    pair.client.send(up)
    pair.run(until=900.0)
    assert pair.client.state is TcpState.ESTABLISHED
    assert pair.server.state is TcpState.ESTABLISHED
    probes = persist_timeouts(pair)
    assert len(probes) > 10
    # the probe interval is capped at 60 s
    gaps = [b.t - a.t for a, b in itertools.pairwise(probes)]
    assert max(gaps) <= 60.0 + 1e-9
    pair.server.resume_reading(now=pair.now)
    pair.run(until=1000.0, stop=lambda: len(pair.data(pair.server)) >= len(up))
    assert pair.data(pair.server) == up


def test_window_right_edge_never_moves_left() -> None:
    """RFC 9293 3.8.6.2.2: the receiver shrinks the window only as data arrives, never the right edge."""
    pair = paused_pair(65536)
    up = payload(200_000, 4)
    pair.client.send(up)
    pair.run(until=10.0)
    pair.server.resume_reading(now=pair.now)
    pair.run(until=60.0, stop=lambda: len(pair.data(pair.server)) >= len(up))
    assert pair.data(pair.server) == up
    edges = []
    for r in pair.records(node="server", name="segment_sent"):
        if "S" in r.data["flags"]:
            continue
        ack_off = (r.data["ack"] - pair.client._iss) % 2**32
        edges.append(ack_off + (r.data["win"] << pair.server._rcv_wscale))
    assert len(edges) > 50
    assert all(b >= a for a, b in itertools.pairwise(edges))


def test_pause_and_resume_repeatedly_under_loss() -> None:
    rng = random.Random(5)
    pair = TcpPair(
        server_config=TcpConfig(receive_buffer_bytes=50_000),
        fault=random_loss(random.Random(6), 3.0),
        reorder_rng=random.Random(7),
    )
    pair.handshake()
    up = payload(400_000, 8)
    pair.client.send(up)
    pair.client.close(now=pair.now)
    t = pair.now
    while len(pair.data(pair.server)) < len(up) and t < 500.0:
        pair.server.pause_reading()
        t += rng.uniform(0.05, 3.0)
        pair.run(until=t)
        pair.server.resume_reading(now=pair.now)
        t += rng.uniform(0.05, 0.5)
        pair.run(until=t)
    assert sha256(pair.data(pair.server)) == sha256(up)
    # data arrived in order and whole, in as many events as the pauses cut it into
    chunks = [e.data for e in pair.events_of(pair.server, DataReceived)]
    assert b"".join(chunks) == up


def test_both_directions_paused() -> None:
    cfg = TcpConfig(receive_buffer_bytes=30_000)
    pair = TcpPair(client_config=cfg, server_config=cfg)
    pair.handshake()
    pair.client.pause_reading()
    pair.server.pause_reading()
    up, down = payload(100_000, 9), payload(80_000, 10)
    pair.client.send(up)
    pair.server.send(down)
    pair.run(until=15.0)
    assert persist_timeouts(pair, "client") and persist_timeouts(pair, "server")
    pair.client.resume_reading(now=pair.now)
    pair.server.resume_reading(now=pair.now)
    pair.transfer(b"", b"", until=300.0)
    assert pair.data(pair.server) == up
    assert pair.data(pair.client) == down
    assert pair.client.state is TcpState.CLOSED and pair.server.state is TcpState.CLOSED


def test_small_receive_buffer_limits_flight() -> None:
    pair = TcpPair(server_config=TcpConfig(receive_buffer_bytes=20_000), one_way_s=0.05)
    pair.handshake()
    up = payload(300_000, 11)
    pair.client.send(up)
    flights = []

    def watch() -> bool:
        flights.append(pair.client.metrics()["flight"])
        return len(pair.data(pair.server)) >= len(up)

    pair.run(until=60.0, stop=watch)
    assert pair.data(pair.server) == up
    assert max(flights) <= 20_000
    assert not persist_timeouts(pair)


def test_window_reopens_while_a_probe_byte_is_outstanding() -> None:
    """The first zero-window probe's byte was dropped by the receiver (no room); when the
    window reopens it is still unacknowledged and must be covered by the retransmission
    timer (RFC 6298 (5.1)), even when cwnd is too small to send anything after it."""
    state = {"drop": False}

    def fault(sender, data: bytes) -> list[bytes]:
        if state["drop"] and sender is pair.client and len(data) > 100:
            state["drop"] = False
            return []  # a loss: the RTO collapses cwnd to one segment
        return [data]

    pair = TcpPair(server_config=TcpConfig(receive_buffer_bytes=20_000), fault=fault)
    pair.handshake()
    pair.server.pause_reading()
    up = payload(100_000, 12)
    pair.client.send(up)
    pair.run(until=pair.now + 0.05)
    state["drop"] = True
    pair.run(until=pair.now + 3.5)  # an RTO, then the window closes and one probe goes out
    assert persist_timeouts(pair)
    assert pair.client.congestion.cwnd <= 2 * pair.client.mss
    assert pair.client._snd_max > pair.client._snd_una  # the probe byte
    pair.server.resume_reading(now=pair.now)
    pair.run(until=pair.now + 60.0, stop=lambda: len(pair.data(pair.server)) >= len(up))
    assert sha256(pair.data(pair.server)) == sha256(up)
