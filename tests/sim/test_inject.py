"""lab.sim.inject and lab.mininet.inject: a hand-made packet leaves a node's interface, in the simulator and inside a Mininet host."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.mininet.inject import inject_mininet
from lab.scenario import registry
from lab.scenario.inject import packet_bytes
from lab.sim.inject import inject
from lab.sim.network import SimNetwork
from lab.topology import build_topology
from lab.trace import MemoryTracer
from lab.wire.checksum import pack_address
from lab.wire.ip import Ipv4Packet, encode_ipv4
from lab.wire.tcp import RST, TcpSegment, encode_segment
from lab.wire.udp import UDP_PROTOCOL, UdpDatagram, encode_datagram

H1, H2 = "10.0.1.1", "10.0.2.2"


def udp_packet(src: str, dst: str, dport: int, payload: bytes) -> bytes:
    datagram = encode_datagram(UdpDatagram(4242, dport, payload), pack_address(src), pack_address(dst))
    return encode_ipv4(Ipv4Packet(src, dst, UDP_PROTOCOL, datagram))


def network(name: str = "single-path", **params: object) -> tuple[SimNetwork, MemoryTracer]:
    tracer = MemoryTracer()
    spec = build_topology(name, registry.topologies()[name], **params)
    return SimNetwork.build(spec, seed=1, tracer=tracer), tracer


class Catch:
    def __init__(self) -> None:
        self.got: list[tuple[bytes, tuple[str, int]]] = []

    def datagram_received(self, host, data, src, dst) -> None:
        self.got.append((data, src))


def test_a_packet_injected_at_h1_reaches_h2_and_is_traced() -> None:
    net, tracer = network()
    catch = Catch()
    net.host("h2").bind_udp(9999, catch)
    assert inject(net, "h1", udp_packet(H1, H2, 9999, b"hello"), at=0.5) == "h1-eth0"
    net.run()
    assert catch.got == [(b"hello", (H1, 4242))]
    (rec,) = tracer.select(layer="inject")
    assert rec.t == 0.5 and rec.node == "h1" and rec.name == "segment_sent"
    assert rec.data["src"] == H1 and rec.data["dport"] == 9999 and rec.data["protocol"] == UDP_PROTOCOL


def test_a_router_injects_along_its_route() -> None:
    net, _ = network()
    catch = Catch()
    net.host("h1").bind_udp(7, catch)
    assert inject(net, "r1", udp_packet(H2, H1, 7, b"from r1")) == "r1-eth0"
    net.run()
    assert catch.got == [(b"from r1", (H2, 4242))]


def test_an_injected_rst_for_no_connection_is_traced_by_the_receiver() -> None:
    net, tracer = network()
    seg = encode_segment(TcpSegment(5001, 40000, 7, 0, RST, 0), pack_address(H2), pack_address(H1))
    inject(net, "h2", encode_ipv4(Ipv4Packet(H2, H1, 6, seg)))
    net.run()
    (rec,) = tracer.select(layer="inject")
    assert rec.data["flags"] == "R" and rec.data["seq"] == 7
    assert not tracer.select(node="h1", layer="tcp", name="segment_sent")  # a RST is never answered


def test_a_scapy_packet_is_accepted_as_it_is() -> None:
    scapy_inet = pytest.importorskip("scapy.layers.inet")
    net, _ = network()
    catch = Catch()
    net.host("h2").bind_udp(53, catch)
    inject(net, "h1", scapy_inet.IP(src=H1, dst=H2) / scapy_inet.UDP(sport=4242, dport=53) / b"q")
    net.run()
    assert catch.got == [(b"q", (H1, 4242))]


def test_bad_input_is_refused_clearly() -> None:
    net, _ = network()
    with pytest.raises(ValueError, match="not an IPv4 or IPv6 packet"):
        inject(net, "h1", b"\x00" * 40)
    with pytest.raises(ValueError, match="without Ether"):
        inject(net, "h1", b"\xff" * 14 + udp_packet(H1, H2, 1, b""))
    with pytest.raises(ValueError, match="cannot turn"):
        packet_bytes(3.5)
    with pytest.raises(ConfigError, match="no node named 'h9'"):
        inject(net, "h9", udp_packet(H1, H2, 1, b""))
    with pytest.raises(ConfigError, match="no interface 'eth7'"):
        inject(net, "h1", udp_packet(H1, H2, 1, b""), interface="eth7")
    with pytest.raises(ConfigError, match="no route"):
        inject(net, "r1", udp_packet(H1, "192.0.2.9", 1, b""))


def test_a_host_with_two_interfaces_needs_the_source_or_a_name() -> None:
    net, _ = network("two-paths")
    h1_ifaces = net.spec.interfaces_of("h1")
    second = h1_ifaces[1]
    dst = net.spec.interfaces_of("h2")[1].ipv4
    assert inject(net, "h1", udp_packet(second.ipv4, dst, 1, b"")) == second.name
    with pytest.raises(ConfigError, match="several interfaces"):
        inject(net, "h1", udp_packet("192.0.2.1", dst, 1, b""))
    assert inject(net, "h1", udp_packet("192.0.2.1", dst, 1, b""), interface=h1_ifaces[0].name) == h1_ifaces[0].name


def test_the_command_line_sender_refuses_bad_hex() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lab.mininet.inject", "zz"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert proc.returncode == 2 and "lab.mininet.inject:" in proc.stderr


RECEIVER = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9999))
print(json.dumps({"ready": True}), flush=True)
data, src = s.recvfrom(2048)
print(json.dumps({"data": data.decode(), "src": src[0], "sport": src[1]}), flush=True)
"""


@pytest.mark.mininet
def test_inject_inside_a_mininet_host(tmp_path: Path) -> None:
    from tests.mininet.conftest import mininet_skip_reason, read_json_line

    reason = mininet_skip_reason()
    if reason is not None:
        pytest.skip(reason)
    from lab.mininet.backend import MininetBackend

    spec = build_topology("single-path", registry.topologies()["single-path"], delay_ms=0.0)
    h1 = spec.interfaces_of("h1")[0].ipv4
    h2 = spec.interfaces_of("h2")[0].ipv4
    with MininetBackend(spec, state_dir=tmp_path) as net:
        proc = net.popen("h2", [sys.executable, "-c", RECEIVER], text=True)
        assert read_json_line(proc, timeout=30) == {"ready": True}
        inject_mininet(net, "h1", udp_packet(h1, h2, 9999, b"forged in h1"))
        got = read_json_line(proc, timeout=30)
        assert got == {"data": "forged in h1", "src": h1, "sport": 4242}
        proc.wait(timeout=10)
    assert json.dumps(got)


def test_the_serving_sender_answers_each_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lab.mininet.inject", "--serve"],
        input="zz -\n45\n\n",
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=Path(__file__).resolve().parents[2],
    )
    lines = proc.stdout.splitlines()
    assert proc.returncode == 0 and lines[0] == "ready", proc.stdout + proc.stderr
    assert len(lines) == 3 and all(line.startswith("error: ") for line in lines[1:])
