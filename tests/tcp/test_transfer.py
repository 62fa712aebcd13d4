"""Moving bytes: every transfer is checked end to end under loss, reordering, duplication, corruption."""

from __future__ import annotations

import itertools
import random

import pytest

from lab.tcp import TcpConfig, TcpState
from lab.tcp.events import ConnectionTerminated, StreamEnded
from tests.tcp.pair import TcpPair, payload, peek, random_loss, sha256

CCS = ["cubic", "newreno"]


def configs(cc: str, **kw) -> dict:
    cfg = TcpConfig(congestion_control=cc, **kw)
    return {"client_config": cfg, "server_config": cfg}


def assert_exact(pair: TcpPair, up: bytes, down: bytes) -> None:
    assert len(pair.data(pair.server)) == len(up)
    assert sha256(pair.data(pair.server)) == sha256(up)
    assert len(pair.data(pair.client)) == len(down)
    assert sha256(pair.data(pair.client)) == sha256(down)


def assert_closed_cleanly(pair: TcpPair) -> None:
    for conn in (pair.client, pair.server):
        assert conn.state is TcpState.CLOSED
        assert pair.events_of(conn, StreamEnded)
        assert [t.reset for t in pair.terminated(conn)] == [False]


def data_segments(pair: TcpPair, node: str) -> list:
    return [r for r in pair.records(node=node, name="segment_sent") if r.data["len"]]


def timeouts(pair: TcpPair, node: str, kind: str = "rto") -> list:
    return [r for r in pair.records(node=node, name="state_updated") if r.data.get("timeout") == kind]


@pytest.mark.parametrize("cc", CCS)
def test_clean_transfer_both_directions(cc: str) -> None:
    pair = TcpPair(**configs(cc))
    pair.handshake()
    up, down = payload(1_000_000, 1), payload(600_000, 2)
    pair.transfer(up, down)
    assert_exact(pair, up, down)
    assert_closed_cleanly(pair)
    assert not timeouts(pair, "client") and not timeouts(pair, "server")
    assert pair.client.metrics()["bytes_retransmitted"] == 0
    assert pair.client.metrics()["cc"] == cc


@pytest.mark.parametrize("cc", CCS)
@pytest.mark.parametrize("sack", [True, False])
@pytest.mark.parametrize("seed", [1, 2])
def test_random_loss(cc: str, sack: bool, seed: int) -> None:
    pair = TcpPair(**configs(cc, sack=sack), fault=random_loss(random.Random(seed), 5.0), seed=seed)
    pair.handshake()
    up, down = payload(400_000, seed), payload(300_000, seed + 10)
    pair.transfer(up, down)
    assert_exact(pair, up, down)
    assert_closed_cleanly(pair)
    assert pair.client.metrics()["bytes_retransmitted"] > 0
    assert pair.server.metrics()["bytes_retransmitted"] > 0


@pytest.mark.parametrize("cc", CCS)
@pytest.mark.parametrize("sack", [True, False])
def test_reordering(cc: str, sack: bool) -> None:
    pair = TcpPair(**configs(cc, sack=sack), reorder_rng=random.Random(7))
    pair.handshake()
    up, down = payload(500_000, 3), payload(200_000, 4)
    pair.transfer(up, down)
    assert_exact(pair, up, down)
    assert_closed_cleanly(pair)
    received = [r for r in pair.records(node="server", name="segment_received") if r.data["len"]]
    seqs = [r.data["seq"] for r in received]
    assert any(b < a for a, b in itertools.pairwise(seqs)), "the harness should actually reorder"


@pytest.mark.parametrize("sack", [True, False])
def test_reordering_and_loss(sack: bool) -> None:
    pair = TcpPair(
        **configs("cubic", sack=sack), reorder_rng=random.Random(8), fault=random_loss(random.Random(9), 3.0)
    )
    pair.handshake()
    up, down = payload(300_000, 5), payload(300_000, 6)
    pair.transfer(up, down)
    assert_exact(pair, up, down)
    assert_closed_cleanly(pair)


@pytest.mark.parametrize("cc", CCS)
@pytest.mark.parametrize("sack", [True, False])
def test_duplication(cc: str, sack: bool) -> None:
    rng = random.Random(11)

    def fault(sender, data: bytes) -> list[bytes]:
        return [data, data] if rng.random() < 0.2 else [data]

    pair = TcpPair(**configs(cc, sack=sack), fault=fault)
    pair.handshake()
    up, down = payload(400_000, 7), payload(100_000, 8)
    pair.transfer(up, down)
    assert_exact(pair, up, down)
    assert_closed_cleanly(pair)


def test_corruption_is_detected_and_recovered() -> None:
    rng = random.Random(12)
    corrupted = []

    def fault(sender, data: bytes) -> list[bytes]:
        if rng.random() < 0.05:
            bad = bytearray(data)
            i = rng.randrange(len(bad))
            bad[i] ^= 1 << rng.randrange(8)  # one bit flipped, checksum left alone
            corrupted.append(sender)
            return [bytes(bad)]
        return [data]

    pair = TcpPair(fault=fault)
    pair.handshake()
    up, down = payload(500_000, 9), payload(200_000, 10)
    pair.transfer(up, down)
    assert_exact(pair, up, down)
    assert_closed_cleanly(pair)
    drops = pair.records(name="segment_dropped")
    # mostly checksum mismatches; a flip in the data offset is caught before the checksum
    assert len(drops) == len(corrupted) > 0
    assert sum("checksum" in r.data["reason"] for r in drops) > len(drops) // 2
    for r in drops:
        assert "field" in r.data["reason"]
        assert r.data["conn"] in (str(pair.client.addr), str(pair.server.addr))


def test_corrupted_header_or_options_are_dropped_too() -> None:
    """Flipping a header byte (flags, ports, options) must not confuse the receiver either."""
    rng = random.Random(13)
    count = 0

    def fault(sender, data: bytes) -> list[bytes]:
        nonlocal count
        if rng.random() < 0.1:
            bad = bytearray(data)
            i = rng.randrange(min(len(bad), 40))
            bad[i] ^= 0xFF
            count += 1
            return [bytes(bad)]
        return [data]

    pair = TcpPair(fault=fault)
    pair.handshake()
    up = payload(200_000, 14)
    pair.transfer(up, up[::-1])
    assert_exact(pair, up, up[::-1])
    assert count > 0
    assert len(pair.records(name="segment_dropped")) >= count


@pytest.mark.parametrize("cc", CCS)
@pytest.mark.parametrize("sack", [True, False])
def test_loss_of_the_whole_initial_window(cc: str, sack: bool) -> None:
    dropped: list[int] = []

    def fault(sender, data: bytes) -> list[bytes]:
        seg = peek(data)
        if sender is pair.client and seg.payload and len(dropped) < 10 and seg.seq not in dropped:
            dropped.append(seg.seq)  # the first transmission of each of the first ten segments
            return []
        return [data]

    pair = TcpPair(**configs(cc, sack=sack), fault=fault)
    pair.handshake()
    started = pair.now
    up = payload(200_000, 15)
    pair.transfer(up)
    assert len(dropped) == 10  # RFC 6928 initial window
    first_flight = [r for r in data_segments(pair, "client") if r.t == started]
    assert [r.data["seq"] for r in first_flight] == dropped
    assert_exact(pair, up, b"")
    assert_closed_cleanly(pair)
    # every lost segment was sent again
    for seq in dropped:
        assert len([r for r in data_segments(pair, "client") if r.data["seq"] == seq]) >= 2
    # nothing came back, so only a timer could notice: the RTO (RFC 6298), or with SACK
    # a tail loss probe (RFC 8985) if the connection has one
    fired = timeouts(pair, "client") + timeouts(pair, "client", "tlp")
    assert fired
    first = min(fired, key=lambda r: r.t)
    assert first.t > started
    if not sack:
        assert first.data["timeout"] == "rto"
        # RFC 6298 (2.4): one second at least after the window went out
        assert first.t == pytest.approx(started + 1.0, abs=1e-6)
        # and cwnd collapsed to one segment (RFC 5681 (5)): one retransmission, then wait
        burst = [r for r in data_segments(pair, "client") if r.t == first.t]
        assert [r.data["seq"] for r in burst] == dropped[:1]


@pytest.mark.parametrize("cc", CCS)
@pytest.mark.parametrize("sack", [True, False])
@pytest.mark.parametrize("lost", [1, 2, 4])
def test_tail_loss(cc: str, sack: bool, lost: int) -> None:
    """The last segments (and the FIN riding on the last one) are lost: no duplicate ACK
    can announce them, so a timer has to recover them."""
    up = payload(100_003, 16)  # not a whole number of segments
    dropped: list[int] = []

    def fault(sender, data: bytes) -> list[bytes]:
        seg = peek(data)
        if sender is pair.client and seg.payload and seg.seq not in dropped and len(dropped) < lost:
            end = (seg.seq - pair.client._iss - 1) % 2**32 + len(seg.payload)
            if end > len(up) - lost * pair.client.mss:
                dropped.append(seg.seq)
                return []
        return [data]

    pair = TcpPair(**configs(cc, sack=sack), fault=fault)
    pair.handshake()
    pair.transfer(up)
    assert len(dropped) == lost
    assert_exact(pair, up, b"")
    assert_closed_cleanly(pair)
    assert timeouts(pair, "client") or timeouts(pair, "client", "tlp")
    for seq in dropped:
        assert len([r for r in data_segments(pair, "client") if r.data["seq"] == seq]) >= 2


@pytest.mark.parametrize("cc", CCS)
@pytest.mark.parametrize("sack", [True, False])
@pytest.mark.parametrize("loss_at_segment", [30, 200])
def test_single_loss_is_fast_retransmitted(cc: str, sack: bool, loss_at_segment: int) -> None:
    """RFC 5681 3.2 (4), RFC 6582 3.2 (2), RFC 6675 5 (4.3): entering fast recovery
    retransmits the lost segment at once, whatever cwnd and pipe say."""
    target = {}

    def fault(sender, data: bytes) -> list[bytes]:
        seg = peek(data)
        if sender is pair.client and seg.payload and not target:
            off = (seg.seq - pair.client._iss - 1) % 2**32
            if off >= loss_at_segment * 1448:
                target["seq"] = seg.seq
                return []
        return [data]

    pair = TcpPair(**configs(cc, sack=sack), one_way_s=0.02)
    pair.fault = fault
    pair.handshake()
    up = payload(1_000_000, 17)
    pair.transfer(up)
    assert_exact(pair, up, b"")
    assert_closed_cleanly(pair)
    assert not timeouts(pair, "client")
    records = pair.records(node="client")
    enter = [i for i, r in enumerate(records) if r.data.get("recovery") == "enter"]
    assert len(enter) == 1
    resent = [r for r in data_segments(pair, "client") if r.data["seq"] == target["seq"]]
    assert len(resent) == 2
    # the segment sent right after entering recovery is the retransmission
    after = [r for r in records[enter[0] :] if r.name == "segment_sent"]
    assert after[0] is resent[1]


@pytest.mark.parametrize("cc", CCS)
def test_newreno_partial_ack_recovery_without_sack(cc: str) -> None:
    """Several losses in one window without SACK: each partial ACK retransmits the next hole (RFC 6582)."""
    holes: list[int] = []

    def fault(sender, data: bytes) -> list[bytes]:
        seg = peek(data)
        if sender is pair.client and seg.payload and len(holes) < 3 and seg.seq not in holes:
            off = (seg.seq - pair.client._iss - 1) % 2**32
            if off >= 150 * 1448 and (not holes or off >= ((holes[-1] - pair.client._iss - 1) % 2**32) + 5 * 1448):
                holes.append(seg.seq)
                return []
        return [data]

    pair = TcpPair(**configs(cc, sack=False))
    pair.fault = fault
    pair.handshake()
    up = payload(600_000, 18)
    pair.transfer(up)
    assert_exact(pair, up, b"")
    assert_closed_cleanly(pair)
    assert len(holes) == 3
    assert not timeouts(pair, "client"), "partial ACKs must repair the holes without an RTO"
    enter = [r for r in pair.records(node="client", name="state_updated") if r.data.get("recovery") == "enter"]
    assert len(enter) == 1, "one recovery episode repairs all the holes of the window"
    for seq in holes:
        assert len([r for r in data_segments(pair, "client") if r.data["seq"] == seq]) == 2


def test_rto_backoff_doubles() -> None:
    """RFC 6298 (5.5): each expiry doubles the RTO; the retransmissions are spaced 1, 2, 4, 8 s."""
    blackout = (0.5, 20.0)

    def fault(sender, data: bytes) -> list[bytes]:
        return [] if blackout[0] <= pair.now < blackout[1] else [data]

    pair = TcpPair()
    pair.fault = fault
    pair.handshake()
    first, second = payload(30_000, 19), payload(30_000, 20)
    pair.client.send(first)
    pair.run(until=0.5)
    assert pair.data(pair.server) == first
    pair.client.send(second)  # goes out at 0.5, into the blackout
    pair.run(until=19.9)
    up = first + second
    rtos = timeouts(pair, "client")
    times = [r.t for r in rtos]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) >= 3
    for a, b in itertools.pairwise(gaps):
        assert b == pytest.approx(2 * a)
    assert [r.data["backoff"] for r in rtos] == list(range(1, len(rtos) + 1))
    assert [r.data["rto_ms"] for r in rtos] == [1000.0 * 2**i for i in range(1, len(rtos) + 1)]
    # every timeout retransmits the first unacknowledged segment
    for r in rtos:
        (seg,) = [s for s in data_segments(pair, "client") if s.t == r.t]
        assert seg.data["seq"] == (pair.client._iss + pair.client._snd_una) % 2**32
    pair.client.close(now=pair.now)
    pair.server.close(now=pair.now)
    pair.run(until=400.0)
    assert pair.data(pair.server) == up
    assert_closed_cleanly(pair)


def test_rto_is_capped_and_retransmissions_limited() -> None:
    cfg = TcpConfig(max_rto_s=4.0, max_retransmits=5)
    pair = TcpPair(client_config=cfg)
    pair.handshake()
    pair.fault = lambda sender, data: []
    pair.client.send(b"x" * 5000)
    pair.run(until=200.0)
    rtos = timeouts(pair, "client")
    assert [r.data["rto_ms"] for r in rtos] == [2000.0, 4000.0, 4000.0, 4000.0, 4000.0]
    assert pair.client.state is TcpState.CLOSED
    assert pair.terminated(pair.client) == [ConnectionTerminated(reason="retransmission limit reached", reset=True)]


@pytest.mark.parametrize("cc", CCS)
def test_window_scaling_allows_more_than_64k_in_flight(cc: str) -> None:
    pair = TcpPair(**configs(cc), one_way_s=0.05)
    pair.handshake()
    up = payload(2_000_000, 21)
    pair.client.send(up)
    flights = []

    def watch() -> bool:
        flights.append(pair.client.metrics()["flight"])
        return len(pair.data(pair.server)) >= len(up)

    pair.run(until=60.0, stop=watch)
    assert pair.data(pair.server) == up
    assert max(flights) > 65535 * 3
    assert pair.client._snd_wscale == 7


def test_without_window_scaling_flight_stays_below_64k() -> None:
    pair = TcpPair(server_config=TcpConfig(window_scaling=False), one_way_s=0.05)
    pair.handshake()
    up = payload(1_000_000, 22)
    pair.client.send(up)
    flights = []

    def watch() -> bool:
        flights.append(pair.client.metrics()["flight"])
        return len(pair.data(pair.server)) >= len(up)

    pair.run(until=120.0, stop=watch)
    assert pair.data(pair.server) == up
    assert max(flights) <= 65535
    assert max(flights) > 60_000


def test_small_writes_are_delivered_in_order() -> None:
    pair = TcpPair(reorder_rng=random.Random(23), fault=random_loss(random.Random(24), 5.0))
    pair.handshake()
    chunks = [payload(random.Random(i).randrange(1, 3000), i) for i in range(200)]
    t = pair.now
    for chunk in chunks:
        pair.client.send(chunk)
        t += 0.003
        pair.run(until=t)
    pair.client.close(now=pair.now)
    pair.server.close(now=pair.now)
    pair.run(until=300.0)
    assert pair.data(pair.server) == b"".join(chunks)
    assert_closed_cleanly(pair)


def test_heavy_loss_still_byte_exact() -> None:
    pair = TcpPair(fault=random_loss(random.Random(25), 20.0), reorder_rng=random.Random(26))
    pair.handshake()
    up = payload(100_000, 27)
    pair.transfer(up, up[:50_000], until=2000.0)
    assert_exact(pair, up, up[:50_000])


def test_srtt_tracks_the_path() -> None:
    pair = TcpPair(one_way_s=0.03)
    pair.handshake()
    up = payload(300_000, 28)
    pair.transfer(up)
    assert pair.data(pair.server) == up
    assert pair.client.srtt == pytest.approx(0.06, rel=0.5)
    assert pair.client.metrics()["rto_ms"] >= 1000.0  # min_rto_s


# --- the same without a tracer: the connection's untraced fast paths (header prediction,
# raw encoding) must move exactly the same bytes


def untraced(cc: str = "cubic", **kw) -> dict:
    return {**configs(cc, **{k: v for k, v in kw.items() if k in ("sack", "timestamps")}), "trace": False}


@pytest.mark.parametrize("cc", CCS)
@pytest.mark.parametrize("sack", [True, False])
@pytest.mark.parametrize("timestamps", [True, False])
def test_untraced_loss_and_reordering(cc: str, sack: bool, timestamps: bool) -> None:
    pair = TcpPair(
        **untraced(cc, sack=sack, timestamps=timestamps),
        fault=random_loss(random.Random(31), 4.0),
        reorder_rng=random.Random(32),
    )
    pair.handshake()
    up, down = payload(400_000, 33), payload(250_000, 34)
    pair.transfer(up, down)
    assert pair.tracer.records == []
    assert_exact(pair, up, down)
    assert_closed_cleanly(pair)


def test_untraced_clean_transfer_matches_traced() -> None:
    """Same seed, same faults: tracing must not change what happens on the wire."""
    wires = []
    for trace in (True, False):
        seen: list[bytes] = []
        rng = random.Random(35)

        def fault(sender, data: bytes, seen=seen, rng=rng) -> list[bytes]:
            seen.append(data)
            return [] if rng.random() < 0.03 else [data]

        pair = TcpPair(fault=fault, trace=trace)
        pair.handshake()
        up, down = payload(300_000, 36), payload(100_000, 37)
        pair.transfer(up, down)
        assert_exact(pair, up, down)
        wires.append(seen)
    assert wires[0] == wires[1]


@pytest.mark.parametrize("sack", [True, False])
def test_untraced_duplication_and_corruption(sack: bool) -> None:
    rng = random.Random(38)

    def fault(sender, data: bytes) -> list[bytes]:
        r = rng.random()
        if r < 0.05:
            bad = bytearray(data)
            bad[rng.randrange(len(bad))] ^= 0x10
            return [bytes(bad)]
        if r < 0.15:
            return [data, data]
        return [data]

    pair = TcpPair(**untraced(sack=sack), fault=fault, reorder_rng=random.Random(39))
    pair.handshake()
    up, down = payload(300_000, 40), payload(300_000, 41)
    pair.transfer(up, down)
    assert_exact(pair, up, down)
    assert_closed_cleanly(pair)


def test_untraced_zero_window() -> None:
    pair = TcpPair(server_config=TcpConfig(receive_buffer_bytes=65536), trace=False)
    pair.handshake()
    pair.server.pause_reading()
    up = payload(200_000, 42)
    pair.client.send(up)
    pair.run(until=10.0)
    assert pair.data(pair.server) == b""
    assert pair.client.metrics()["snd_wnd"] == 0
    pair.server.resume_reading(now=pair.now)
    pair.run(until=60.0, stop=lambda: len(pair.data(pair.server)) >= len(up))
    assert sha256(pair.data(pair.server)) == sha256(up)


# --- wraparound, delayed ACKs, Nagle


@pytest.mark.parametrize("sack", [True, False])
def test_sequence_numbers_wrap(sack: bool) -> None:
    """ISS just below 2**32: sequence numbers, ACKs and SACK blocks wrap mid-transfer."""
    pair = TcpPair(
        **configs("cubic", sack=sack), fault=random_loss(random.Random(50), 3.0), reorder_rng=random.Random(51)
    )
    pair.client._iss = 2**32 - 5000
    pair.server._iss = 2**32 - 70_000
    pair.handshake()
    up, down = payload(400_000, 52), payload(300_000, 53)
    pair.transfer(up, down)
    assert_exact(pair, up, down)
    assert_closed_cleanly(pair)
    seqs = [r.data["seq"] for r in data_segments(pair, "client")]
    assert min(seqs) < 100_000 and max(seqs) > 2**32 - 5000  # it did wrap


def test_timestamps_wrap() -> None:
    """TSval wraps 0.3 s into the connection; PAWS compares modulo 2**32 (RFC 7323 5.2)."""
    pair = TcpPair(fault=random_loss(random.Random(54), 3.0), one_way_s=0.03)
    pair.client._ts_offset = 2**32 - 300
    pair.server._ts_offset = 2**32 - 250
    pair.handshake()
    up, down = payload(500_000, 55), payload(200_000, 56)
    pair.transfer(up, down)
    assert_exact(pair, up, down)
    paws = [r for r in pair.records(name="segment_dropped") if "PAWS" in r.data["reason"]]
    assert paws == []


def test_delayed_ack() -> None:
    """RFC 9293 3.8.6.3 / RFC 5681 4.2: one small segment is acknowledged after the delay,
    every second full segment at once."""
    pair = TcpPair()
    pair.handshake()
    t0 = pair.now
    pair.client.send(b"x" * 100)
    pair.run(until=t0 + 1.0)
    (ack,) = [r for r in pair.records(node="server", name="segment_sent") if r.t > t0]
    assert ack.t == pytest.approx(t0 + 0.01 + TcpConfig().delayed_ack_s)
    t1 = pair.now
    pair.client.send(payload(4 * 1448, 57))
    pair.run(until=t1 + 0.0101)
    acks = [r for r in pair.records(node="server", name="segment_sent") if r.t > t1]
    assert len(acks) == 2 and all(r.t == pytest.approx(t1 + 0.01) for r in acks)


@pytest.mark.parametrize("nagle", [True, False])
def test_nagle(nagle: bool) -> None:
    pair = TcpPair(client_config=TcpConfig(nagle=nagle))
    pair.handshake()
    t = pair.now
    for i in range(100):
        pair.client.send(bytes([i]))
        t += 0.001
        pair.run(until=t)
    pair.run(until=t + 1.0)
    assert pair.data(pair.server) == bytes(range(100))
    segments = data_segments(pair, "client")
    if nagle:
        # RFC 9293 3.8.6.2.2: one small segment in flight at a time, the rest coalesced
        assert len(segments) < 20
    else:
        assert len(segments) == 100


@pytest.mark.parametrize("sack", [True, False])
@pytest.mark.parametrize("timestamps", [True, False])
def test_karn_no_rtt_sample_from_an_ack_covering_a_retransmission(sack: bool, timestamps: bool) -> None:
    """RFC 6298 (3) / Karn: the ACK that a retransmission draws also covers segments sent
    long before; timing it would inflate SRTT by the whole timeout."""
    dropped = []

    def fault(sender, data: bytes) -> list[bytes]:
        seg = peek(data)
        offset = (seg.seq - pair.client._iss - 1) % 2**32
        if sender is pair.client and seg.payload and not dropped and offset == pair.client.mss:
            dropped.append(pair.now)
            return []
        return [data]

    cfg = TcpConfig(sack=sack, timestamps=timestamps)
    pair = TcpPair(client_config=cfg, server_config=cfg, fault=fault)
    pair.handshake()
    up = payload(4 * pair.client.mss, 60)  # the second of four segments is lost: too few dupACKs
    pair.client.send(up)
    pair.run(until=10.0)
    assert dropped
    assert pair.data(pair.server) == up
    # repaired by the RTO (without SACK) or RACK (with it): either way the ACK covering
    # the repair also covers segments sent one recovery time earlier
    assert pair.client.metrics()["bytes_retransmitted"] > 0
    assert pair.client.srtt == pytest.approx(0.02, rel=0.1)


def test_rack_detects_a_loss_within_one_burst() -> None:
    """RFC 8985 6.2: of segments sent at the same instant, the one with the higher sequence
    counts as sent later. Four segments leave together, the second is lost: its SACKed
    successors reveal the loss after RACK.rtt + reo_wnd, with no timeout at all."""
    dropped = []

    def fault(sender, data: bytes) -> list[bytes]:
        seg = peek(data)
        offset = (seg.seq - pair.client._iss - 1) % 2**32
        if sender is pair.client and seg.payload and not dropped and offset == pair.client.mss:
            dropped.append(pair.now)
            return []
        return [data]

    pair = TcpPair(fault=fault)
    pair.handshake()
    up = payload(4 * pair.client.mss, 61)
    pair.client.send(up)
    pair.run(until=10.0)
    assert dropped
    assert pair.data(pair.server) == up
    assert not timeouts(pair, "client")
    resent = [r for r in data_segments(pair, "client") if r.t > dropped[0]]
    assert resent and resent[0].data["seq"] == (pair.client._iss + 1 + pair.client.mss) % 2**32
    # about one RTT plus a quarter of the minimum RTT after it was sent
    assert resent[0].t - dropped[0] < 0.04


@pytest.mark.parametrize("cc", CCS)
def test_lost_tail_during_recovery_is_rescued_without_rto(cc: str) -> None:
    """RFC 6675 NextSeg() rule 4: a segment lost mid-window and the very last
    segment lost too; the rescue retransmission repairs the tail in recovery."""
    size = 60 * 1448
    dropped: dict[int, int] = {}

    def fault(sender, data: bytes) -> list[bytes]:
        seg = peek(data)
        if sender is pair.client and seg.payload:
            off = (seg.seq - pair.client._iss - 1) % 2**32
            for mark in (20 * 1448, size - 1448):
                if off == mark and mark not in dropped:
                    dropped[mark] = seg.seq
                    return []
        return [data]

    pair = TcpPair(**configs(cc), one_way_s=0.02)
    pair.fault = fault
    pair.handshake()
    up = payload(size, 23)
    pair.transfer(up)
    assert len(dropped) == 2
    assert_exact(pair, up, b"")
    assert not timeouts(pair, "client")
    tail = dropped[size - 1448]
    assert len([r for r in data_segments(pair, "client") if r.data["seq"] == tail]) == 2
