"""SourceNat (NAPT) and BlockTcpPorts in the simulator: rewriting with valid checksums, mappings, replies, drops."""

from __future__ import annotations

import pytest

from lab.errors import ConfigError
from lab.scenario import Scenario, Transfer, run_scenario
from lab.scenario.middlebox import BlockAllUdp, BlockTcpPorts, SourceNat
from lab.sim.network import SimNetwork
from lab.stack.host import DatagramHandler, HostStack
from lab.topology import build_topology
from lab.trace import MemoryTracer
from lab.wire.checksum import pack_address, transport_checksum_ok
from lab.wire.ip import Ipv4Packet, decode_ipv4, encode_ipv4
from lab.wire.udp import UDP_PROTOCOL, UdpDatagram, decode_datagram, encode_datagram
from topologies.single_path import single_path

PUBLIC = "10.0.2.1"


def network(*boxes: object) -> tuple[SimNetwork, MemoryTracer]:
    tracer = MemoryTracer()
    net = SimNetwork.build(build_topology("single-path", single_path), seed=3, tracer=tracer)
    for box in boxes:
        net.add_middlebox("r1", box)
    return net, tracer


class Collect(DatagramHandler):
    def __init__(self) -> None:
        self.seen: list[tuple[bytes, tuple[str, int]]] = []

    def datagram_received(self, host: HostStack, data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> None:
        self.seen.append((data, src))


class Echo(Collect):
    def datagram_received(self, host: HostStack, data: bytes, src: tuple[str, int], dst: tuple[str, int]) -> None:
        super().datagram_received(host, data, src, dst)
        host.send_datagram(data.upper(), src=dst, dst=src)


def test_udp_through_the_nat_and_back() -> None:
    nat = SourceNat(inside="r1-eth0", public_address=PUBLIC)
    net, tracer = network(nat)
    h1, h2 = net.host("h1"), net.host("h2")
    server, client = Echo(), Collect()
    h2.bind_udp(500, server)
    h1.bind_udp(500, client)
    h1.send_datagram(b"hello", src=("10.0.1.1", 500), dst=("10.0.2.2", 500))
    h1.send_datagram(b"again", src=("10.0.1.1", 500), dst=("10.0.2.2", 500))
    net.run(until=1.0)
    assert [(d, s) for d, s in server.seen] == [(b"hello", (PUBLIC, 20000)), (b"again", (PUBLIC, 20000))]  # one mapping
    assert [d for d, _ in client.seen] == [b"HELLO", b"AGAIN"]  # replies mapped back to 10.0.1.1:500
    assert nat.mappings == {(UDP_PROTOCOL, "10.0.1.1", 500): 20000}
    created = [r.data for r in tracer.select(layer="middlebox", name="state_updated") if "mapping" in r.data]
    assert created == [
        {
            "mapping": "created",
            "protocol": "udp",
            "inside": "10.0.1.1:500",
            "public": f"{PUBLIC}:20000",
            "policy": "source_nat",
        }
    ]


def test_rewritten_packets_have_valid_checksums() -> None:
    nat = SourceNat(inside="r1-eth0", public_address=PUBLIC)
    src, dst = pack_address("10.0.1.1"), pack_address("10.0.2.2")
    udp = encode_datagram(UdpDatagram(4500, 4500, b"payload"), src, dst)
    packet = encode_ipv4(Ipv4Packet("10.0.1.1", "10.0.2.2", UDP_PROTOCOL, udp))
    out = nat.process(packet, now=0.0, ingress="r1-eth0", egress="r1-eth1", tracer=MemoryTracer())
    ip = decode_ipv4(out)  # verifies the header checksum
    assert ip.src == PUBLIC
    dgram = decode_datagram(ip.payload, pack_address(ip.src), pack_address(ip.dst))  # verifies the UDP checksum
    assert dgram.src_port == 20000 and dgram.payload == b"payload"
    reply = encode_ipv4(
        Ipv4Packet(
            "10.0.2.2", PUBLIC, UDP_PROTOCOL, encode_datagram(UdpDatagram(4500, 20000, b"r"), dst, pack_address(PUBLIC))
        )
    )
    back = decode_ipv4(nat.prerouting(reply, now=0.0, ingress="r1-eth1", tracer=MemoryTracer()))
    assert back.dst == "10.0.1.1" and transport_checksum_ok(
        pack_address(back.src), pack_address(back.dst), UDP_PROTOCOL, back.payload
    )
    assert decode_datagram(back.payload).dst_port == 4500


def test_unsolicited_packets_to_the_public_address_are_dropped() -> None:
    nat = SourceNat(inside="r1-eth0", public_address=PUBLIC)
    net, tracer = network(nat)
    h1, h2 = net.host("h1"), net.host("h2")
    client = Collect()
    h1.bind_udp(500, client)
    h2.send_datagram(b"probe", src=("10.0.2.2", 500), dst=(PUBLIC, 20000))
    net.run(until=1.0)
    assert client.seen == []
    assert [r.data["reason"] for r in tracer.select(layer="middlebox", name="segment_dropped")] == ["NAT: no mapping"]


def test_tcp_transfer_through_the_nat_is_byte_exact() -> None:
    scenario = Scenario(
        name="nat-tcp",
        description="test",
        topology="single-path",
        middleboxes=(("r1", lambda: SourceNat(inside="r1-eth0", public_address=PUBLIC)),),
        transfers=(Transfer(size_bytes=200_000),),
        time_limit_s=30.0,
    )
    result = run_scenario(scenario, seed=2)
    assert result.ok
    conns = result.network.host("h2").connections()
    assert all(c.addr.remote_addr == PUBLIC for c in conns)


def test_block_tcp_ports_drops_only_those_ports() -> None:
    blocked = Scenario(
        name="blocked",
        description="test",
        topology="single-path",
        middleboxes=(("r1", lambda: BlockTcpPorts([5001])),),
        transfers=(Transfer(size_bytes=1000, port=5001),),
        time_limit_s=5.0,
    )
    assert not run_scenario(blocked, seed=1).ok
    other = Scenario(
        name="other",
        description="test",
        topology="single-path",
        middleboxes=(("r1", lambda: BlockTcpPorts([4500])),),
        transfers=(Transfer(size_bytes=1000, port=5001),),
        time_limit_s=5.0,
    )
    assert run_scenario(other, seed=1).ok


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError):
        SourceNat(inside="r1-eth0", public_address="fd00::1")
    with pytest.raises(ConfigError):
        SourceNat(inside="r1-eth0", public_address="not-an-address")
    with pytest.raises(ConfigError):
        BlockTcpPorts([70000])


def test_block_all_udp() -> None:
    box = BlockAllUdp()
    assert box.describe() == {"policy": "block_udp", "ports": "all"}
    for port in (1, 53, 500, 4500, 65535):
        udp = encode_datagram(UdpDatagram(port, port, b"x"), pack_address("10.0.1.1"), pack_address("10.0.2.2"))
        packet = encode_ipv4(Ipv4Packet("10.0.1.1", "10.0.2.2", UDP_PROTOCOL, udp))
        assert box.process(packet, now=0.0, ingress="r1-eth0", egress="r1-eth1", tracer=MemoryTracer()) is None
