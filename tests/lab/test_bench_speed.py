"""The dumbbell the sim-dumbbell benchmark runs: N pairs share the one bottleneck."""

from __future__ import annotations

from lab.bench.speed import BOTTLENECK_MBPS, _DumbbellRun, dumbbell_spec


def test_dumbbell_spec_joins_each_pair_through_the_bottleneck() -> None:
    spec = dumbbell_spec(3)
    assert sorted(spec.hosts()) == ["d1", "d2", "d3", "s1", "s2", "s3"]
    assert len(spec.links) == 1 + 2 * 3
    assert spec.links["r1-r2"].bw_mbps == BOTTLENECK_MBPS


def test_every_pair_moves_data_and_the_bottleneck_carries_it_all() -> None:
    run = _DumbbellRun(4, seed=2)
    run.net.run(until=1.0)
    received = [r.bytes_received for r in run.results]
    assert all(n > 0 for n in received)
    bottleneck = run.net.link("r1-r2").directions[0]
    assert bottleneck.sent_bytes >= sum(received)
    assert sum(received) * 8 / 1.0 / 1e6 <= BOTTLENECK_MBPS
