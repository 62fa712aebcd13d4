"""The tail of a transfer is sent again on another subflow (opportunistic retransmission) only
when it waits on a subflow that is really slower: with paths of similar RTT every Data ACK step
of the last window used to send a copy, new subflow bytes that nobody needed, and once the peer
had closed that subflow at the end of the connection, Linux answered them with RST."""

from __future__ import annotations

import hashlib

from lab.mptcp.config import MptcpConfig
from lab.sim.network import SimNetwork
from lab.stack.apps import BulkSender, BulkSink, TransferResult, bulk_payload
from lab.topology import build_topology
from lab.trace import MemoryTracer
from topologies import TOPOLOGIES


def _transfer(delay_ms: tuple[float, float], size: int, *, opportunistic: bool = True) -> tuple[float, int]:
    spec = build_topology("two-paths", TOPOLOGIES["two-paths"], delay_ms=delay_ms, bw_mbps=(20.0, 20.0))
    tracer = MemoryTracer()
    net = SimNetwork.build(spec, seed=1, tracer=tracer)
    data = bulk_payload(size, 3)
    result = TransferResult("bulk", len(data), hashlib.sha256(data).hexdigest())
    net.host("h2").listen(5001, lambda: BulkSink(result), group=MptcpConfig(path_manager="paired"))
    client = MptcpConfig(path_manager="paired", opportunistic_retransmission=opportunistic)
    BulkSender(result, data).start(net.host("h1"), "10.0.2.2", 5001, group=client)
    net.run(until=60.0, stop=lambda: result.complete)
    assert result.ok, result.to_dict()  # byte-exact
    copies = [r for r in tracer.records if r.node == "h1" and r.layer == "mptcp" and "reinjected" in r.data]
    return result.to_dict()["duration_s"], len(copies)


def test_paths_of_similar_rtt_send_no_copy_of_the_tail() -> None:
    took, copies = _transfer((10.0, 10.0), 3_000_000)
    assert copies == 0  # was 72, for no gain
    took_without, _ = _transfer((10.0, 10.0), 3_000_000, opportunistic=False)
    assert took <= took_without


def test_a_tail_held_by_a_much_slower_subflow_is_still_sent_again_on_the_fast_one() -> None:
    took, copies = _transfer((5.0, 100.0), 4_000_000)
    took_without, none = _transfer((5.0, 100.0), 4_000_000, opportunistic=False)
    assert copies >= 1 and none == 0
    assert took < 0.75 * took_without, (took, took_without)  # 1.53 s against 2.52 s
