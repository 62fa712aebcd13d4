"""The client opens its other subflows once the connection is fully established (RFC 8684 §3.1:
the server has shown, with a DSS, that it holds our keys), as Linux's path manager does.

Opened as soon as the SYN-ACK arrived, a join went out beside the third ACK; over a faster path
(or a jittered one: found at a shared bottleneck with access-link jitter) it reached the server
before that ACK, when the server did not yet know the token: refused with a RST, and the pair was
never tried again, so the connection stayed on one subflow for good.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from lab.scenario import ScenarioRun, get_scenario
from lab.scenario.mptcp import MptcpTransfer
from lab.trace import MemoryTracer

MIB = 1024 * 1024
PER_ADDRESS = {"path_manager": "per_address"}


@pytest.mark.parametrize("delay_ms", [(40.0, 10.0), (10.0, 40.0)])
def test_a_join_over_a_faster_path_than_the_first_is_not_refused(delay_ms: tuple[float, float]) -> None:
    base = get_scenario("mptcp-two-paths")
    scenario = replace(
        base,
        topology_params={**base.topology_params, "delay_ms": delay_ms},
        # per_address: h1's second address joins h2's first at once, no ADD_ADDR to wait for
        transfers=(replace(base.transfers[0], size_bytes=2 * MIB, client=PER_ADDRESS, server=PER_ADDRESS),),
    )
    assert isinstance(scenario.transfers[0], MptcpTransfer)
    tracer = MemoryTracer()
    run = ScenarioRun(scenario, seed=3, tracer=tracer)
    run.net.run(until=30.0, stop=lambda: all(r.complete for r in run.results))
    (result,) = run.results
    assert result.ok, result.to_dict()
    refused = [r for r in tracer.records if r.layer == "mptcp" and "unknown token" in str(r.data.get("reason", ""))]
    assert refused == [], refused[0].data
    joined = [
        r
        for r in tracer.select(node="h1", layer="mptcp", name="state_updated")
        if r.data.get("to") == "ESTABLISHED" and r.data.get("address_id") not in (None, 0)
    ]
    assert joined, "the second subflow never came up"
    # it went out once the server's first DSS reached the client: after one full round trip of path A
    first_rtt = 2 * 2 * delay_ms[0] / 2 / 1000  # two-paths' delay_ms is per path, split over two links
    assert joined[0].t > first_rtt
