"""IPv4 fragmentation (RFC 791): hosts fragment UDP larger than the MTU, routers fragment or drop,
receivers reassemble within limits, and the fragment- and size-dropping middleboxes."""

from __future__ import annotations

import random
import tracemalloc
from dataclasses import replace

import pytest

from lab.errors import ConfigError
from lab.scenario.middlebox import BlockUdpPorts, DropIpFragments, DropLargeUdp, SourceNat
from lab.sim import SimNetwork
from lab.stack.host import DatagramHandler, HostStack
from lab.stack.ipfrag import FLAG_MF, FragmentLimits, Ipv4Reassembler, fragment_ipv4, is_fragment
from lab.topology import build_topology
from lab.trace import MemoryTracer
from lab.wire.checksum import internet_checksum, pack_address
from lab.wire.ip import Ipv4Packet, decode_ipv4, encode_ipv4
from lab.wire.udp import UDP_PROTOCOL, UdpDatagram, encode_datagram
from topologies import TOPOLOGIES


def _datagram(size: int, *, ident: int = 7, flags: int = 0, seed: int = 1) -> tuple[bytes, bytes]:
    payload = random.Random(seed).randbytes(size)
    return encode_ipv4(
        Ipv4Packet("10.0.1.1", "10.0.2.2", UDP_PROTOCOL, payload, identification=ident, flags=flags >> 13)
    ), payload


def test_fragments_fit_the_mtu_carry_8_octet_offsets_and_rebuild_the_datagram() -> None:
    whole, payload = _datagram(4000)
    frags = fragment_ipv4(whole, 1500)
    assert [len(f) for f in frags] == [1500, 1500, 1060]  # 1480 data octets each (a multiple of 8), 1040 left
    decoded = [decode_ipv4(f) for f in frags]  # header checksums verified
    assert [(p.fragment_offset * 8, bool(p.flags & 1)) for p in decoded] == [(0, True), (1480, True), (2960, False)]
    assert b"".join(p.payload for p in decoded) == payload
    assert all(is_fragment(f) for f in frags) and not is_fragment(whole)
    got = []
    r = Ipv4Reassembler(on_drop=lambda *a: got.append(a))
    assert r.add(frags[2], 0.0) is None and r.add(frags[0], 0.0) is None  # any order
    rebuilt = r.add(frags[1], 0.0)
    assert rebuilt == whole and got == [] and len(r) == 0 and r.held == 0


def test_fragmenting_a_fragment_keeps_its_offset_and_more_flag() -> None:
    whole, payload = _datagram(3000)
    first, second = fragment_ipv4(whole, 1500)[0], fragment_ipv4(whole, 1500)[1]
    smaller = fragment_ipv4(first, 600)
    parts = [decode_ipv4(f) for f in smaller]
    assert all(p.flags & 1 for p in parts)  # the original first fragment had MF: every piece keeps it
    r = Ipv4Reassembler(on_drop=lambda *a: None)
    out = None
    for f in [*smaller, *fragment_ipv4(second, 600), fragment_ipv4(whole, 1500)[2]]:
        out = r.add(f, 0.0) or out
    assert out is not None and decode_ipv4(out).payload == payload


def test_an_mtu_too_small_for_8_octets_is_a_clear_error() -> None:
    whole, _ = _datagram(100)
    with pytest.raises(ValueError, match="cannot carry"):
        fragment_ipv4(whole, 27)


def _reassembler(**limits: object) -> tuple[Ipv4Reassembler, list[tuple[str, dict]]]:
    drops: list[tuple[str, dict]] = []
    return Ipv4Reassembler(FragmentLimits(**limits), on_drop=lambda r, d: drops.append((r, d))), drops


def test_overlapping_fragments_drop_the_whole_datagram_and_exact_duplicates_are_ignored() -> None:
    whole, _ = _datagram(3000)
    a, b, c = fragment_ipv4(whole, 1500)
    r, drops = _reassembler()
    assert r.add(a, 0.0) is None and r.add(a, 0.0) is None  # a duplicate: ignored
    assert drops == []
    # a forged fragment overlapping a's data (offset 1472 < 1480) with other bytes
    forged = bytearray(b)
    forged[6:8] = (FLAG_MF | (1472 // 8)).to_bytes(2, "big")
    forged[10:12] = b"\0\0"
    forged[10:12] = internet_checksum(bytes(forged[:20])).to_bytes(2, "big")
    assert r.add(bytes(forged), 0.0) is None
    assert [d[0] for d in drops] == ["overlapping fragments"] and len(r) == 0 and r.held == 0
    assert r.add(c, 0.0) is None and r.add(b, 0.0) is None  # a's data went with the datagram: no completion
    assert len(r) == 1


def test_limits_timeout_and_bad_lengths_are_recorded_drops() -> None:
    r, drops = _reassembler(max_fragments=2, timeout_s=5.0)
    whole, _ = _datagram(4000)
    f1, f2, f3 = fragment_ipv4(whole, 1500)
    r.add(f1, 0.0)
    r.add(f2, 0.0)
    assert r.add(f3, 0.0) is None
    assert drops[-1][0] == "too many fragments"
    r.add(f1, 1.0)
    assert r.next_expiry() == 6.0
    r.expire(6.0)
    assert drops[-1][0] == "reassembly timeout" and drops[-1][1]["octets"] == 1480 and len(r) == 0
    odd = bytearray(f1[:20] + f1[20:33])  # MF with 13 data octets
    odd[2:4] = (33).to_bytes(2, "big")
    r.add(bytes(odd), 7.0)
    assert drops[-1][0] == "fragment length not a multiple of 8"


def test_a_flood_of_fragments_holds_bounded_memory() -> None:
    """20,000 first fragments of distinct datagrams that never complete: the limits hold."""
    reasons: set[str] = set()
    r = Ipv4Reassembler(
        FragmentLimits(max_datagrams=64, max_bytes=256 * 1024), on_drop=lambda why, _d: reasons.add(why)
    )
    whole, _ = _datagram(3000, seed=0)
    template = bytearray(fragment_ipv4(whole, 1500)[0])
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for n in range(20_000):
        template[4:6] = (n & 0xFFFF).to_bytes(2, "big")
        template[12:16] = (0x0A000000 + n).to_bytes(4, "big")
        template[10:12] = b"\0\0"
        template[10:12] = internet_checksum(bytes(template[:20])).to_bytes(2, "big")
        r.add(bytes(template), n * 2e-3)  # 40 s in all: the oldest time out meanwhile
    grown = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(r) <= 64 and r.held <= 256 * 1024
    assert grown < 2 * 1024 * 1024, grown
    assert reasons == {"too many datagrams in reassembly", "reassembly timeout"}


def test_fragment_limits_reject_bad_values() -> None:
    with pytest.raises(ConfigError, match="max_bytes"):
        FragmentLimits(max_bytes=0)
    with pytest.raises(ConfigError, match="timeout_s"):
        FragmentLimits(timeout_s=-1)


# --- in the simulated network


class _Collect(DatagramHandler):
    def __init__(self) -> None:
        self.got: list[bytes] = []

    def datagram_received(self, host: HostStack, data: bytes, src, dst) -> None:
        self.got.append(data)


def _net(*boxes: object, seed: int = 3, **params: object) -> tuple[SimNetwork, MemoryTracer, _Collect]:
    spec = build_topology("single-path", TOPOLOGIES["single-path"], **params)
    tracer = MemoryTracer()
    net = SimNetwork.build(spec, seed=seed, tracer=tracer)
    for box in boxes:
        net.add_middlebox("r1", box)
    sink = _Collect()
    net.host("h2").bind_udp(4500, sink)
    return net, tracer, sink


def _udp(data: bytes) -> bytes:
    src, dst = pack_address("10.0.1.1"), pack_address("10.0.2.2")
    return encode_datagram(UdpDatagram(4500, 4500, data), src, dst)


def _send(net: SimNetwork, data: bytes, *, sport: int = 4500) -> None:
    src, dst = net.spec.addresses_of("h1")[0], net.spec.addresses_of("h2")[0]
    net.host("h1").send_datagram(data, src=(src, sport), dst=(dst, 4500))


def test_a_large_udp_datagram_crosses_the_network_as_fragments_byte_exact() -> None:
    net, tracer, sink = _net()
    data = random.Random(5).randbytes(5000)
    _send(net, data)
    _send(net, b"small")
    net.run(until=1.0)
    assert sink.got == [data, b"small"]
    (sent,) = [r.data for r in tracer.select(node="h1", layer="ip", name="segment_sent")]
    assert (sent["fragments"], sent["mtu"], sent["len"]) == (4, 1500, 5028)
    (done,) = [r.data for r in tracer.select(node="h2", layer="ip", name="segment_received")]
    assert done["event"] == "reassembled" and done["len"] == 5028


def test_drop_ip_fragments_stops_the_large_datagram_and_passes_the_small_one() -> None:
    net, tracer, sink = _net(DropIpFragments())
    _send(net, bytes(3000))
    _send(net, b"small")
    net.run(until=40.0)
    assert sink.got == [b"small"]
    drops = [r.data for r in tracer.select(layer="middlebox", name="segment_dropped")]
    assert [(d["offset"], d["more"]) for d in drops] == [(0, True), (1480, True), (2960, False)]
    assert all(d["reason"] == "IP fragment dropped" and d["policy"] == "drop_ip_fragments" for d in drops)


def test_drop_large_udp_measures_the_whole_datagram_from_its_first_fragment() -> None:
    net, tracer, sink = _net(DropLargeUdp(1280))
    _send(net, bytes(1252))  # 1280-byte IP packet: passes
    _send(net, bytes(1253))  # one byte over
    _send(net, bytes(3000))  # fragmented: its first fragment names 3028 bytes
    net.run(until=40.0)
    assert sink.got == [bytes(1252)]
    drops = [r.data for r in tracer.select(layer="middlebox", name="segment_dropped")]
    assert [d["size"] for d in drops] == [1281, 3028]
    timeouts = [r.data for r in tracer.select(node="h2", layer="ip", name="segment_dropped")]
    assert [d["reason"] for d in timeouts] == ["reassembly timeout"]  # the later fragments waited 30 s for the first
    with pytest.raises(ConfigError, match="max_bytes"):
        DropLargeUdp(10)


def test_port_filters_read_ports_only_from_first_fragments() -> None:
    net, tracer, sink = _net(BlockUdpPorts([9]))  # the later fragments' payload would read as ports 0
    data = bytes(3000)
    _send(net, data)
    net.run(until=1.0)
    assert sink.got == [data]
    assert tracer.select(layer="middlebox") == []


def test_a_router_fragments_for_a_smaller_link_and_drops_when_df_is_set() -> None:
    spec = build_topology("single-path", TOPOLOGIES["single-path"])
    second = next(name for name, link in spec.links.items() if "h2" in (link.a, link.b))
    spec.links[second] = replace(spec.links[second], mtu_bytes=1280)
    tracer = MemoryTracer()
    net = SimNetwork.build(spec, seed=1, tracer=tracer)
    sink = _Collect()
    net.host("h2").bind_udp(4500, sink)
    r1 = net.router("r1")
    fits_h1 = random.Random(2).randbytes(1400)  # fits h1's 1500-byte link whole, not r1's 1280-byte one
    # h1 sends it with DF, as Linux does for a UDP socket's datagram that fits the path it knows: r1 drops it
    # (a real router would answer ICMP "fragmentation needed"; not modelled, the drop is recorded)
    _send(net, fits_h1)
    without_df = encode_ipv4(Ipv4Packet("10.0.1.1", "10.0.2.2", UDP_PROTOCOL, _udp(fits_h1), identification=9, flags=0))
    r1.receive(r1.interfaces["r1-eth0"], without_df)  # the same datagram without DF: r1 fragments it
    net.run(until=1.0)
    assert sink.got == [fits_h1]
    (frag,) = [r.data for r in tracer.select(node="r1", layer="ip", name="segment_sent")]
    assert (frag["fragments"], frag["mtu"]) == (2, 1280)
    (drop,) = [r.data for r in tracer.select(node="r1", layer="ip", name="segment_dropped")]
    assert drop["reason"] == "larger than the 1280-byte MTU of r1-eth1 and may not be fragmented"


def test_source_nat_reassembles_translates_and_the_router_fragments_again() -> None:
    net, tracer, sink = _net(SourceNat(inside="r1-eth0", public_address="10.0.2.1"))
    data = random.Random(9).randbytes(4000)
    _send(net, data)
    net.run(until=1.0)
    assert sink.got == [data]
    assert [r.data["fragments"] for r in tracer.select(node="r1", layer="ip", name="segment_sent")] == [3]


# --- IPv6 (RFC 8200 §4.5): only the source fragments, with a Fragment header


def _v6_datagram(size: int, seed: int = 3) -> tuple[bytes, bytes]:
    from lab.wire.ip import Ipv6Packet, encode_ipv6

    payload = random.Random(seed).randbytes(size)
    return encode_ipv6(Ipv6Packet("fd00:1::1", "fd00:2::2", UDP_PROTOCOL, payload)), payload


def test_ipv6_fragments_carry_a_fragment_header_and_rebuild_the_packet() -> None:
    from lab.stack.ipfrag import Ipv6Reassembler, fragment_ipv6

    whole, _payload = _v6_datagram(3000)
    frags = fragment_ipv6(whole, 1280, 0x01020304)
    assert [len(f) for f in frags] == [1280, 1280, 40 + 8 + 3000 - 2 * 1232]
    for f, offset in zip(frags, (0, 1232, 2464), strict=True):
        assert f[6] == 44 and f[40] == UDP_PROTOCOL and f[44:48] == bytes((1, 2, 3, 4))
        word = int.from_bytes(f[42:44], "big")
        assert word & 0xFFF8 == offset and bool(word & 1) == (offset != 2464)
        assert int.from_bytes(f[4:6], "big") == len(f) - 40
    drops: list[str] = []
    r = Ipv6Reassembler(on_drop=lambda why, _d: drops.append(why))
    assert r.add(frags[1], 0.0) is None and r.add(frags[2], 0.0) is None
    assert r.add(frags[0], 0.0) == whole and drops == [] and r.held == 0
    # an overlapping forged fragment drops the datagram (RFC 5722)
    forged = bytearray(frags[1])
    forged[42:44] = (1224 | 1).to_bytes(2, "big")
    assert r.add(frags[0], 1.0) is None and r.add(bytes(forged), 1.0) is None
    assert drops == ["overlapping fragments"] and len(r) == 0


def test_a_large_udp_datagram_crosses_an_ipv6_path_as_fragments_byte_exact() -> None:
    net, tracer, sink = _net()
    src, dst = net.spec.addresses_of("h1", family=6)[0], net.spec.addresses_of("h2", family=6)[0]
    data = random.Random(8).randbytes(4000)
    net.host("h1").send_datagram(data, src=(src, 4500), dst=(dst, 4500))
    net.run(until=1.0)
    assert sink.got == [data]
    (sent,) = [r.data for r in tracer.select(node="h1", layer="ip", name="segment_sent")]
    assert (sent["fragments"], sent["len"]) == (3, 40 + 8 + 4000)
    assert [r.data["event"] for r in tracer.select(node="h2", layer="ip", name="segment_received")] == ["reassembled"]


def test_drop_ip_fragments_drops_ipv6_fragments_too() -> None:
    net, tracer, sink = _net(DropIpFragments())
    src, dst = net.spec.addresses_of("h1", family=6)[0], net.spec.addresses_of("h2", family=6)[0]
    net.host("h1").send_datagram(bytes(3000), src=(src, 4500), dst=(dst, 4500))
    net.run(until=70.0)
    assert sink.got == []
    drops = [r.data for r in tracer.select(layer="middlebox", name="segment_dropped")]
    assert [(d["offset"], d["more"], d["protocol"]) for d in drops] == [
        (0, True, 17),
        (1448, True, 17),
        (2896, False, 17),
    ]
    timeouts = [r.data["reason"] for r in tracer.select(node="h2", layer="ip", name="segment_dropped")]
    assert timeouts == []  # nothing reached h2 to wait for


def test_drop_large_udp_reads_an_ipv6_first_fragment() -> None:
    net, tracer, sink = _net(DropLargeUdp(1280))
    src, dst = net.spec.addresses_of("h1", family=6)[0], net.spec.addresses_of("h2", family=6)[0]
    net.host("h1").send_datagram(bytes(3000), src=(src, 4500), dst=(dst, 4500))
    net.host("h1").send_datagram(bytes(1000), src=(src, 4500), dst=(dst, 4500))
    net.run(until=70.0)
    assert sink.got == [bytes(1000)]
    (drop,) = [r.data for r in tracer.select(layer="middlebox", name="segment_dropped")]
    assert drop["size"] == 40 + 8 + 3000
    timeouts = [r.data["reason"] for r in tracer.select(node="h2", layer="ip", name="segment_dropped")]
    assert timeouts == ["reassembly timeout"]  # the later fragments waited RFC 8200's 60 s for the first


def test_tcp_over_a_small_mtu_link_announces_an_mss_that_fits_and_its_segments_arrive() -> None:
    """A host on a 1280-byte link announces MSS 1240 (RFC 9293 §3.7.1), so TCP's segments, sent with DF,
    fit every link; without it r1 would drop every full-sized segment."""
    from tests.sim.test_sim import finish, start_bulk

    spec = build_topology("single-path", TOPOLOGIES["single-path"])
    spec.links = {name: replace(link, mtu_bytes=1280) for name, link in spec.links.items()}
    run = finish(start_bulk(spec, size=200_000, seed=4), until=30.0)
    assert run.result.ok and run.result.bytes_received == len(run.data)
    sizes = {r.data["len"] for r in run.records(node="h1", layer="tcp", name="segment_sent")}
    assert max(sizes) <= 1240 - 12  # the timestamps option takes 12 of the 1240
    assert not run.records(layer="ip", name="segment_dropped")
