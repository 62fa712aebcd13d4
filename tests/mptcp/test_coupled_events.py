"""Coupled congestion control at a shared bottleneck: the connection grows as RFC 6356's alpha (and
OLIA's first term) say, whether losses cut several subflows in one round trip or one at a time; over
NewReno by whole segments; over a CUBIC host each subflow cuts to CUBIC's beta."""

from __future__ import annotations

import pytest

from lab.mptcp.strategies import CoupledGroup, LiaCongestion, OliaCongestion
from lab.scenario.fairness import measure_fairness

MSS = 1448
RTT = 0.05
ROUNDS = 40





def _group(cls: type, n: int = 2, segments: int = 20, base: str = "newreno") -> list:
    group = CoupledGroup()
    members = [cls(mss=MSS, group=group, base=base) for _ in range(n)]
    for m in members:
        m.cwnd = m.ssthresh = segments * MSS
        m.rtt = RTT
    return members


def _regrow(members: list, segments: int) -> None:
    for m in members:
        m.cwnd = m.ssthresh = segments * MSS


@pytest.mark.parametrize("synchronised", [True, False])
@pytest.mark.parametrize("cls", [LiaCongestion, OliaCongestion])
def test_the_growth_is_the_formulas_whatever_the_losses(cls: type, synchronised: bool) -> None:
    """RFC 6356 §3: alpha alone sets the growth, whether a drop-tail overflow cuts both subflows in one
    round trip or losses come one subflow at a time (an extra rule from measured events took a
    synchronised connection to one flow's growth: it is in neither RFC 6356 nor OLIA)."""
    a, b = _group(cls)
    before = a.increase(MSS) + b.increase(MSS)
    # two equal subflows: the connection grows by half a Reno flow's MSS per round trip
    assert before == pytest.approx(MSS * MSS / (2 * a.cwnd))
    for k in range(12):
        if synchronised:  # both subflows lose within a few ms, once a second
            a.on_congestion(flight=a.cwnd, now=k * 1.0)
            b.on_congestion(flight=b.cwnd, now=k * 1.0 + 0.004)
            assert a.cwnd == b.cwnd == 10 * MSS  # each halves its own window (RFC 6356)
        else:
            m = (a, b)[k % 2]
            m.on_congestion(flight=m.cwnd, now=k * 1.0)
        _regrow((a, b), 20)
    assert a.increase(MSS) + b.increase(MSS) == pytest.approx(before, rel=1e-9)


@pytest.mark.parametrize("cls", [LiaCongestion, OliaCongestion])
def test_over_newreno_the_windows_grow_by_whole_segments(cls: type) -> None:
    a, b = _group(cls)
    sizes = {a.cwnd}
    for _ in range(200):  # ten round trips of ACKs on a
        a.on_ack(MSS, flight=a.cwnd, rtt=RTT, now=1.0)
        sizes.add(a.cwnd)
    assert all(size % MSS == 0 for size in sizes), sorted(sizes)
    assert max(sizes) > 20 * MSS  # and it did grow


def test_over_a_cubic_host_a_loss_cuts_the_subflow_to_beta_and_restarts_the_aggregate_curve() -> None:
    a, b = _group(LiaCongestion, base="cubic")
    a.on_congestion(flight=a.cwnd, now=1.0)
    assert a.cwnd == int(20 * MSS * 0.7) and b.cwnd == 20 * MSS
    assert a.group.w_max == pytest.approx(40.0)  # the total when the event began, in segments
    # the curve one CUBIC flow of 40 segments would follow from 0.7 * 40 = 28: the total (34, one
    # subflow cut) is above it at first, so only the Reno-friendly growth acts ...
    assert a._cubic_increase(MSS, now=1.05) == 0
    # ... until the curve passes the total; from there the point on the curve is where the total sits
    # on it, however long ago the event was: the connection climbs by the coupling's share of the
    # curve's growth over one round trip from that point
    x = -((40 - 34) / 0.4) ** (1 / 3)
    expected = (40 + 0.4 * (x + RTT) ** 3 - 34) / 34 * MSS * a.coupling()
    assert a._cubic_increase(MSS, now=4.0) == pytest.approx(expected)
    assert a._cubic_increase(MSS, now=30.0) == pytest.approx(expected)
    a.on_timeout(flight=a.cwnd, now=2.0)
    assert a.cwnd == MSS


def test_over_cubic_a_connection_behind_the_curve_does_not_catch_up_with_it() -> None:
    """Coupled, the connection grows more slowly than one CUBIC flow, so the curve (timed from the
    event) runs ahead of it. Its growth stays the coupling's share of the curve's growth at its own
    window: before, it was a share of the gap to the curve, which grew until the connection took the
    curve's whole growth (LIA 1.65x a CUBIC flow at 10 Mbit/s with a 400-packet queue, 1.19x now)."""
    rtt = 0.2
    a, b = _group(LiaCongestion, segments=100, base="cubic")
    for m in (a, b):
        m.rtt = rtt
    a.on_congestion(flight=a.cwnd, now=0.0)
    b.cwnd = b.ssthresh = a.cwnd  # both cut in that event: 140 of 200 segments
    total = (a.cwnd + b.cwnd) / MSS
    a._cubic_increase(MSS, now=0.0)  # the epoch starts
    # eight seconds on, the curve from 140 is at 200 + 0.4 * (8 - 5.3)^3 = 208 segments; the connection
    # is still at 140, where the curve grows by 0.4 * ((x + rtt)^3 - x^3) in a round trip
    x = -((200 - total) / 0.4) ** (1 / 3)
    one_rtt = 0.4 * ((x + rtt) ** 3 - x**3)
    per_rtt = a._cubic_increase(MSS, now=8.0) / MSS * total  # a round trip of ACKs, in segments
    assert per_rtt == pytest.approx(a.coupling() * one_rtt)
    assert per_rtt < 0.1 * (208 - total)  # not a share of the 68-segment gap


def test_olia_over_cubic_takes_about_one_cubic_flows_share_at_a_shared_bottleneck() -> None:
    r = measure_fairness(
        bw_mbps=5.0, queue_packets=25, competitor="cubic", congestion="olia", warmup_s=4.0, measure_s=16.0
    )
    assert r["subflows"] == 2
    assert 0.8 <= r["ratio"] <= 1.2, r


def test_a_subflow_in_loss_recovery_keeps_sending_so_no_burst_follows_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A subflow's room for new data in loss recovery is RFC 6675's pipe, not everything
    unacknowledged: before, it took no data during recovery and sent a whole window at once
    when recovery ended (bursts of 30 segments into a full queue)."""
    from lab.scenario import ScenarioRun
    from lab.scenario.fairness import shared_bottleneck_scenario
    from lab.sim.network import SimNetwork

    sent: dict[str, list[float]] = {}
    transmit = SimNetwork.transmit

    def watch(self: SimNetwork, iface, packet: bytes) -> None:
        if iface.name.startswith("h1-") and len(packet) > 1000:
            sent.setdefault(iface.name, []).append(self.now)
        transmit(self, iface, packet)

    monkeypatch.setattr(SimNetwork, "transmit", watch)
    run = ScenarioRun(shared_bottleneck_scenario(bw_mbps=5.0, queue_packets=25, competitor="newreno", congestion="lia"))
    run.net.run(until=10.0)
    recoveries = 0
    for times in sent.values():
        burst = longest = 1
        after_iw = times[10:]  # each subflow's initial window (ten segments) goes out at once
        for a, b in zip(after_iw, after_iw[1:], strict=False):
            burst = burst + 1 if b - a < 1e-9 else 1
            longest = max(longest, burst)
        assert longest <= 6, (longest, sorted(sent))
    for host in ("h1",):
        for conn in run.net.host(host).connections():
            recoveries += conn.metrics()["bytes_retransmitted"] > 0
    assert recoveries  # there were losses to recover from


@pytest.mark.parametrize("cls", [LiaCongestion, OliaCongestion])
def test_over_cubic_a_second_subflow_cut_in_the_same_event_is_not_grown_back_in_a_round_trip(cls: type) -> None:
    """A drop-tail overflow cuts both subflows within a few ms. The aggregate's CUBIC curve must restart
    from the total after both cuts: restarted after the first only, it aimed at where that cut left the
    total, and the second subflow's cut came back within one round trip (LIA over CUBIC took 1.35x a
    CUBIC flow at 5 Mbit/s with a 25-packet queue; 0.89x with the curve restarted)."""
    a, b = _group(cls, segments=50, base="cubic")
    a.on_congestion(flight=a.cwnd, now=1.0)
    a.on_ack(MSS, flight=a.cwnd, rtt=RTT, now=1.001)  # the aggregate's new epoch begins here
    b.on_congestion(flight=b.cwnd, now=1.002)  # the same event: within one round trip
    after_cuts = a.cwnd + b.cwnd
    t = 1.003
    for _ in range(int(after_cuts / MSS)):  # one round trip of ACKs, spread over both subflows
        for m in (a, b):
            m.on_ack(MSS // 2, flight=m.cwnd, rtt=RTT, now=t)
        t += RTT / (after_cuts / MSS)
    grown = (a.cwnd + b.cwnd - after_cuts) / MSS
    assert grown < 3, f"{grown:.1f} segments in one round trip after the event"
