"""``sim-mptcp-syn-flood``: 20,000 MP_CAPABLE SYNs against an MPTCP listener (lab.stack.syn_backlog).

The SYNs come from an address that never answers, one every 0.1 ms from
0.1 s; a legitimate MPTCP client connects at 0.5 s, mid-flood, and sends
1 MiB. The listener keeps at most its backlog of half-open MPTCP connections
(128), so the memory the flood takes stays bounded: before, every SYN held a
whole connection (~13 KB each, 256 MB for the flood). The benchmark reports
the peak of the Python heap above where it started (tracemalloc), the peak
number of MPTCP connections on the listener and whether the transfer was
byte-exact.
"""

from __future__ import annotations

import hashlib
import time
import tracemalloc
from typing import Any

from lab.mptcp.config import MptcpConfig
from lab.sim.inject import inject
from lab.sim.network import SimNetwork
from lab.stack.apps import BulkSender, BulkSink, TransferResult, bulk_payload
from lab.topology import TopologyBuilder
from lab.trace import NULL_TRACER, Tracer
from lab.wire import mptcp as w
from lab.wire.checksum import pack_address
from lab.wire.ip import Ipv4Packet, encode_ipv4
from lab.wire.tcp import SYN, MaxSegmentSize, TcpSegment, encode_segment

PORT = 5001
SYNS = 20_000
BACKLOG = 128
SPOOFED = "10.0.1.77"  # on h1's link, owned by no host: SYN/ACKs to it go nowhere
MEMORY_BOUND_BYTES = 32_000_000


def _topology() -> Any:
    t = TopologyBuilder("flood")
    h1, h2, r1 = t.host("h1"), t.host("h2"), t.router("r1")
    t.link(h1, r1, delay_ms=5.0, bw_mbps=20.0)
    t.link(r1, h2, delay_ms=5.0, bw_mbps=20.0)
    return t.build()


def _mp_capable_syn(i: int, src: bytes, dst: bytes) -> bytes:
    options = (MaxSegmentSize(1460), w.to_tcp_option(w.MpCapableSyn(version=1)))
    return encode_segment(TcpSegment(1024 + i % 60000, PORT, 7 * i, 0, SYN, 65535, options=options), src, dst)


def syn_flood(
    *, syns: int = SYNS, backlog: int = BACKLOG, tracer: Tracer = NULL_TRACER, measure_memory: bool = False
) -> dict[str, Any]:
    """Run the flood beside one transfer; returns the transfer's result, the peak number of MPTCP
    connections on h2 and, with ``measure_memory``, the peak heap growth in bytes."""
    spec = _topology()
    net = SimNetwork.build(spec, seed=5, tracer=tracer)
    h1, h2 = spec.addresses_of("h1")[0], spec.addresses_of("h2")[0]
    data = bulk_payload(1024 * 1024, 9)
    result = TransferResult("bulk", len(data), hashlib.sha256(data).hexdigest())
    server = net.host("h2")
    server.listen(PORT, lambda: BulkSink(result), group=MptcpConfig(), backlog=backlog)
    src, dst = pack_address(SPOOFED), pack_address(h2)
    for i in range(syns):
        inject(net, "h1", encode_ipv4(Ipv4Packet(SPOOFED, h2, 6, _mp_capable_syn(i, src, dst))), at=0.1 + i * 0.0001)
    net.call_at(0.5, lambda: BulkSender(result, data).start(net.host("h1"), h2, PORT, group=MptcpConfig()))
    peak = {"groups": 0, "bytes": 0}
    base = 0

    def sample() -> None:
        peak["groups"] = max(peak["groups"], len(server.groups()))
        if measure_memory:
            peak["bytes"] = max(peak["bytes"], tracemalloc.get_traced_memory()[0] - base)
        if not result.complete:
            net.call_at(net.now + 0.01, sample)

    start = time.perf_counter()
    if measure_memory:
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
    try:
        net.call_at(0.1, sample)
        net.run(until=60.0, stop=lambda: result.complete)
    finally:
        if measure_memory:
            tracemalloc.stop()
    return {
        "result": result,
        "peak_connections": peak["groups"],
        "peak_memory_bytes": peak["bytes"] if measure_memory else None,
        "completed_at_s": result.completed_at,
        "wall_s": round(time.perf_counter() - start, 1),
    }


def bench_syn_flood() -> dict[str, Any]:
    r = syn_flood(measure_memory=True)
    result = r["result"]
    mb = r["peak_memory_bytes"] / 1e6
    return {
        "bench": "sim-mptcp-syn-flood",
        "metric": "peak heap growth during 20,000 MP_CAPABLE SYNs",
        "value": round(mb, 2),
        "unit": "MB",
        "target": f"< {MEMORY_BOUND_BYTES / 1e6:.0f} MB, at most {BACKLOG} + 1 connections, transfer byte-exact",
        "passed": r["peak_memory_bytes"] < MEMORY_BOUND_BYTES and r["peak_connections"] <= BACKLOG + 1 and result.ok,
        "peak_connections": r["peak_connections"],
        "transfer_ok": result.ok,
        "transfer_completed_at_s": r["completed_at_s"],
        "syns": SYNS,
        "backlog": BACKLOG,
        "wall_s": r["wall_s"],
    }
