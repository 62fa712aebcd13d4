"""A SYN flood against a listener (20,000 SYNs from an address that never answers) holds at
most the listener's backlog of half-open connections; beyond it SYNs get SYN cookies and no
state, and a legitimate transfer beside the flood completes byte-exact. A SYN's timeouts
are recorded with the real backoff count."""

from __future__ import annotations

import hashlib

import pytest

from lab.errors import ConfigError
from lab.sim.inject import inject
from lab.sim.network import SimNetwork
from lab.stack.apps import BulkSender, BulkSink, TransferResult, bulk_payload
from lab.stack.syn_backlog import SynCookies
from lab.topology import build_topology
from lab.trace import MemoryTracer
from lab.wire.checksum import pack_address
from lab.wire.ip import Ipv4Packet, encode_ipv4
from lab.wire.tcp import SYN, MaxSegmentSize, TcpSegment, encode_segment
from topologies import TOPOLOGIES

PORT = 5001
SYNS = 20_000
BACKLOG = 64
SPOOFED = "10.0.1.77"  # on h1's link, owned by no host: SYN/ACKs to it go nowhere


def test_a_syn_flood_holds_at_most_the_backlog_and_a_transfer_beside_completes() -> None:
    spec = build_topology("single-path", TOPOLOGIES["single-path"], delay_ms=10.0, bw_mbps=20.0)
    tracer = MemoryTracer()
    net = SimNetwork.build(spec, seed=5, tracer=tracer)
    h1, h2 = spec.addresses_of("h1")[0], spec.addresses_of("h2")[0]
    data = bulk_payload(1024 * 1024, 9)
    result = TransferResult("bulk", len(data), hashlib.sha256(data).hexdigest())
    server = net.host("h2")
    server.listen(PORT, lambda: BulkSink(result), backlog=BACKLOG)
    src, dst = pack_address(SPOOFED), pack_address(h2)
    for i in range(SYNS):
        mss = (MaxSegmentSize(1460),)
        seg = encode_segment(TcpSegment(1024 + i % 60000, PORT, 7 * i, 0, SYN, 65535, options=mss), src, dst)
        inject(net, "h1", encode_ipv4(Ipv4Packet(SPOOFED, h2, 6, seg)), at=0.1 + i * 0.0001)
    net.call_at(0.5, lambda: BulkSender(result, data).start(net.host("h1"), h2, PORT))  # mid-flood
    peak = [0]

    def sample() -> None:
        peak[0] = max(peak[0], len(server.connections()))
        if not result.complete:
            net.call_at(net.now + 0.01, sample)

    net.call_at(0.1, sample)
    net.run(until=60.0, stop=lambda: result.complete)
    assert result.ok, result.to_dict()
    assert peak[0] <= BACKLOG + 1, peak  # the flood's half-open ones, and the transfer
    cookies = [r for r in tracer.records if r.node == "h2" and r.data.get("reason") == "SYN cookie: backlog full"]
    assert len(cookies) > SYNS // 2
    accepted = [r for r in tracer.records if r.node == "h2" and r.data.get("syn_cookie") == "accepted"]
    assert [r.data["conn"].split("->")[1].split(":")[0] for r in accepted] in ([h1], [])


def test_syn_cookies_check_what_they_were_made_for() -> None:
    cookies = SynCookies(b"k" * 16)
    four = bytes(12)
    isn, mss = cookies.make(four, 1000, 1460, now=10.0)
    assert mss == 1460 and cookies.check(four, 1000, isn, now=70.0) == 1460  # the next slot too
    assert cookies.check(four, 1000, isn, now=200.0) is None  # too old
    assert cookies.check(four, 1001, isn, now=10.0) is None
    assert cookies.check(bytes(11) + b"\x01", 1000, isn, now=10.0) is None


def test_a_bad_backlog_is_refused() -> None:
    spec = build_topology("single-path", TOPOLOGIES["single-path"])
    net = SimNetwork.build(spec, seed=1)
    with pytest.raises(ConfigError, match="backlog"):
        net.host("h2").listen(PORT, lambda: None, backlog=0)


def test_syn_timeouts_record_the_real_backoff() -> None:
    spec = build_topology("single-path", TOPOLOGIES["single-path"], delay_ms=5.0)
    tracer = MemoryTracer()
    net = SimNetwork.build(spec, seed=2, tracer=tracer)
    result = TransferResult("bulk", 1, hashlib.sha256(b"x").hexdigest())
    BulkSender(result, b"x").start(net.host("h1"), "10.0.2.77", 9)  # on h2's link, owned by no host
    net.run(until=20.0)
    syn = [r.data for r in tracer.records if r.node == "h1" and r.data.get("timeout") == "syn"]
    assert [d["backoff"] for d in syn][:3] == [1, 2, 3]
    assert [d["rto_ms"] for d in syn][:3] == [2000.0, 4000.0, 8000.0]
