"""Short flows end as soon as the data is out: the client's DATA_FIN leaves with its last data
(on the ACK right behind it) instead of after all data is acknowledged or a timeout, and
Nagle holds back no short tail once the application has closed. Simulated time, seed 1."""

from __future__ import annotations

import statistics

from lab.scenario import Scenario, run_scenario
from lab.scenario.mptcp import MptcpBackToBack, MptcpTransfer

PAIRED = {"path_manager": "paired"}
ONE_WAY_S = 0.010  # path A


def _flows(n: int) -> Scenario:
    return Scenario(
        name="short-flows",
        description=f"{n} x 10 KiB MPTCP flows one after the other",
        topology="two-paths",
        topology_params={"delay_ms": (10.0, 40.0), "bw_mbps": (20.0, 20.0)},
        transfers=(
            MptcpBackToBack(
                transfers=tuple(
                    MptcpTransfer(name=f"f{i}", size_bytes=10 * 1024, port=6000 + i, client=PAIRED, server=PAIRED)
                    for i in range(n)
                ),
                gap_s=0.05,
            ),
        ),
        time_limit_s=120.0,
    )


def test_the_data_fin_leaves_with_the_last_data() -> None:
    result = run_scenario(_flows(1), seed=1, pcaps=False)
    assert result.ok and result.transfers[0].ok
    recs = result.network.tracer.records
    data = [r.t for r in recs if r.node == "h1" and r.layer == "tcp" and r.name == "segment_sent" and r.data["len"]]
    fin = [
        r.t for r in recs if r.node == "h1" and r.layer == "mptcp" and r.name == "segment_sent"
        and any(o.get("data_fin") for o in r.data["mptcp"])
    ]
    assert fin and fin[0] == max(data)  # same instant as the last data segment
    got = [r.t for r in recs if r.node == "h2" and "data_fin_received" in r.data]
    assert got and got[0] - fin[0] < ONE_WAY_S + 0.006  # one way, plus 10 KiB at 20 Mbit/s


def test_a_hundred_short_flows_take_about_one_and_a_half_round_trips() -> None:
    result = run_scenario(_flows(100), seed=1, pcaps=False)
    assert result.ok and all(t.ok for t in result.transfers)
    median = statistics.median(t.to_dict()["duration_s"] for t in result.transfers)
    # handshake (1 RTT) + data and DATA_FIN (half an RTT) + 10 KiB at 20 Mbit/s: 34 ms; it was 71 ms
    assert median < 3 * 2 * ONE_WAY_S, median
