"""Schedulers, path managers and coupled congestion control (RFC 6356 LIA, OLIA)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pytest

from lab.mptcp.strategies import (
    CoupledGroup,
    FullMeshPathManager,
    LiaCongestion,
    MinRttScheduler,
    OliaCongestion,
    PairedPathManager,
    PerAddressPathManager,
    RoundRobinScheduler,
)
from lab.scenario import get_scenario, run_scenario
from lab.tcp.addresses import FourTuple

MSS = 1448


def _lia(n: int, cwnd_segments: int, rtt: float) -> list[LiaCongestion]:
    group = CoupledGroup()
    members = [LiaCongestion(mss=MSS, group=group) for _ in range(n)]
    for m in members:
        m.cwnd = cwnd_segments * MSS
        m.ssthresh = m.cwnd  # congestion avoidance
        m.rtt = rtt
    return members


def test_lia_alone_grows_like_reno() -> None:
    (m,) = _lia(1, 10, 0.05)
    assert m.increase(MSS) == pytest.approx(MSS * MSS / m.cwnd)


def test_lia_with_two_equal_subflows_takes_one_tcp_share() -> None:
    a, b = _lia(2, 10, 0.05)
    # RFC 6356: alpha = total * max(w/rtt^2) / (sum w/rtt)^2 = 1/2 here; each grows 1/4 as fast as Reno
    assert a.increase(MSS) == pytest.approx(MSS * MSS / (4 * a.cwnd))
    assert a.increase(MSS) + b.increase(MSS) == pytest.approx(MSS * MSS / (2 * a.cwnd))


def test_lia_never_grows_faster_than_reno_on_its_own_path() -> None:
    a, b = _lia(2, 10, 0.05)
    b.cwnd, b.rtt = 200 * MSS, 0.2
    assert a.increase(MSS) <= MSS * MSS / a.cwnd + 1e-9


def test_olia_alone_grows_like_reno() -> None:
    m = OliaCongestion(mss=MSS, group=CoupledGroup())
    m.cwnd, m.ssthresh, m.rtt = 20 * MSS, 20 * MSS, 0.05
    assert m.increase(MSS) == pytest.approx(MSS / 20)


def test_olia_moves_window_from_the_largest_path_to_a_better_one() -> None:
    group = CoupledGroup()
    big, good = OliaCongestion(mss=MSS, group=group), OliaCongestion(mss=MSS, group=group)
    for m, w in ((big, 40), (good, 10)):
        m.cwnd = m.ssthresh = w * MSS
        m.rtt = 0.05
    good.bytes_since_loss = 10_000_000  # far more delivered between losses: the best path
    big.bytes_since_loss = 1_000
    assert good.increase(MSS) > 0
    plain = OliaCongestion(mss=MSS, group=CoupledGroup())
    plain.cwnd, plain.rtt = big.cwnd, big.rtt
    assert big.increase(MSS) < good.increase(MSS)


@dataclass
class View:
    addr: FourTuple
    srtt: float | None
    backup: bool = False
    cwnd: int = 14480
    send_room: int = 14480


def test_min_rtt_picks_the_fastest_and_round_robin_takes_turns() -> None:
    a = View(FourTuple("10.0.1.1", 1, "10.0.2.2", 2), 0.08)
    b = View(FourTuple("10.0.3.1", 1, "10.0.4.2", 2), 0.02)
    assert MinRttScheduler().pick([a, b]) is b
    rr = RoundRobinScheduler()
    assert [rr.pick([a, b]) for _ in range(4)] == [a, b, a, b]


def test_path_managers_choose_their_subflows() -> None:
    kw = dict(
        local_addresses=["10.0.1.1", "10.0.3.1"],
        remote_addresses=[("10.0.2.2", 80), ("10.0.4.2", 80)],
        in_use={("10.0.1.1", "10.0.2.2", 80)},
        initial=("10.0.1.1", "10.0.2.2", 80),
    )
    assert PairedPathManager().subflows_to_open(**kw) == [("10.0.3.1", "10.0.4.2", 80)]
    assert len(FullMeshPathManager().subflows_to_open(**kw)) == 3
    assert set(PerAddressPathManager().subflows_to_open(**kw)) == {
        ("10.0.3.1", "10.0.2.2", 80),
        ("10.0.1.1", "10.0.4.2", 80),
    }


@pytest.mark.parametrize("cc", ["lia", "olia"])
@pytest.mark.parametrize("scheduler", ["round_robin", "redundant"])
def test_coupled_controllers_and_schedulers_move_data_byte_exact(cc: str, scheduler: str) -> None:
    sc = get_scenario("mptcp-two-paths")
    cfg = {"path_manager": "paired", "congestion": cc, "scheduler": scheduler}
    sc = replace(sc, transfers=(replace(sc.transfers[0], size_bytes=2 * 1024 * 1024, client=cfg, server=cfg),))
    assert run_scenario(sc, seed=2, pcaps=False).ok


def test_the_redundant_scheduler_sends_every_byte_on_every_path() -> None:
    sc = get_scenario("mptcp-two-paths")
    cfg = {"path_manager": "paired", "scheduler": "redundant"}
    sc = replace(sc, transfers=(replace(sc.transfers[0], size_bytes=2 * 1024 * 1024, client=cfg, server=cfg),))
    result = run_scenario(sc, seed=2, pcaps=False)
    assert result.ok
    sent = {}
    for r in result.network.tracer.records:
        if (
            r.layer == "mptcp"
            and r.node == "h1"
            and r.name in ("metrics_updated", "state_updated")
            and "bytes_sent" in r.data
        ):
            sent[r.data["subflow"]] = max(sent.get(r.data["subflow"], 0), r.data["bytes_sent"])
    # both carry the data from the start; a path stops copying what the peer has already Data-ACKed
    assert len(sent) == 2 and sum(sent.values()) > 1.5 * 2 * 1024 * 1024, sent


def test_a_scheduler_that_picks_the_slower_subflow_is_obeyed_when_the_faster_has_room() -> None:
    """ECF only waits for a faster subflow that has no room: a deliberate choice never stalls."""
    from lab.mptcp.strategies import Scheduler, register_scheduler

    class Slowest(Scheduler):
        name = "test_slowest"

        def pick(self, candidates):
            return max(candidates, key=lambda s: s.srtt or 0.0)

    register_scheduler("test_slowest", Slowest)
    sc = get_scenario("mptcp-two-paths")
    sc = replace(
        sc,
        topology_params={"delay_ms": (10.0, 20.0), "bw_mbps": (20.0, 20.0), "queue_packets": 100},
        transfers=(
            replace(
                sc.transfers[0],
                size_bytes=4 * 1024 * 1024,
                client={"path_manager": "paired", "scheduler": "test_slowest"},
                server={"path_manager": "paired"},
            ),
        ),
        time_limit_s=60.0,
    )
    assert run_scenario(sc, seed=7, pcaps=False).ok
