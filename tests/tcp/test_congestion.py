"""Congestion control strategies in isolation: RFC 5681 NewReno, RFC 9438 CUBIC, RFC 9406 HyStart++."""

from __future__ import annotations

import pytest

from lab.tcp.congestion import CONGESTION_CONTROLS, Cubic, NewReno, make_congestion_control

MSS = 1448


def avoidance_rounds(cc, rounds: int, *, rtt: float = 0.04, start: float = 0.0) -> list[float]:
    """Feed one window of delayed ACKs (two segments each) per round; cwnd in segments after each."""
    now = start
    out = []
    for _ in range(rounds):
        acks = max(1, int(cc.cwnd // MSS) // 2)
        for k in range(acks):
            cc.on_ack(2 * MSS, flight=cc.cwnd, rtt=rtt, now=now + k * rtt / acks)
        now += rtt
        out.append(cc.cwnd / MSS)
    return out


def test_registry_and_unknown_name() -> None:
    assert {"newreno", "cubic"} <= set(CONGESTION_CONTROLS)
    with pytest.raises(KeyError, match="unknown congestion control 'vegas'"):
        make_congestion_control("vegas", mss=MSS, initial_window_segments=10)


def test_initial_window_is_rfc6928() -> None:
    assert NewReno(mss=MSS).cwnd == 10 * MSS  # min(10*MSS, max(2*MSS, 14600))
    assert NewReno(mss=536).cwnd == 10 * 536


def test_newreno_halves_and_grows_one_segment_per_rtt() -> None:
    cc = NewReno(mss=MSS)
    cc.cwnd = 40 * MSS
    cc.ssthresh = 1
    cc.on_congestion(flight=40 * MSS, now=0.0)
    assert cc.ssthresh == cc.cwnd == 20 * MSS  # RFC 5681 (4)
    grown = avoidance_rounds(cc, 10)
    assert grown[-1] == pytest.approx(30, abs=1)  # byte counting: +1 MSS per window acked
    before = cc.cwnd
    cc.on_timeout(flight=before, now=1.0)
    assert cc.cwnd == MSS and cc.ssthresh == before // 2


def test_cubic_reduces_to_beta_and_returns_to_wmax() -> None:
    cc = Cubic(mss=MSS)
    cc.hystart = False
    cc.cwnd = 100 * MSS
    cc.ssthresh = 1
    cc.on_congestion(flight=100 * MSS, now=0.0)
    assert cc.cwnd == pytest.approx(70 * MSS, abs=MSS)  # beta_cubic = 0.7
    # K = cbrt(W_max * (1 - beta) / C) = cbrt(100 * 0.3 / 0.4) = 4.2 s: back near W_max by then
    # (a 200 ms RTT keeps the Reno-friendly estimate below the cubic curve)
    rounds = avoidance_rounds(cc, int(4.2 / 0.2), rtt=0.2, start=0.0)
    assert rounds[-1] == pytest.approx(100, abs=8)
    assert rounds[0] < 80  # concave: fast at first, then flattening
    assert rounds[len(rounds) // 2] - rounds[0] > rounds[-1] - rounds[len(rounds) // 2]


def test_cubic_reno_friendly_alpha_becomes_one_after_cwnd_prior() -> None:
    """RFC 9438 4.3: W_est grows by alpha_cubic ~0.53 per RTT until it reaches the window
    before the reduction, then by 1 per RTT like Reno (small BDP: Reno-friendly region)."""
    cc = Cubic(mss=MSS)
    cc.cwnd = 14 * MSS
    cc.ssthresh = 1
    cc.on_congestion(flight=14 * MSS, now=0.0)
    start = cc.cwnd / MSS
    assert start == pytest.approx(9.8, abs=0.1)
    rounds = avoidance_rounds(cc, 30, rtt=0.04)
    # 0.53 per round up to 14 segments takes ~8 rounds, then 1 per round
    early = rounds[5] - rounds[0]
    late = rounds[25] - rounds[20]
    assert early == pytest.approx(5 * 0.529, abs=0.6)
    assert late == pytest.approx(5 * 1.0, abs=0.6)


def test_hystart_leaves_slow_start_when_delay_rises() -> None:
    """RFC 9406: a round whose minimum RTT exceeds the last one's by the threshold
    ends slow start (conservative slow start, then avoidance after CSS_ROUNDS)."""
    cc = NewReno(mss=MSS)
    now = 0.0
    rtt = 0.040
    for _round in range(12):
        cc.on_round_start()
        for _ in range(10):
            cc.on_ack(MSS, flight=cc.cwnd, rtt=rtt, now=now)
        now += rtt
        if _round >= 4:
            rtt += 0.010  # the queue builds
    assert cc.ssthresh < 1 << 30  # slow start ended without a loss
    without = NewReno(mss=MSS)
    without.hystart = False
    for _ in range(12 * 10):
        without.on_ack(MSS, flight=without.cwnd, rtt=0.04, now=0.0)
    assert cc.cwnd < without.cwnd


def test_newreno_never_raises_its_window_on_a_loss() -> None:
    """RFC 5681 (4) halves FlightSize, but SND.MAX - SND.UNA after a long SACK recovery still counts
    SACKed data beyond holes lost again: half of it may exceed the window that was sending."""
    cc = NewReno(mss=MSS)
    cc.cwnd = 40 * MSS
    cc.on_congestion(flight=300 * MSS, now=1.0)
    assert cc.cwnd == cc.ssthresh == 20 * MSS
    cc.cwnd = 40 * MSS
    cc.on_timeout(flight=300 * MSS, now=2.0)
    assert cc.ssthresh == 20 * MSS and cc.cwnd == MSS
    # an application-limited sender halves what it had out, not an unused window
    cc.cwnd = 40 * MSS
    cc.on_congestion(flight=10 * MSS, now=3.0)
    assert cc.cwnd == 5 * MSS


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_newreno_flow_at_a_small_drop_tail_queue_keeps_its_window_within_the_path(seed: int) -> None:
    """Two NewReno flows share a 20 Mbit/s bottleneck with a 25-packet queue (22 ms base RTT: the path
    holds 37 + 25 segments). Once slow start is over neither window may pass what the path holds.
    With ssthresh from FlightSize alone, seed 2's first flow came out of each SACK recovery with a
    larger window than the last (1,410 segments by 5 s) and kept the queue full: the other flow got
    5 segments of window and about one percent of the link."""
    from lab.scenario.base import ScenarioRun
    from lab.scenario.fairness import ONE_SUBFLOW, SEED_OFFSET_S, shared_bottleneck_scenario
    from lab.trace import NULL_TRACER

    scenario = shared_bottleneck_scenario(
        bw_mbps=20.0,
        queue_packets=25,
        competitor="newreno",
        congestion=ONE_SUBFLOW,
        warmup_s=0.0,
        measure_s=5.0,
        tcp_start_s=(seed - 1) * SEED_OFFSET_S,
    )
    run = ScenarioRun(scenario, seed=seed, tracer=NULL_TRACER)
    largest: dict[str, int] = {}

    def sample() -> None:
        for host in ("h1", "h3"):
            for conn in run.net.host(host).connections():
                largest[host] = max(largest.get(host, 0), conn.congestion.cwnd // conn.congestion.mss)

    for i in range(100, 500):
        run.net.call_at(i * 0.01, sample)
    run.net.run(until=5.0)
    path_segments = 37 + 25
    assert set(largest) == {"h1", "h3"}
    assert max(largest.values()) <= path_segments, largest
    assert all(r.bytes_received > 0 for r in run.results)
