"""The accepting side honours max_subflows (RFC 8684 §3.2, §3.6): MP_JOIN SYNs beyond it,
even with a valid token (derivable from the key sent in clear), are refused with RST +
MP_TCPRST "administratively prohibited", and no state is kept for them."""

from __future__ import annotations

import hashlib

from lab.mptcp.config import MptcpConfig
from lab.sim.inject import inject
from lab.sim.network import SimNetwork
from lab.stack.apps import BulkSender, BulkSink, TransferResult, bulk_payload
from lab.topology import build_topology
from lab.trace import MemoryTracer
from lab.wire import mptcp as w
from lab.wire.checksum import pack_address
from lab.wire.ip import Ipv4Packet, encode_ipv4
from lab.wire.tcp import SYN, TcpSegment, encode_segment
from topologies import TOPOLOGIES

PORT = 5001
JOINS = 3000
MAX_SUBFLOWS = 4


def test_thousands_of_valid_joins_are_refused_beyond_max_subflows_and_the_transfer_completes() -> None:
    spec = build_topology("single-path", TOPOLOGIES["single-path"], delay_ms=10.0, bw_mbps=20.0)
    tracer = MemoryTracer()
    net = SimNetwork.build(spec, seed=3, tracer=tracer)
    h1, h2 = spec.addresses_of("h1")[0], spec.addresses_of("h2")[0]
    data = bulk_payload(2 * 1024 * 1024, 5)
    result = TransferResult("bulk", len(data), hashlib.sha256(data).hexdigest())
    net.host("h2").listen(PORT, lambda: BulkSink(result), group=MptcpConfig(max_subflows=MAX_SUBFLOWS))
    BulkSender(result, data).start(net.host("h1"), h2, PORT, group=MptcpConfig(path_manager="none"))
    peak = {"subflows": 0, "connections": 0}

    def flood() -> None:
        (mp,) = net.host("h2").groups()
        src, dst = pack_address(h1), pack_address(h2)
        for i in range(JOINS):
            join = w.to_tcp_option(w.MpJoinSyn(address_id=1, token=mp.local_token, nonce=i))
            seg = encode_segment(TcpSegment(20000 + i, PORT, 1000 + i, 0, SYN, 65535, options=(join,)), src, dst)
            inject(net, "h1", encode_ipv4(Ipv4Packet(h1, h2, 6, seg)), at=net.now + i * 0.0004)

    def sample() -> None:
        groups = net.host("h2").groups()
        if groups:
            peak["subflows"] = max(peak["subflows"], len(groups[0].subflows))
        peak["connections"] = max(peak["connections"], len(net.host("h2").connections()))
        if not result.complete:
            net.call_at(net.now + 0.01, sample)

    net.call_at(0.3, flood)
    net.call_at(0.3, sample)
    net.run(until=60.0, stop=lambda: result.complete)
    assert result.ok, result.to_dict()
    assert peak["subflows"] <= MAX_SUBFLOWS and peak["connections"] <= MAX_SUBFLOWS, peak
    refused = [
        r
        for r in tracer.records
        if r.node == "h2" and r.layer == "mptcp" and "MP_JOIN refused" in r.data.get("reason", "")
    ]
    # the joins sent early enough to reach h2 before the transfer ended (spaced 0.4 ms from 0.3 s, 10 ms
    # one way; 50 ms of margin): most were refused, the others took the slots of joins h1 itself reset
    reached = sum(1 for i in range(JOINS) if 0.3 + i * 0.0004 + 0.05 < net.now)
    assert reached > JOINS // 3 and len(refused) > reached // 2, (reached, len(refused))
    rsts = [r for r in tracer.records if r.node == "h2" and r.layer == "tcp" and r.data.get("reason") == "refused"]
    assert len(rsts) == len(refused)
    rst_opt = w.to_tcp_option(w.MpTcpRst(reason=w.MPTCP_RST_ADMINISTRATIVELY_PROHIBITED))
    assert all(r.data["options"] == [{"kind": 30, "data": rst_opt.data.hex()}] for r in rsts), rsts[0].data
