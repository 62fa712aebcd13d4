"""MPTCP over IPv6 end to end: MP_CAPABLE, ADD_ADDR of an IPv6 address, MP_JOIN, data on both subflows.

An IPv6 ADD_ADDR takes 28 bytes (20 as an echo): with the timestamps on a pure ACK
there is no room left for the Data ACK, so it goes out alone, as Linux sends it
(``captures/mptcp_v1_ipv6_addaddr.pcap``).
"""

from __future__ import annotations

import ipaddress

from lab.mptcp import crypto
from lab.mptcp.config import MptcpConfig
from lab.mptcp.events import AddressAnnounced, SubflowEstablished
from lab.scenario import Scenario, run_scenario
from lab.scenario.middlebox import Middlebox
from lab.scenario.mptcp import MptcpTransfer
from lab.tcp.addresses import FourTuple
from lab.trace import MemoryTracer, Tracer
from lab.wire import mptcp as w
from lab.wire.tcp import UnknownOption, decode_segment
from tests.mptcp.pair import MptcpPair, rewrite_mptcp
from tests.mptcp.test_captures import load

CAPTURE = "mptcp_v1_ipv6_addaddr.pcap"
MIB = 1024 * 1024


def _mptcp(seg: bytes) -> list[w.MptcpOption]:
    s = decode_segment(seg)
    return [w.from_tcp_option(o) for o in s.options if isinstance(o, UnknownOption) and o.kind == w.MPTCP_KIND]


def _v6_pair(client: MptcpConfig, server: MptcpConfig) -> MptcpPair:
    pair = MptcpPair(client, server)
    pair.client.local_addresses = ["2001:db8:1::1", "2001:db8:2::1"]
    pair.server.local_addresses = ["2001:db8:1::2", "2001:db8:2::2"]
    return pair


def test_our_client_takes_linux_ipv6_add_addr_echoes_the_20_byte_form_and_joins_over_ipv6() -> None:
    cap = load(CAPTURE)
    (frame, captured), *_ = [(f, o) for f, o in cap.options(w.AddAddr) if not o.echo]
    raw = next(r for r, o in frame.mptcp if o is captured)
    captured_echo = next(r for f, o in cap.options(w.AddAddr) if o.echo for r, oo in f.mptcp if oo is o)
    assert len(raw.data) + 2 == 28 and len(captured_echo.data) + 2 == 20
    pair = _v6_pair(MptcpConfig(path_manager="fullmesh"), MptcpConfig(path_manager="none", announce=False))
    for ep, key in ((pair.client, cap.keys.client), (pair.server, cap.keys.server)):
        ep.local_key, ep.local_token, ep.local_idsn = key, crypto.key_token(key), crypto.key_idsn(key)
    pair.client.connect(FourTuple("2001:db8:1::1", 41408, "2001:db8:1::2", 5001), now=0.0)
    pair.exchange(now=0.0)
    assert pair.client.remote_key == cap.keys.server and pair.server.established
    injected = []

    def swap(direction: str, a: FourTuple, seg: bytes) -> bytes | None:
        if direction == "s2c" and not injected and not decode_segment(seg).payload:
            injected.append(a)
            first: list = []
            return rewrite_mptcp(seg, a, lambda o: None if first else first.append(o) or raw)
        return seg

    pair.tamper = swap
    pair.client.send(b"hello")  # the server's Data ACK comes back on a pure ACK: that one carries the ADD_ADDR
    pair.run(now=0.0, until=0.5)
    assert injected
    assert pair.of("client", AddressAnnounced) == [AddressAnnounced(address_id=1, address="2001:db8:2::2", port=None)]
    sent_echo = w.AddAddr(address_id=1, address="2001:db8:2::2")
    assert w.to_tcp_option(sent_echo) == captured_echo
    echoed = [
        o
        for r in pair.records("client", "segment_sent")
        for o in r.data["mptcp"]
        if o["subtype"] == "ADD_ADDR" and o["truncated_hmac"] is None
    ]
    assert echoed == [
        {
            "subtype": "ADD_ADDR",
            "address_id": 1,
            "address": "2001:db8:2::2",
            "port": None,
            "truncated_hmac": None,
            "reserved": 0,
        }
    ]
    joins = {(e.addr.local_addr, e.addr.remote_addr) for e in pair.of("client", SubflowEstablished)}
    assert ("2001:db8:2::1", "2001:db8:2::2") in joins


def test_ipv6_add_addr_goes_alone_on_a_pure_ack_with_its_hmac_and_is_echoed() -> None:
    pair = _v6_pair(MptcpConfig(path_manager="paired"), MptcpConfig(path_manager="paired"))
    sent: list[tuple[str, bytes]] = []

    def watch(direction: str, a: FourTuple, seg: bytes) -> bytes:
        sent.append((direction, seg))
        return seg

    pair.tamper = watch
    pair.client.connect(FourTuple("2001:db8:1::1", 40001, "2001:db8:1::2", 5001), now=0.0)
    pair.exchange(now=0.0)
    pair.run(now=0.0, until=1.0)
    adds = [(d, opts) for d, seg in sent for opts in [_mptcp(seg)] if any(isinstance(o, w.AddAddr) for o in opts)]
    announce = [(d, opts) for d, opts in adds if d == "s2c" and not opts[0].echo]
    assert announce and all(len(opts) == 1 for _d, opts in announce)  # the 28-byte form, alone
    (opt,) = announce[0][1]
    assert len(w.push_mptcp_option(opt)) + 2 == 28 and opt.address == "2001:db8:2::2"
    assert opt.truncated_hmac == crypto.add_addr_hmac(
        pair.server.local_key, pair.client.local_key, 1, opt.address, None
    )
    echoes = [o for d, opts in adds if d == "c2s" for o in opts if isinstance(o, w.AddAddr) and o.echo]
    assert echoes and len(w.push_mptcp_option(echoes[0])) + 2 == 20
    assert pair.server._announce == []
    joined = [e.addr for e in pair.of("client", SubflowEstablished)]
    assert [(a.local_addr, a.remote_addr) for a in joined] == [
        ("2001:db8:1::1", "2001:db8:1::2"),
        ("2001:db8:2::1", "2001:db8:2::2"),
    ]
    # after the lone ADD_ADDRs and echoes, the Data ACK follows on that subflow (at once, unasked)
    lone = [i for i, (_d, seg) in enumerate(sent) if [type(o) for o in _mptcp(seg)] == [w.AddAddr]]
    assert lone
    for i in lone:
        direction, seg = sent[i]
        port = decode_segment(seg).src_port
        later = [s for d, s in sent[i + 1 :] if d == direction and decode_segment(s).src_port == port]
        assert any(isinstance(o, w.Dss) and o.data_ack is not None for s in later for o in _mptcp(s))


class _LargestPacket(Middlebox):
    """Notes the largest packet forwarded (the simulator's links do not enforce the MTU)."""

    name = "largest_packet"
    largest: dict[str, int] = {}

    def process(self, packet: bytes, *, now: float, ingress: str, egress: str, tracer: Tracer) -> bytes | None:
        family = "ipv6" if packet[0] >> 4 == 6 else "ipv4"
        _LargestPacket.largest[family] = max(_LargestPacket.largest.get(family, 0), len(packet))
        return packet


def test_simulated_ipv6_transfer_uses_both_paths_byte_exact() -> None:
    _LargestPacket.largest = {}
    sc = Scenario(
        name="mptcp-ipv6",
        description="MPTCP over IPv6 on two-paths: MP_CAPABLE, ADD_ADDR of h2's path-B IPv6 address, MP_JOIN.",
        topology="two-paths",
        topology_params={"delay_ms": (10.0, 20.0), "bw_mbps": (10.0, 10.0), "queue_packets": 100},
        middleboxes=(("r1", _LargestPacket), ("r2", _LargestPacket)),
        transfers=(
            MptcpTransfer(
                size_bytes=3 * MIB,
                ipv6=True,
                client={"path_manager": "paired"},
                server={"path_manager": "paired"},
            ),
        ),
        time_limit_s=60.0,
    )
    result = run_scenario(sc, seed=5, pcaps=False)
    assert result.ok, result.transfers[0].to_dict()  # SHA-256 of every byte
    tracer = result.network.tracer
    assert isinstance(tracer, MemoryTracer)
    recs = [r for r in tracer.records if r.layer == "mptcp"]
    subflows = {r.data["subflow"] for r in recs if r.node == "h1" and r.data.get("to") == "ESTABLISHED"}
    assert len(subflows) == 2 and all(s.count("[") == 2 for s in subflows), subflows  # both IPv6
    carried: dict[str, int] = {}
    for r in recs:
        if r.node == "h1" and (r.name == "metrics_updated" or r.data.get("to") == "CLOSED"):
            carried[r.data["subflow"]] = max(carried.get(r.data["subflow"], 0), r.data["bytes_sent"])
    assert len([n for n in carried.values() if n > 256 * 1024]) == 2, carried
    added = [r.data["address_added"] for r in recs if r.node == "h1" and "address_added" in r.data]
    assert added == ["fd00:0:0:4::2"] and ipaddress.ip_address(added[0]).version == 6
    keys = {r.node: r.data for r in recs if r.name == "key_updated" and r.data["remote_key"]}
    assert keys["h1"]["remote_token"] == keys["h2"]["local_token"] and keys["h1"]["version"] == 1
    assert not [r for r in recs if "fallback" in r.data or r.name == "error"]
    # the subflows announced the IPv6 MSS (1500 - 40 - 20) and no packet went over the MTU
    syns = [
        r.data
        for r in tracer.records
        if r.layer == "tcp" and r.name == "segment_sent" and "S" in r.data.get("flags", "")
    ]
    assert syns and all(r["conn"].count("[") == 2 for r in syns)
    assert {o["value"] for r in syns for o in r["options"] if o["kind"] == "MSS"} == {1440}
    assert 1400 < _LargestPacket.largest["ipv6"] <= 1500 and "ipv4" not in _LargestPacket.largest
