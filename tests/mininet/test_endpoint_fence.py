"""The nftables fence: a host's kernel never sees segments for the ports our stack owns, and removal leaves no trace."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.mininet import MininetBackend
from lab.mininet.endpoint import port_filter
from lab.mininet.fence import TABLE, PortSet, install, list_ruleset, ruleset
from lab.topology import build_topology
from tests.mininet.conftest import ROOT
from tests.mininet.test_endpoint import clean_machine  # noqa: F401 - a fixture
from topologies import TOPOLOGIES

LISTEN = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(8); print("listening", flush=True)
while True:
    c, _ = s.accept(); c.close()
"""
CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5).close(); print("connected")
except TimeoutError:
    print("timeout")
except ConnectionRefusedError:
    print("refused")
"""


def test_port_set_merges_ranges_and_rejects_bad_ports() -> None:
    ports = PortSet.of(tcp=[5001, 5002, (5003, 5010), 45000])
    assert ports.tcp == ((5001, 5010), (40000, 60999))
    assert ports.owns_tcp(5005) and ports.owns_tcp(60999) and not ports.owns_tcp(61000)
    assert not ports.owns_udp(5001)
    assert PortSet.from_dict(ports.to_dict()) == ports
    assert PortSet.of(tcp=[], ephemeral=False).tcp == ()
    with pytest.raises(ConfigError, match="1..65535"):
        PortSet.of(tcp=[70000])
    with pytest.raises(ConfigError, match="malformed"):
        PortSet.from_dict({"tcp": [["x", 1]]})
    text = ruleset(PortSet.of(tcp=[5001], udp=[4500]))
    assert f"table inet {TABLE}" in text
    assert "elements = { 5001, 40000-60999 }" in text and "elements = { 4500 }" in text
    assert "hook prerouting priority raw" in text


def run_bpf(program: list[tuple[int, int, int, int]], packet: bytes) -> int:
    """A classic BPF interpreter for the instructions port_filter uses (linux/filter.h)."""
    a = x = pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == 0x30:  # ld b [k]
            a = packet[k]
        elif code == 0x28:  # ld h [k]
            a = int.from_bytes(packet[k : k + 2], "big")
        elif code == 0x48:  # ld h [x + k]
            a = int.from_bytes(packet[x + k : x + k + 2], "big")
        elif code == 0xB1:  # ldx 4 * ([k] & 0xf)
            x = 4 * (packet[k] & 0x0F)
        elif code in (0x15, 0x25, 0x35, 0x45):
            taken = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if taken else jf
        elif code == 0x06:
            return k
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")


def ipv4(proto: int, dport: int, *, ihl: int = 5, frag: int = 0) -> bytes:
    header = bytes([0x40 | ihl, 0, 0, 0, 0, 0]) + frag.to_bytes(2, "big") + bytes([64, proto, 0, 0]) + bytes(8)
    header += bytes(4 * ihl - 20)
    return header + (40000).to_bytes(2, "big") + dport.to_bytes(2, "big") + bytes(16)


def ipv6(next_header: int, dport: int) -> bytes:
    return (
        bytes([0x60, 0, 0, 0, 0, 20, next_header, 64])
        + bytes(32)
        + (40000).to_bytes(2, "big")
        + dport.to_bytes(2, "big")
        + bytes(16)
    )


def test_port_filter_passes_only_owned_ports() -> None:
    ports = PortSet.of(tcp=[5001], udp=[4500])
    v4, v6 = port_filter(ports, ipv6=False), port_filter(ports, ipv6=True)
    accepted = {
        "tcp 5001": ipv4(6, 5001),
        "tcp 40000": ipv4(6, 40000),
        "tcp 60999": ipv4(6, 60999),
        "tcp 5001 with IP options": ipv4(6, 5001, ihl=6),
        "udp 4500": ipv4(17, 4500),
        "the first fragment of a UDP datagram to 4500": ipv4(17, 4500, frag=0x2000),
        "a later fragment of a UDP datagram": ipv4(17, 5001, frag=0x00B9),  # no ports: the stack reassembles
    }
    dropped = {
        "tcp 5002": ipv4(6, 5002),
        "tcp 39999": ipv4(6, 39999),
        "tcp 61000": ipv4(6, 61000),
        "udp 5001": ipv4(17, 5001),
        "icmp": ipv4(1, 5001),
        "a later fragment": ipv4(6, 5001, frag=0x0010),
        "the first fragment of a UDP datagram to 5001": ipv4(17, 5001, frag=0x2000),
    }
    for what, packet in accepted.items():
        assert run_bpf(v4, packet) > 0, what
    for what, packet in dropped.items():
        assert run_bpf(v4, packet) == 0, what
    assert run_bpf(v6, ipv6(6, 5001)) > 0 and run_bpf(v6, ipv6(17, 4500)) > 0
    assert run_bpf(v6, ipv6(6, 5002)) == 0 and run_bpf(v6, ipv6(58, 5001)) == 0


@pytest.mark.mininet
def test_fence_keeps_the_kernel_off_owned_ports_and_is_removed_without_trace(
    tmp_path: Path,
    clean_machine: None,  # noqa: F811
) -> None:
    spec = build_topology("single-path", TOPOLOGIES["single-path"], delay_ms=0.0, bw_mbps=1000.0)
    h1 = spec.interfaces["h1-eth0"].ipv4
    with MininetBackend(spec, state_dir=tmp_path) as net:
        rules_before = list_ruleset(net, "h1")
        range_before = net.cmd("h1", ["sysctl", "-n", "net.ipv4.ip_local_port_range"]).split()
        listener = net.popen("h1", [sys.executable, "-c", LISTEN, "45000"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert listener.stdout is not None and listener.stdout.readline().strip() == "listening"
        connect = [sys.executable, "-c", CONNECT, h1, "45000"]
        assert net.cmd("h2", connect).strip() == "connected"

        fence = install(net, "h1", PortSet.of(tcp=[5001]))
        rules = list_ruleset(net, "h1")
        assert f"table inet {TABLE}" in rules and "5001" in rules and "40000-60999" in rules
        assert net.cmd("h1", ["sysctl", "-n", "net.ipv4.ip_local_port_range"]).split() == ["32768", "39999"]
        # h1's kernel listens on 45000, but the SYN is dropped before it: no SYN/ACK, no RST
        assert net.cmd("h2", connect).strip() == "timeout"
        assert fence.dropped()["tcp_packets"] >= 1
        # ports outside the fence still reach h1's kernel
        assert net.cmd("h2", [sys.executable, "-c", CONNECT, h1, "5002"]).strip() == "refused"

        fence.remove()
        fence.remove()  # twice is harmless
        assert list_ruleset(net, "h1") == rules_before
        assert net.cmd("h1", ["sysctl", "-n", "net.ipv4.ip_local_port_range"]).split() == range_before
        assert net.cmd("h2", connect).strip() == "connected"
