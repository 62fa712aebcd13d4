"""The shared-bottleneck benchmark's plumbing: run lengths follow the cell's sawtooth, and each cell
carries its reference (h1 on one subflow with the competitor's controller)."""

from __future__ import annotations

import pytest

from lab.bench.mptcp_fairness import MIN_MEASURE_S, durations, grid, run_grid
from lab.scenario.fairness import ONE_SUBFLOW


def test_a_cell_settles_for_one_sawtooth_cycle_and_is_measured_over_four() -> None:
    # 5 Mbit/s, 400 packets: a full queue is 0.96 s deep, the pipe 409 packets; each of two NewReno
    # flows regains a quarter of it one segment per 0.98 s round trip: about 100 s
    warmup, measure = durations(5.0, 400)
    assert warmup == pytest.approx(100.4, abs=0.5)
    assert measure == pytest.approx(4 * warmup)
    assert durations(50.0, 25) == (10.0, MIN_MEASURE_S)  # short cycles: the floors


def test_the_grid_holds_every_cell_with_its_reference() -> None:
    cells = grid()
    coupled = {(c["bw_mbps"], c["queue_packets"], c["competitor"]) for c in cells if c["congestion"] == "lia"}
    reference = {(c["bw_mbps"], c["queue_packets"], c["competitor"]) for c in cells if c["congestion"] == ONE_SUBFLOW}
    assert len(coupled) == 24 and reference == coupled


def test_each_cell_reports_the_reference_beside_its_ratio() -> None:
    cell = {"bw_mbps": 5.0, "queue_packets": 25, "competitor": "newreno"}
    out = run_grid([{**cell, "congestion": "lia"}, {**cell, "congestion": ONE_SUBFLOW}], seeds=(1,), workers=1)
    lia, ref = out
    assert lia["one_subflow_ratio"] == ref["ratio"]
    # one flow against one of its kind shares the bottleneck; LIA's two subflows take one share
    assert 0.8 < ref["ratio"] < 1.25 and 0.8 < lia["ratio"] < 1.25
    assert lia["mptcp_mbps"] + lia["tcp_mbps"] > 0.9 * 5.0
