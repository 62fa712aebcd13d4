"""The simulator's middlebox policies on a Mininet router, checked on real packets.

Each test installs a policy on r1 of an unshaped single path, captures on
both sides of r1, and checks (1) what tshark decodes past the router, (2)
what the kernel endpoints see, and (3) that every packet r1 forwarded is the
packet the simulator's policy object makes of the same input (run here on
the captured packets) -- and that a simulated run with the same policy ends
the same way.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.mininet import MininetBackend
from lab.mininet.apps import payload_sha256
from lab.mininet.middlebox import forwarder_stats
from lab.pcap import read_pcap_linktype
from lab.scenario import Scenario, ScenarioRun, Transfer
from lab.scenario.middlebox import BlockTcpPorts, BlockUdpPorts, FlipPayloadBytes, Middlebox, SourceNat, StripTcpOptions
from lab.topology import TopologySpec, build_topology
from lab.trace import NULL_TRACER, MemoryTracer
from tests.mininet.conftest import ROOT, kernel_transfer, read_json_line
from topologies import TOPOLOGIES

pytestmark = pytest.mark.mininet

CAPTURED = ["h1-eth0", "r1-eth0", "r1-eth1", "h2-eth0"]
H2 = "10.0.2.2"


def spec() -> TopologySpec:
    return build_topology("single-path", TOPOLOGIES["single-path"], delay_ms=0.0, bw_mbps=None)


@pytest.fixture
def net(tmp_path: Path) -> Iterator[tuple[MininetBackend, MemoryTracer, Path]]:
    tracer = MemoryTracer()
    with MininetBackend(
        spec(), tracer=tracer, state_dir=tmp_path / "state", pcap_dir=tmp_path / "pcaps", pcap_interfaces=CAPTURED
    ) as backend:
        yield backend, tracer, tmp_path / "pcaps"
    assert backend.leftovers == []


def ip_packets(path: Path) -> list[bytes]:
    """The IPv4/IPv6 packets of an Ethernet capture, in order."""
    _linktype, frames = read_pcap_linktype(path)
    return [frame[14:] for _t, frame in frames if frame[12:14] in (b"\x08\x00", b"\x86\xdd")]


def routed(packet: bytes) -> bytes:
    """``packet`` as a Linux router forwards it: TTL (hop limit) one less, IPv4 checksum updated."""
    if packet[0] >> 4 == 6:
        return packet[:7] + bytes((packet[7] - 1,)) + packet[8:]
    csum = int.from_bytes(packet[10:12], "big") + 0x0100
    csum = (csum + (csum >= 0xFFFF)) & 0xFFFF  # as Linux's ip_decrease_ttl: 0xFFFF comes out as 0x0000
    return packet[:8] + bytes((packet[8] - 1,)) + packet[9:10] + csum.to_bytes(2, "big") + packet[12:]


def flow(protocol: int, dport: int) -> Callable[[bytes], bool]:
    """Selects IPv4 packets of ``protocol`` (6 TCP, 17 UDP) to ``dport``."""

    def selected(packet: bytes) -> bool:
        if packet[0] >> 4 != 4 or packet[9] != protocol:
            return False
        hl = (packet[0] & 0x0F) * 4
        return int.from_bytes(packet[hl + 2 : hl + 4], "big") == dport

    return selected


def reverse_flow(protocol: int, sport: int) -> Callable[[bytes], bool]:
    def selected(packet: bytes) -> bool:
        if packet[0] >> 4 != 4 or packet[9] != protocol:
            return False
        hl = (packet[0] & 0x0F) * 4
        return int.from_bytes(packet[hl : hl + 2], "big") == sport

    return selected


MISSING_TOLERANCE = 0.10  # of the expected packets: tcpdump drops some on a loaded 2-core machine
REORDER_SPAN = 16  # places a packet may move within a burst on r1's forwarding path


def assert_same_packets(actual: list[bytes], expected: list[bytes], where: str) -> int:
    """Every packet in ``actual`` is, byte for byte, a distinct expected packet, in the
    expected order but for local reordering; expected packets the capture does not hold
    may be at most ``MISSING_TOLERANCE`` (never an unexpected or different one). Returns the matches.

    Real forwarding on 2 cores reorders a few packets of a burst (r1 sends them in another
    order than it received them, microseconds apart), so a packet may come before one
    it followed, by at most ``REORDER_SPAN`` places, for at most ``MISSING_TOLERANCE`` of them."""
    unused: dict[bytes, list[int]] = {}
    for index, packet in enumerate(expected):
        unused.setdefault(packet, []).append(index)
    highest, reordered = -1, 0
    for i, got in enumerate(actual):
        indices = unused.get(got)
        if not indices:
            same_key = [e for e in expected if e[2:6] == got[2:6]]
            hint = f"\nthe simulator's packet with its length and ID:\n{same_key[0].hex()}" if same_key else ""
            raise AssertionError(f"packet {i} on {where} is not one the simulator's policy makes:\n{got.hex()}{hint}")
        index = indices.pop(0)
        if index < highest:
            reordered += 1
            assert highest - index <= REORDER_SPAN, f"packet {i} on {where} is {highest - index} places out of order"
        highest = max(highest, index)
    assert reordered <= MISSING_TOLERANCE * len(actual), f"{reordered} of {len(actual)} packets on {where} reordered"
    missing = len(expected) - len(actual)
    assert missing <= MISSING_TOLERANCE * len(expected), (
        f"{len(actual)} packets on {where}, the simulator's policy gives {len(expected)}"
    )
    return len(actual)


def assert_forwarded_like_the_simulator(
    box: Middlebox, pcaps: Path, ingress: str, egress: str, selected: Callable[[bytes], bool]
) -> int:
    """Every selected packet r1 received on ``ingress``, through the simulator's ``box``,
    is exactly (and in order) what r1 sent on ``egress``. Returns how many were compared."""
    expected = []
    for packet in filter(selected, ip_packets(pcaps / f"{ingress}.pcap")):
        out = box.process(routed(packet), now=0.0, ingress=ingress, egress=egress, tracer=NULL_TRACER)
        if out is not None:
            expected.append(out)
    actual = list(filter(selected, ip_packets(pcaps / f"{egress}.pcap")))
    return assert_same_packets(actual, expected, egress)


def tshark_count(path: Path, display_filter: str) -> int:
    """How many packets of ``path`` tshark shows for ``display_filter`` (TCP checksums verified)."""
    proc = subprocess.run(
        ["tshark", "-o", "tcp.check_checksum:TRUE", "-r", str(path), "-Y", display_filter],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    return len([line for line in proc.stdout.splitlines() if line.strip()])


def settle(net: MininetBackend) -> None:
    net.cmd("h1", ["sleep", "0.3"])  # tcpdump writes the last packets


def sim_outcome(box: Callable[[], Middlebox], *, size_bytes: int = 256 * 1024, port: int = 5001) -> Any:
    """The simulator's transfer over the same path with the same policy on r1."""
    scenario = Scenario(
        name="middlebox-check",
        description="",
        topology="single-path",
        topology_params={"delay_ms": 2.0, "bw_mbps": 100.0},
        middleboxes=(("r1", box),),
        transfers=(Transfer(size_bytes=size_bytes, port=port),),
        time_limit_s=60.0,
    )
    run = ScenarioRun(scenario, seed=1, tracer=NULL_TRACER)
    run.net.run(until=scenario.time_limit_s, stop=run.done)
    return run.results[0]


def mptcp_transfer(net: MininetBackend, *, size_bytes: int, seed: int, port: int) -> tuple[dict, dict]:
    app = [sys.executable, "-m", "lab.mininet.apps"]
    popen: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "text": True,
        "cwd": ROOT,
    }
    receiver = net.popen(
        "h2", [*app, "receive", "--listen", H2, "--port", str(port), "--mptcp", "--timeout", "30"], **popen
    )
    assert read_json_line(receiver, timeout=30)["event"] == "listening"
    argv = [*app, "send", "--connect", H2, "--port", str(port), "--bytes", str(size_bytes), "--seed", str(seed)]
    sender = net.popen("h1", [*argv, "--mptcp", "--timeout", "30"], **popen)
    sent = read_json_line(sender, timeout=60)
    received = read_json_line(receiver, timeout=60)
    return sent, received


@pytest.fixture(scope="module", autouse=True)
def _root_namespace_left_as_it_was() -> Iterator[None]:
    from tests.mininet.test_shaping import assert_root_state_as_before, root_state

    before = root_state()
    yield
    assert_root_state_as_before(before, set(spec().interfaces))


@pytest.fixture(autouse=True)
def _needs_tshark() -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed: apt install tshark")


# --- strip TCP options


STRIP_KINDS = (4, 8, 30)  # SACK-permitted, timestamps, MPTCP
OPTIONS_SHOWN = "(tcp.options.sack_perm || tcp.options.timestamp.tsval || mptcp)"


@pytest.mark.parametrize("when", ["syn", "all", "after_handshake"])
def test_strip_tcp_options_like_the_simulator(net: tuple[MininetBackend, MemoryTracer, Path], when: str) -> None:
    backend, tracer, pcaps = net
    make = lambda: StripTcpOptions(STRIP_KINDS, when=when)  # noqa: E731
    installed = backend.add_middlebox("r1", make())
    assert installed["realised_by"].startswith("iptables TCPOPTSTRIP --strip-options 4,8,30")
    size, port = 300_000, 5201
    sent, received = mptcp_transfer(backend, size_bytes=size, seed=71, port=port)
    settle(backend)
    # the kernel connection still works (MPTCP falls back to TCP where its options vanish)
    assert received["event"] == "received" and received["bytes"] == size
    assert received["sha256"] == sent["sha256"] == payload_sha256(size, 71)
    syn = f"tcp.port == {port} && tcp.flags.syn == 1"
    later = f"tcp.dstport == {port} && tcp.flags.syn == 0"  # h1 -> h2, after r1
    assert tshark_count(pcaps / "h1-eth0.pcap", f"{syn} && tcp.flags.ack == 0 && {OPTIONS_SHOWN}") == 1
    past_router = {"syn": tshark_count(pcaps / "h2-eth0.pcap", f"{syn} && {OPTIONS_SHOWN}")}
    past_router["later"] = tshark_count(pcaps / "h2-eth0.pcap", f"{later} && tcp.options.timestamp.tsval")
    if when == "syn":  # h2 answers a SYN without these options without them too
        assert past_router["syn"] == 0
    elif when == "all":
        assert past_router == {"syn": 0, "later": 0}
    else:
        assert past_router["syn"] == 2 and past_router["later"] == 0  # SYN and h2's SYN/ACK keep them
    compared = assert_forwarded_like_the_simulator(make(), pcaps, "r1-eth0", "r1-eth1", flow(6, port))
    compared += assert_forwarded_like_the_simulator(make(), pcaps, "r1-eth1", "r1-eth0", reverse_flow(6, port))
    assert compared > size // 1460
    # the simulator's own run with this policy completes byte-exact too
    assert sim_outcome(make).ok
    installed_records = tracer.select(layer="middlebox", name="state_updated", node="r1")
    assert installed_records[0].data["installed"] == {"policy": "strip_tcp_options", "kinds": [4, 8, 30], "when": when}


# --- block UDP ports

UDP_SEND = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(20):
    for port in (4500, 5300):
        s.sendto(b"datagram %d" % i, (sys.argv[1], port))
    time.sleep(0.01)
"""

UDP_SINK = """
import json, select, socket, sys
socks = []
for port in (4500, 5300):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((sys.argv[1], port))
    socks.append(s)
print(json.dumps({"event": "listening"}), flush=True)
counts = {4500: 0, 5300: 0}
while True:
    ready, _, _ = select.select(socks, [], [], 1.5)
    if not ready:
        break
    for s in ready:
        s.recv(2048)
        counts[s.getsockname()[1]] += 1
print(json.dumps({"event": "received", "counts": counts}), flush=True)
"""


def test_block_udp_ports_like_the_simulator(net: tuple[MininetBackend, MemoryTracer, Path]) -> None:
    backend, _, pcaps = net
    make = lambda: BlockUdpPorts([500, 4500])  # noqa: E731
    assert backend.add_middlebox("r1", make())["realised_by"] == "nft drop (inet forward)"
    popen: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "text": True,
    }
    sink = backend.popen("h2", [sys.executable, "-c", UDP_SINK, H2], **popen)
    assert read_json_line(sink, timeout=30)["event"] == "listening"
    backend.cmd("h1", [sys.executable, "-c", UDP_SEND, H2])
    counts = read_json_line(sink, timeout=30)["counts"]
    assert counts == {"4500": 0, "5300": 20}
    settle(backend)
    assert tshark_count(pcaps / "h1-eth0.pcap", "udp.dstport == 4500") == 20
    assert tshark_count(pcaps / "h2-eth0.pcap", "udp.dstport == 4500") == 0
    assert tshark_count(pcaps / "h2-eth0.pcap", "udp.dstport == 5300") == 20
    for port in (4500, 5300):
        assert_forwarded_like_the_simulator(make(), pcaps, "r1-eth0", "r1-eth1", flow(17, port))
    # TCP is untouched
    t = kernel_transfer(backend, src="h1", dst="h2", dst_addr=H2, size_bytes=100_000, seed=72, port=5202)
    assert t.received["sha256"] == payload_sha256(100_000, 72)


# --- flip payload bytes


def test_flip_payload_bytes_like_the_simulator(net: tuple[MininetBackend, MemoryTracer, Path]) -> None:
    backend, _, pcaps = net
    make = lambda: FlipPayloadBytes(dst_port=5203, nth=5, offset=10, mask=0x5A)  # noqa: E731
    assert backend.add_middlebox("r1", make())["realised_by"].startswith("user-space NFQUEUE 1 (FlipPayloadBytes")
    size = 256 * 1024
    t = kernel_transfer(backend, src="h1", dst="h2", dst_addr=H2, size_bytes=size, seed=73, port=5203)
    settle(backend)
    # the checksum was fixed, so TCP delivered every byte -- and a different SHA-256
    assert t.received["bytes"] == size
    assert t.sent["sha256"] == payload_sha256(size, 73)
    assert t.received["sha256"] != t.sent["sha256"]
    data = "tcp.dstport == 5203 && tcp.len > 0"
    # none bad; Linux writes a computed 0x0000 as 0xffff (the same in one's complement), which tshark flags
    bad = f"{data} && tcp.checksum.status == 0 && tcp.checksum != 0xffff"
    assert tshark_count(pcaps / "h2-eth0.pcap", bad) == 0
    assert tshark_count(pcaps / "h2-eth0.pcap", f"{data} && tcp.checksum.status == 1") >= size // 1448
    stats = forwarder_stats(backend._middleboxes[0])
    assert stats["rewritten"] == 1
    assert stats["records"][0]["data"] == {
        "action": "rewritten",
        "flipped_offset": 10,
        "ingress": "r1-eth0",
        "policy": "flip_payload",
    }
    assert assert_forwarded_like_the_simulator(make(), pcaps, "r1-eth0", "r1-eth1", flow(6, 5203)) > size // 1460
    # the simulator's payload-tamper outcome: all bytes arrive, the SHA-256 does not match
    result = sim_outcome(make, size_bytes=size, port=5203)
    assert result.bytes_received == size and not result.ok


# --- cleanup


def test_removing_policies_leaves_the_router_as_it_was(net: tuple[MininetBackend, MemoryTracer, Path]) -> None:
    backend, tracer, _ = net
    before = backend.cmd("r1", ["nft", "list", "ruleset"])
    backend.add_middlebox("r1", StripTcpOptions([30], when="syn"))
    backend.add_middlebox("r1", BlockUdpPorts([4500]))
    backend.add_middlebox("r1", FlipPayloadBytes(dst_port=5204))
    forwarder = backend._middleboxes[-1].forwarder
    assert forwarder is not None and forwarder.poll() is None
    assert backend.cmd("r1", ["nft", "list", "ruleset"]) != before
    backend._remove_middleboxes([])
    assert backend.cmd("r1", ["nft", "list", "ruleset"]) == before
    assert forwarder.poll() is not None
    removed = [
        r.data["removed"]["policy"]
        for r in tracer.select(layer="middlebox", name="state_updated")
        if "removed" in r.data
    ]
    assert removed == ["flip_payload", "block_udp", "strip_tcp_options"]
    t = kernel_transfer(backend, src="h1", dst="h2", dst_addr=H2, size_bytes=100_000, seed=74, port=5204)
    assert t.received["sha256"] == payload_sha256(100_000, 74)


def test_a_middlebox_needs_a_router(net: tuple[MininetBackend, MemoryTracer, Path]) -> None:
    from lab.errors import ConfigError

    backend, _, _ = net
    with pytest.raises(ConfigError, match="no router named 'h1'"):
        backend.add_middlebox("h1", BlockUdpPorts([500]))


# --- source NAT


def test_source_nat_like_the_simulator(net: tuple[MininetBackend, MemoryTracer, Path]) -> None:
    backend, _, pcaps = net
    installed = backend.add_middlebox("r1", SourceNat(inside="r1-eth0", public_address="10.0.2.1"))
    assert installed["realised_by"].startswith("nft snat to 10.0.2.1:20000-65535 from r1-eth0")
    size, port = 200_000, 5205
    t = kernel_transfer(backend, src="h1", dst="h2", dst_addr=H2, size_bytes=size, seed=75, port=port)
    assert t.received["sha256"] == t.sent["sha256"] == payload_sha256(size, 75)
    public_ip, public_port = t.received["peer"]
    assert public_ip == "10.0.2.1" and 20000 <= public_port <= 65535  # h2 sees the router's address
    assert t.sent["local"][0] == "10.0.1.1"  # h1 its own
    # ICMP is not translated, so it does not get out (in the simulator neither)
    out = backend.cmd("h1", ["ping", "-n", "-c", "2", "-i", "0.2", "-W", "1", H2], check=False)
    assert "0 received" in out
    settle(backend)
    assert tshark_count(pcaps / "h2-eth0.pcap", f"tcp.port == {port} && ip.addr == 10.0.1.1") == 0
    assert tshark_count(pcaps / "h2-eth0.pcap", f"tcp.port == {port} && ip.src == 10.0.2.1") > size // 1460
    # the simulator's NAT, counting its ports from the one the kernel chose, makes the same packets
    same = SourceNat(inside="r1-eth0", public_address="10.0.2.1", port_base=public_port)
    assert_forwarded_like_the_simulator(same, pcaps, "r1-eth0", "r1-eth1", flow(6, port))
    replies = [
        routed(p)
        for p in map(
            lambda p: same.prerouting(p, now=0.0, ingress="r1-eth1", tracer=NULL_TRACER),
            ip_packets(pcaps / "r1-eth1.pcap"),
        )
        if p is not None and reverse_flow(6, port)(p)
    ]
    got = list(filter(reverse_flow(6, port), ip_packets(pcaps / "r1-eth0.pcap")))
    assert assert_same_packets(got, replies, "r1-eth0") > 0
    # and a simulated transfer through it works, h2 seeing 10.0.2.1
    tracer = MemoryTracer()
    scenario = Scenario(
        name="nat-check",
        description="",
        topology="single-path",
        topology_params={"delay_ms": 2.0, "bw_mbps": 100.0},
        middleboxes=(("r1", lambda: SourceNat(inside="r1-eth0", public_address="10.0.2.1")),),
        transfers=(Transfer(size_bytes=size),),
        time_limit_s=60.0,
    )
    run = ScenarioRun(scenario, seed=1, tracer=tracer)
    run.net.run(until=scenario.time_limit_s, stop=run.done)
    assert run.results[0].ok
    conns = {r.data["conn"] for r in tracer.select(layer="tcp", node="h2") if "conn" in r.data}
    assert conns and all(c.endswith("->10.0.2.1:20000") for c in conns), conns


def test_source_nat_needs_one_of_the_routers_addresses(net: tuple[MininetBackend, MemoryTracer, Path]) -> None:
    from lab.errors import ConfigError

    backend, _, _ = net
    with pytest.raises(ConfigError, match="public_address 192.0.2.1 must be the address of one of its other"):
        backend.add_middlebox("r1", SourceNat(inside="r1-eth0", public_address="192.0.2.1"))
    with pytest.raises(ConfigError, match="r1 has no interface 'r9-eth0'"):
        backend.add_middlebox("r1", SourceNat(inside="r9-eth0", public_address="10.0.2.1"))


TCP_CONNECT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5).close()
    print("connected")
except OSError as exc:
    print("failed", exc)
"""


def test_block_tcp_ports_like_the_simulator(net: tuple[MininetBackend, MemoryTracer, Path]) -> None:
    backend, _, pcaps = net
    make = lambda: BlockTcpPorts([5206])  # noqa: E731
    assert backend.add_middlebox("r1", make())["realised_by"] == "nft drop (inet forward)"
    out = backend.cmd("h1", [sys.executable, "-c", TCP_CONNECT, H2, "5206"], timeout=30)
    assert out.startswith("failed"), out
    t = kernel_transfer(backend, src="h1", dst="h2", dst_addr=H2, size_bytes=100_000, seed=76, port=5207)
    assert t.received["sha256"] == payload_sha256(100_000, 76)
    settle(backend)
    assert tshark_count(pcaps / "h1-eth0.pcap", "tcp.dstport == 5206 && tcp.flags.syn == 1") >= 1
    assert tshark_count(pcaps / "h2-eth0.pcap", "tcp.port == 5206") == 0
    for port in (5206, 5207):
        assert_forwarded_like_the_simulator(make(), pcaps, "r1-eth0", "r1-eth1", flow(6, port))


class DropMarkedDatagrams(Middlebox):
    """A policy of one's own: drops UDP datagrams whose payload starts with b"drop"."""

    name = "drop_marked"

    def process(self, packet: bytes, *, now: float, ingress: str, egress: str, tracer: Any) -> bytes | None:
        hl = (packet[0] & 0x0F) * 4 if packet[0] >> 4 == 4 else 40
        if packet[9 if packet[0] >> 4 == 4 else 6] == 17 and packet[hl + 8 : hl + 12] == b"drop":
            self._record(tracer, now, "segment_dropped", {"reason": "marked"})
            return None
        return packet


MARKED_SEND = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(10):
    s.sendto(b"drop %d" % i, (sys.argv[1], 5300))
    s.sendto(b"keep %d" % i, (sys.argv[1], 5300))
    time.sleep(0.01)
"""

MARKED_SINK = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 5300))
print(json.dumps({"event": "listening"}), flush=True)
s.settimeout(1.5)
got = []
try:
    while True:
        got.append(s.recv(100).decode())
except socket.timeout:
    pass
print(json.dumps({"event": "received", "got": got}), flush=True)
"""


def test_a_policy_of_ones_own_runs_in_the_nfqueue_forwarder(net: tuple[MininetBackend, MemoryTracer, Path]) -> None:
    backend, _, pcaps = net
    realised = backend.add_middlebox("r1", DropMarkedDatagrams())["realised_by"]
    assert realised == "user-space NFQUEUE 1 (DropMarkedDatagrams.process on every forwarded packet)"
    popen: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "text": True,
    }
    sink = backend.popen("h2", [sys.executable, "-c", MARKED_SINK, H2], cwd=ROOT, **popen)
    assert read_json_line(sink, timeout=30)["event"] == "listening"
    backend.cmd("h1", [sys.executable, "-c", MARKED_SEND, H2])
    assert read_json_line(sink, timeout=30)["got"] == [f"keep {i}" for i in range(10)]
    assert forwarder_stats(backend._middleboxes[0])["dropped"] == 10
    settle(backend)
    assert_forwarded_like_the_simulator(DropMarkedDatagrams(), pcaps, "r1-eth0", "r1-eth1", flow(17, 5300))
