"""The simulated network: determinism, link failures, middleboxes, bandwidth, delay and queues."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pytest

from lab.errors import ConfigError
from lab.sim import BlockUdpPorts, FlipPayloadBytes, SimNetwork, StripTcpOptions
from lab.stack.apps import BulkSender, BulkSink, EchoClient, EchoServer, TransferResult, bulk_payload
from lab.stack.host import DatagramHandler, HostStack
from lab.tcp import TcpConfig
from lab.topology import TopologySpec, build_topology
from lab.trace import MemoryTracer, TraceRecord
from topologies import TOPOLOGIES

PORT = 5001


def single_path(**params) -> TopologySpec:
    return build_topology("single-path", TOPOLOGIES["single-path"], **params)


def two_paths(**params) -> TopologySpec:
    return build_topology("two-paths", TOPOLOGIES["two-paths"], **params)


@dataclass
class Run:
    net: SimNetwork
    spec: TopologySpec
    tracer: MemoryTracer
    result: TransferResult
    data: bytes
    sender: BulkSender = field(repr=False)

    def records(self, **kw) -> list[TraceRecord]:
        return self.tracer.select(**kw)


def start_bulk(
    spec: TopologySpec,
    *,
    size: int,
    seed: int = 1,
    tcp_config: TcpConfig | None = None,
    dst_addr: str | None = None,
    local_addr: str | None = None,
    payload_seed: int = 1,
) -> Run:
    tracer = MemoryTracer()
    net = SimNetwork.build(spec, seed=seed, tracer=tracer, tcp_config=tcp_config)
    data = bulk_payload(size, payload_seed)
    result = TransferResult("bulk", len(data), hashlib.sha256(data).hexdigest())
    net.host("h2").listen(PORT, lambda: BulkSink(result))
    sender = BulkSender(result, data)
    kw = {"local_addr": local_addr} if local_addr else {}
    sender.start(net.host("h1"), dst_addr or spec.addresses_of("h2")[0], PORT, **kw)
    return Run(net, spec, tracer, result, data, sender)


def finish(run: Run, *, until: float = 120.0) -> Run:
    run.net.run(until=until, stop=lambda: run.result.complete)
    return run


def bulk(spec: TopologySpec, **kw) -> Run:
    return finish(start_bulk(spec, **kw))


def trace_json(run: Run) -> list[str]:
    return [r.to_json() for r in run.tracer.records]


# --- determinism


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param(lambda: single_path(delay_ms=10.0, bw_mbps=20.0, loss_pct=2.0), id="single-path"),
        pytest.param(lambda: two_paths(loss_pct=1.0), id="two-paths"),
    ],
)
def test_same_seed_same_trace(spec) -> None:
    a = bulk(spec(), size=400_000, seed=7)
    b = bulk(spec(), size=400_000, seed=7)
    assert a.result.ok and b.result.ok
    assert len(a.records(name="segment_dropped", layer="link")) > 0  # the loss did happen
    ja, jb = trace_json(a), trace_json(b)
    assert len(ja) > 500
    assert ja == jb
    assert a.net.now == b.net.now


def test_different_seed_different_trace() -> None:
    a = bulk(single_path(delay_ms=10.0, bw_mbps=20.0, loss_pct=2.0), size=300_000, seed=1)
    b = bulk(single_path(delay_ms=10.0, bw_mbps=20.0, loss_pct=2.0), size=300_000, seed=2)
    assert a.result.ok and b.result.ok
    assert trace_json(a) != trace_json(b)
    drops = [
        [round(r.t, 6) for r in run.records(name="segment_dropped", layer="link") if r.data["reason"] == "random loss"]
        for run in (a, b)
    ]
    assert drops[0] != drops[1]


def test_same_seed_same_trace_without_loss_across_runs_in_one_process() -> None:
    """Nothing global leaks between networks (port choice, ISS, timestamps all come from the seed)."""
    first = bulk(single_path(), size=100_000, seed=3)
    bulk(single_path(), size=50_000, seed=99)  # another network in between
    again = bulk(single_path(), size=100_000, seed=3)
    assert trace_json(first) == trace_json(again)


# --- link failures


@pytest.mark.parametrize("down_for_s", [0.3, 2.5])
def test_link_down_mid_transfer_then_up(down_for_s: float) -> None:
    spec = single_path(delay_ms=20.0, bw_mbps=20.0)
    run = start_bulk(spec, size=1_000_000, seed=4)
    run.net.set_link_up("h1-r1", False, at=0.2)
    run.net.set_link_up("h1-r1", True, at=0.2 + down_for_s)
    finish(run, until=300.0)
    assert run.result.ok, run.result.to_dict()
    assert run.result.completed_at > 0.2 + down_for_s
    link_states = [(r.t, r.data["up"]) for r in run.records(name="state_updated", layer="link")]
    assert link_states == [(pytest.approx(0.2), False), (pytest.approx(0.2 + down_for_s), True)]
    lost = [r for r in run.records(name="segment_dropped", layer="link") if r.data["reason"] == "link down"]
    assert lost
    assert all(0.2 <= r.t < 0.2 + down_for_s for r in lost)
    timeouts = [r for r in run.records(node="h1", name="state_updated") if r.data.get("timeout") == "rto"]
    assert timeouts


def test_packets_on_the_wire_are_lost_when_the_link_goes_down() -> None:
    spec = single_path(delay_ms=200.0, bw_mbps=100.0)
    run = start_bulk(spec, size=200_000, seed=5)
    run.net.run(until=0.45)  # the first window is on the 100 ms h1-r1 wire
    arrived_before = len(run.records(node="r1", layer="ip"))
    run.net.set_link_up("h1-r1", False)
    run.net.run(until=0.6)
    run.net.set_link_up("h1-r1", True)
    finish(run, until=300.0)
    assert arrived_before == 0
    assert run.result.ok


def test_unknown_link_is_a_config_error() -> None:
    net = SimNetwork.build(single_path())
    with pytest.raises(ConfigError, match="no link named 'h1-h2'"):
        net.set_link_up("h1-h2", False)
    with pytest.raises(ConfigError, match="no host named 'r1'"):
        net.host("r1")


# --- middleboxes


def test_strip_timestamps_from_syn() -> None:
    spec = single_path(delay_ms=10.0, bw_mbps=20.0)
    run = start_bulk(spec, size=300_000, seed=6)
    box = StripTcpOptions(kinds=[8], when="syn")
    run.net.add_middlebox("r1", box)
    finish(run)
    assert run.result.ok
    rewritten = run.records(layer="middlebox", name="segment_sent")
    # only the SYN had timestamps to strip: h2 never saw them, so its SYN/ACK offered none
    assert [r.data["stripped_kinds"] for r in rewritten] == [[8]]
    tcp = [r for r in run.tracer.records if r.layer == "tcp" and r.name in ("segment_sent", "segment_received")]
    syn_sent = [r for r in tcp if r.node == "h1" and r.name == "segment_sent" and r.data["flags"] == "S"]
    assert {o["kind"] for o in syn_sent[0].data["options"]} >= {"TS"}  # h1 offered timestamps...
    syn_received = [r for r in tcp if r.node == "h2" and r.name == "segment_received" and r.data["flags"] == "S"]
    assert "TS" not in {o["kind"] for o in syn_received[0].data["options"]}  # ...which never arrived
    # so the connection runs without them: no later segment carries the option
    for r in tcp:
        if "S" not in r.data["flags"]:
            assert "TS" not in {o["kind"] for o in r.data.get("options", [])}, r
    # and the other options survived the rewrite
    assert {"MSS", "SACK_PERM", "WS"} <= {o["kind"] for o in syn_received[0].data["options"]}
    data_lens = {r.data["len"] for r in tcp if r.node == "h1" and r.name == "segment_sent"}
    assert max(data_lens) == 1460  # no 12 bytes reserved for timestamps


def test_strip_timestamps_after_handshake_only() -> None:
    spec = single_path(delay_ms=10.0, bw_mbps=20.0)
    run = start_bulk(spec, size=200_000, seed=6)
    run.net.add_middlebox("r1", StripTcpOptions(kinds=[8], when="after_handshake"))
    finish(run)
    # both ends agreed on timestamps but never see one after the SYNs: they must cope (RFC 7323 3.2)
    assert run.result.ok, run.result.to_dict()


def test_strip_mss_falls_back_to_536() -> None:
    """RFC 9293 3.7.1: without an MSS option each side assumes 536 bytes."""
    spec = single_path(delay_ms=10.0, bw_mbps=20.0)
    run = start_bulk(spec, size=100_000, seed=7)
    run.net.add_middlebox("r1", StripTcpOptions(kinds=[2], when="syn"))
    finish(run)
    assert run.result.ok
    for node in ("h1", "h2"):
        lens = {r.data["len"] for r in run.records(node=node, name="segment_sent", layer="tcp")}
        assert max(lens) <= 536 - 12  # less the timestamps option
    assert max(r.data["len"] for r in run.records(node="h1", name="segment_sent", layer="tcp")) == 524


def test_block_udp_ports() -> None:
    spec = two_paths()
    net = SimNetwork.build(spec, seed=8, tracer=(tracer := MemoryTracer()))
    for router in ("r1", "r2"):
        net.add_middlebox(router, BlockUdpPorts([500, 4500]))

    class Collect(DatagramHandler):
        def __init__(self) -> None:
            self.got: list[tuple[bytes, tuple[str, int]]] = []

        def datagram_received(self, host: HostStack, data: bytes, src, dst) -> None:
            self.got.append((data, dst))

    h1, h2 = net.host("h1"), net.host("h2")
    handlers = {port: Collect() for port in (500, 4500, 4501)}
    for port, handler in handlers.items():
        h2.bind_udp(port, handler)
    h1_addr, h2_addr = spec.addresses_of("h1")[0], spec.addresses_of("h2")[0]
    for port in (500, 4500, 4501):
        h1.send_datagram(f"to {port}".encode(), src=(h1_addr, 40000), dst=(h2_addr, port))
    # blocked by source port too (both directions)
    h1.send_datagram(b"from 500", src=(h1_addr, 500), dst=(h2_addr, 4501))
    net.run(until=1.0)
    assert handlers[500].got == []
    assert handlers[4500].got == []
    assert handlers[4501].got == [(b"to 4501", (h2_addr, 4501))]
    drops = tracer.select(layer="middlebox", name="segment_dropped")
    assert sorted((r.data["sport"], r.data["dport"]) for r in drops) == [(500, 4501), (40000, 500), (40000, 4500)]
    assert all(r.node == "r1" for r in drops)


def test_block_udp_leaves_tcp_alone() -> None:
    spec = single_path()
    run = start_bulk(spec, size=100_000, seed=9)
    run.net.add_middlebox("r1", BlockUdpPorts([PORT]))
    finish(run)
    assert run.result.ok


def test_flip_payload_bytes_is_caught_end_to_end() -> None:
    spec = single_path(delay_ms=10.0, bw_mbps=20.0)
    run = start_bulk(spec, size=300_000, seed=10)
    box = FlipPayloadBytes(dst_port=PORT, nth=3)
    run.net.add_middlebox("r1", box)
    finish(run)
    assert box.flipped == 1
    # TCP accepted the rewritten segment (its checksum was fixed) ...
    assert not [r for r in run.records(layer="tcp", name="segment_dropped") if "checksum" in r.data["reason"]]
    # ... so the stream arrived whole but different, and only the SHA-256 can tell
    assert run.result.complete
    assert run.result.bytes_received == len(run.data)
    assert run.result.sha256_received != run.result.sha256_expected
    assert not run.result.ok
    (received,) = [r for r in run.records(layer="app") if r.data.get("event") == "received"]
    assert received.data["sha256_match"] is False


def test_flip_payload_random_segments() -> None:
    spec = single_path(delay_ms=10.0, bw_mbps=20.0)
    run = start_bulk(spec, size=200_000, seed=11)
    box = FlipPayloadBytes(nth=None, probability=0.05, rng_seed=3)
    run.net.add_middlebox("r1", box)
    finish(run)
    assert box.flipped > 0
    assert not run.result.ok
    assert run.result.bytes_received == len(run.data)


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: BlockUdpPorts([0]), "UDP port"),
        (lambda: BlockUdpPorts([70000]), "UDP port"),
        (lambda: StripTcpOptions(kinds=[1]), "kind"),
        (lambda: StripTcpOptions(kinds=[8], when="sometimes"), "when"),
        (lambda: FlipPayloadBytes(nth=0), "nth"),
        (lambda: FlipPayloadBytes(probability=1.5), "probability"),
        (lambda: FlipPayloadBytes(mask=0), "mask"),
    ],
)
def test_middlebox_rejects_bad_settings(factory, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        factory()


# --- bandwidth, delay, queues


@pytest.mark.parametrize("delay_ms", [5.0, 30.0, 100.0])
def test_handshake_rtt_is_twice_the_one_way_delay(delay_ms: float) -> None:
    spec = single_path(delay_ms=delay_ms, bw_mbps=100.0)
    run = bulk(spec, size=10_000, seed=12)
    assert run.result.ok
    syn = next(r for r in run.records(node="h1", name="segment_sent") if r.data.get("flags") == "S")
    synack = next(r for r in run.records(node="h1", name="segment_received") if r.data.get("flags") == "SA")
    rtt = synack.t - syn.t
    # propagation dominates; serializing two small packets over four 100 Mbit/s hops adds microseconds
    assert rtt == pytest.approx(2 * delay_ms / 1000, abs=0.0002)
    assert rtt > 2 * delay_ms / 1000


def test_two_paths_rtts() -> None:
    spec = two_paths(delay_ms=(5.0, 40.0), bw_mbps=(100.0, 100.0))
    h1 = spec.addresses_of("h1")
    h2 = spec.addresses_of("h2")
    for local, remote, one_way in ((h1[0], h2[0], 0.005), (h1[1], h2[1], 0.040)):
        run = bulk(spec, size=5_000, seed=13, local_addr=local, dst_addr=remote)
        assert run.result.ok
        syn = next(r for r in run.records(node="h1", name="segment_sent") if r.data.get("flags") == "S")
        synack = next(r for r in run.records(node="h1", name="segment_received") if r.data.get("flags") == "SA")
        assert synack.t - syn.t == pytest.approx(2 * one_way, abs=0.0002)


def test_two_paths_traffic_stays_on_its_path() -> None:
    spec = two_paths()
    local, remote = spec.addresses_of("h1")[1], spec.addresses_of("h2")[1]
    run = bulk(spec, size=200_000, seed=14, local_addr=local, dst_addr=remote)
    assert run.result.ok
    links = run.net.links
    for name in ("h1-r1", "r1-h2"):
        assert all(d.sent_packets == 0 for d in links[name].directions)
    for name in ("h1-r2", "r2-h2"):
        assert all(d.sent_packets > 0 for d in links[name].directions)


@pytest.mark.parametrize(("bw_mbps", "delay_ms"), [(10.0, 5.0), (20.0, 10.0)])
@pytest.mark.parametrize("cc", ["cubic", "newreno"])
def test_goodput_close_to_link_rate(bw_mbps: float, delay_ms: float, cc: str) -> None:
    spec = single_path(delay_ms=delay_ms, bw_mbps=bw_mbps)
    run = bulk(spec, size=2_000_000, seed=15, tcp_config=TcpConfig(congestion_control=cc))
    assert run.result.ok
    goodput = run.result.goodput_mbps
    # at most the link rate less the 52 bytes of headers per 1500-byte packet, and most of it
    assert goodput <= bw_mbps * 1448 / 1500
    assert goodput > 0.8 * bw_mbps


def test_serialization_time() -> None:
    """A 1500-byte packet at 1 Mbit/s takes 12 ms per hop."""
    spec = single_path(delay_ms=0.0, bw_mbps=1.0)
    run = bulk(spec, size=3 * 1448, seed=16)
    assert run.result.ok

    def first_per_seq(records: list[TraceRecord]) -> list[TraceRecord]:
        firsts: dict[int, TraceRecord] = {}
        for r in records:
            if r.data["len"] == 1448:
                firsts.setdefault(r.data["seq"], r)
        return sorted(firsts.values(), key=lambda r: r.t)

    # (a tail loss probe may resend the last one: only first transmissions count)
    sent = first_per_seq(run.records(node="h1", name="segment_sent"))
    got = first_per_seq(run.records(node="h2", name="segment_received"))
    assert len(sent) == len(got) == 3
    # the first waits behind the 52-byte third ACK of the handshake, then crosses two hops
    assert got[0].t - sent[0].t == pytest.approx((52 + 2 * 1500) * 8 / 1e6)
    # back to back, they leave the bottleneck one serialization time apart
    assert got[1].t - got[0].t == pytest.approx(1500 * 8 / 1e6)
    assert got[2].t - got[1].t == pytest.approx(1500 * 8 / 1e6)


def test_drop_tail_queue() -> None:
    spec = single_path(delay_ms=20.0, bw_mbps=10.0, queue_packets=5)
    run = bulk(spec, size=500_000, seed=17)
    assert run.result.ok
    full = [r for r in run.records(name="segment_dropped", layer="link") if r.data["reason"] == "queue full"]
    assert full
    assert {r.data["link"] for r in full} <= {"h1-r1", "r1-h2"}
    assert run.net.links["h1-r1"].directions[0].dropped >= len([r for r in full if r.data["from"] == "h1-eth0"])


def test_large_queue_no_drops_with_small_window() -> None:
    spec = single_path(delay_ms=20.0, bw_mbps=10.0, queue_packets=1000)
    run = bulk(spec, size=300_000, seed=18, tcp_config=TcpConfig(receive_buffer_bytes=32_768))
    assert run.result.ok
    assert run.records(name="segment_dropped", layer="link") == []


def test_random_loss_rate() -> None:
    spec = single_path(delay_ms=5.0, bw_mbps=50.0, loss_pct=10.0)
    run = bulk(spec, size=500_000, seed=19)
    assert run.result.ok
    sent = sum(d.sent_packets for link in run.net.links.values() for d in link.directions)
    lost = len([r for r in run.records(name="segment_dropped", layer="link") if r.data["reason"] == "random loss"])
    # 10 % end to end, split over two links
    assert lost / sent == pytest.approx(1 - 0.9**0.5, abs=0.02)


# --- other applications and address families


def test_echo() -> None:
    spec = single_path(delay_ms=10.0)
    net = SimNetwork.build(spec, seed=20)
    data = bulk_payload(100_000, 21)
    net.host("h2").listen(7, EchoServer)
    client = EchoClient(data)
    net.host("h1").connect(spec.addresses_of("h2")[0], 7, client)
    net.run(until=30.0, stop=lambda: client.done)
    assert client.done and client.error is None
    assert bytes(client.echoed) == data


def test_ipv6_transfer() -> None:
    spec = two_paths(loss_pct=1.0)
    run = bulk(spec, size=300_000, seed=22, dst_addr=spec.addresses_of("h2", family=6)[0])
    assert run.result.ok, run.result.to_dict()
    conns = {r.data["conn"] for r in run.records(node="h1", name="segment_sent")}
    assert all("[fd00:" in c for c in conns)


def test_two_transfers_share_a_bottleneck() -> None:
    spec = single_path(delay_ms=10.0, bw_mbps=10.0)
    tracer = MemoryTracer()
    net = SimNetwork.build(spec, seed=23, tracer=tracer)
    results = []
    for i, port in enumerate((6001, 6002)):
        data = bulk_payload(500_000, 30 + i)
        result = TransferResult(f"bulk{i}", len(data), hashlib.sha256(data).hexdigest())
        net.host("h2").listen(port, lambda r=result: BulkSink(r))
        BulkSender(result, data).start(net.host("h1"), spec.addresses_of("h2")[0], port)
        results.append(result)
    net.run(until=120.0, stop=lambda: all(r.complete for r in results))
    assert all(r.ok for r in results)
    total = sum(r.bytes_received for r in results) * 8 / max(r.completed_at for r in results) / 1e6
    assert total <= 10.0


def test_source_based_route_on_a_router() -> None:
    """Two routers in a row with two parallel links between them: a source route
    sends h1's traffic over the second link, everything else uses the first."""
    from lab.topology import TopologyBuilder

    t = TopologyBuilder("parallel")
    h1, h2, ra, rb = t.host("h1"), t.host("h2"), t.router("ra"), t.router("rb")
    t.link(h1, ra, delay_ms=1)
    t.link(ra, rb, delay_ms=1)  # ra-eth1
    t.link(ra, rb, delay_ms=5)  # ra-eth2, the slow one
    t.link(rb, h2, delay_ms=1)
    t.route("ra", "10.0.4.2", "ra-eth2", src="10.0.1.1")
    spec = t.build()
    run = bulk(spec, size=200_000, seed=21)
    assert run.result.ok
    links = run.net.links
    a_to_b_fast = next(d for d in links["ra-rb"].directions if d.src_iface.name == "ra-eth1")
    a_to_b_slow = next(d for d in links["ra-rb#3"].directions if d.src_iface.name == "ra-eth2")
    assert a_to_b_slow.sent_packets > 100
    assert a_to_b_fast.sent_packets == 0


def test_route_with_a_bad_address_is_rejected() -> None:
    from lab.errors import ConfigError
    from lab.topology import TopologyBuilder

    t = TopologyBuilder("bad")
    t.router("r1")
    with pytest.raises(ConfigError, match="not an IP address"):
        t.route("r1", "10.0.0.300", "r1-eth0")


# --- reserved client ports


def test_a_reserved_port_is_never_allocated_and_a_bad_one_is_refused() -> None:
    net = SimNetwork.build(single_path(), seed=1, tracer=MemoryTracer())
    h1 = net.host("h1")
    h1._next_port = 45000
    h1.reserve_port(45000)
    h1.reserve_port(45001)
    assert h1._alloc_port() == 45002
    with pytest.raises(ConfigError, match="1..65535"):
        h1.reserve_port(70000)


def test_check_merged_is_the_cross_end_verdict_of_eno_workloads() -> None:
    from lab.scenario.eno import EncryptedTransfer, SimultaneousOpenTransfer

    agreed = {
        "expect": "encrypted",
        "client_outcome": "encrypted",
        "server_outcome": "encrypted",
        "corrupted_bytes_delivered": 0,
        "client_session_id": "ab",
        "server_session_id": "ab",
    }
    for workload in (EncryptedTransfer(), SimultaneousOpenTransfer()):
        result = TransferResult(workload.name, 1, "00")
        result.extra = dict(agreed)
        assert workload.check_merged(result) is None
        result.extra["server_session_id"] = "cd"
        assert "session" in (workload.check_merged(result) or "")
