"""A SYN flood against an MPTCP listener (20,000 MP_CAPABLE SYNs from an address that never
answers) holds at most the listener's backlog of half-open MPTCP connections, and a legitimate
MPTCP transfer beside the flood completes byte-exact (the memory figure is the benchmark
sim-mptcp-syn-flood's)."""

from __future__ import annotations

from lab.bench.mptcp_flood import BACKLOG, SPOOFED, SYNS, syn_flood
from lab.trace import MemoryTracer


def test_an_mp_capable_syn_flood_holds_at_most_the_backlog_and_a_transfer_beside_completes() -> None:
    tracer = MemoryTracer()
    r = syn_flood(tracer=tracer)
    assert r["result"].ok, r["result"].to_dict()
    assert r["peak_connections"] <= BACKLOG + 1, r  # the flood's half-open ones, and the transfer
    dropped = [x for x in tracer.records if x.node == "h2" and "half-open connections full" in x.data.get("reason", "")]
    assert len(dropped) > SYNS // 2
    evicted = [x for x in tracer.records if x.node == "h2" and x.data.get("syn_backlog") == "evicted"]
    assert evicted and all(x.data["conn"].split("->")[1].startswith(SPOOFED) for x in evicted)
