"""Moving bytes: every transfer is checked end to end under loss, reordering, duplication, corruption."""

from __future__ import annotations

import random

import pytest

from lab.tcp import TcpConfig, TcpState
from lab.tcp.events import ConnectionTerminated, StreamEnded
from lab.wire.tcp import FIN
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
    assert any(b < a for a, b in zip(seqs, seqs[1:])), "the harness should actually reorder"


@pytest.mark.parametrize("sack", [True, False])
def test_reordering_and_loss(sack: bool) -> None:
    pair = TcpPair(**configs("cubic", sack=sack), reorder_rng=random.Random(8), fault=random_loss(random.Random(9), 3.0))
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
    checksum_drops = [r for r in drops if "checksum" in r.data["reason"]]
    assert len(checksum_drops) == len(corrupted) > 0
    for r in checksum_drops:
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
    dropped = []

    def fault(sender, data: bytes) -> list[bytes]:
        seg = peek(data)
        if sender is pair.client and seg.payload and pair.now < 0.5:
            dropped.append(seg.seq)
            return []
        return [data]

    pair = TcpPair(**configs(cc, sack=sack), fault=fault)
    pair.handshake()
    up = payload(200_000, 15)
    pair.transfer(up)
    assert len(dropped) == 10  # RFC 6928 initial window
    assert_exact(pair, up, b"")
    assert_closed_cleanly(pair)
    (first, *_) = timeouts(pair, "client")
    # the first RTO fires one second (RFC 6298 minimum) after the window went out
    assert first.t == pytest.approx(0.02 + 1.0, abs=1e-6)
    # cwnd collapsed to one segment after the timeout (RFC 5681 (5))
    after = [r for r in data_segments(pair, "client") if r.t >= first.t]
    assert after[0].t == first.t
    assert after[0].data["seq"] == dropped[0]


@pytest.mark.parametrize("cc", CCS)
@pytest.mark.parametrize("sack", [True, False])
def test_tail_loss(cc: str, sack: bool) -> None:
    """The last data segment and the FIN are lost: only the RTO can recover them."""
    up = payload(100_000, 16)
    dropped = []

    def fault(sender, data: bytes) -> list[bytes]:
        seg = peek(data)
        if sender is pair.client and (seg.payload or seg.flags & FIN) and len(dropped) < 2:
            end = (seg.seq - first_seq[0]) % 2**32 + len(seg.payload)
            if end >= len(up):
                dropped.append(seg.seq)
                return []
        return [data]

    pair = TcpPair(**configs(cc, sack=sack), fault=fault)
    first_seq = [(pair.client._iss + 1) % 2**32]
    pair.handshake()
    pair.transfer(up)
    assert len(dropped) >= 1
    assert_exact(pair, up, b"")
    assert_closed_cleanly(pair)
    assert timeouts(pair, "client")


@pytest.mark.parametrize("cc", CCS)
def test_single_loss_is_fast_retransmitted(cc: str) -> None:
    """RFC 6675 5 (4.3) / RFC 6582 3.2 (2): the lost segment goes out when recovery starts."""
    target = {}

    def fault(sender, data: bytes) -> list[bytes]:
        seg = peek(data)
        if sender is pair.client and seg.payload and not target:
            off = (seg.seq - pair.client._iss - 1) % 2**32
            if off >= 200 * 1448:  # well after slow start has opened cwnd
                target["seq"] = seg.seq
                return []
        return [data]

    pair = TcpPair(**configs(cc))
    pair.fault = fault
    pair.handshake()
    up = payload(1_000_000, 17)
    pair.transfer(up)
    assert_exact(pair, up, b"")
    assert not timeouts(pair, "client")
    enter = [r for r in pair.records(node="client", name="state_updated") if r.data.get("recovery") == "enter"]
    assert len(enter) == 1
    resent = [r for r in data_segments(pair, "client") if r.data["seq"] == target["seq"]]
    assert len(resent) == 2
    assert resent[1].t == enter[0].t


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
    pair.run(until=0.4)
    pair.client.send(payload(30_000, 19))
    pair.run(until=0.45)
    pair.client.send(payload(30_000, 20))  # sent at 0.5 and lost
    up = payload(30_000, 19) + payload(30_000, 20)
    pair.run(until=0.5)
    pair.run(until=19.9)
    rtos = timeouts(pair, "client")
    times = [r.t for r in rtos]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) >= 3
    for a, b in zip(gaps, gaps[1:]):
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
