"""Link shaping on real packets: HTB rate, one-way delay and random loss (netem, or the user-space emulator)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.mininet import MininetBackend, netem_available, plan_links
from lab.mininet.apps import payload_sha256
from lab.mininet.backend import process_start_time
from lab.mininet.linkemu import emulator_stats
from lab.mininet.topo import emulator_names
from lab.pcap import read_pcap_linktype
from lab.topology import TopologyBuilder, TopologySpec
from lab.trace import MemoryTracer
from tests.mininet.conftest import ROOT, kernel_transfer, read_json_line

pytestmark = pytest.mark.mininet

MIB = 1024 * 1024
RATE_MBPS = 10.0
ONE_WAY_MS = 5.0  # per link: h1 -> r1 -> h2 is 10 ms one way, a 20 ms round trip
LOSS_PCT = 5.0
DATAGRAMS = 2000


def shaping_spec() -> TopologySpec:
    """Path A (via r1): 10 Mbit/s and 5 ms each way on each link; path B (via r2):
    5 % loss each way on h1-r2, nothing on r2-h2."""
    t = TopologyBuilder("shaping")
    h1, h2, r1, r2 = t.host("h1"), t.host("h2"), t.router("r1"), t.router("r2")
    t.link(h1, r1, bw_mbps=RATE_MBPS, delay_ms=ONE_WAY_MS)  # 10.0.1.0/24
    t.link(r1, h2, bw_mbps=RATE_MBPS, delay_ms=ONE_WAY_MS)  # 10.0.2.0/24
    t.link(h1, r2, loss_pct=LOSS_PCT)  # 10.0.3.0/24
    t.link(r2, h2)  # 10.0.4.0/24
    return t.build()


def root_state() -> dict[str, Any]:
    """The root namespace's named namespaces, interfaces and nftables ruleset."""

    def run(argv: list[str]) -> str:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout

    return {
        "netns": run(["ip", "netns", "list"]),
        "links": sorted(line.split(":")[1].strip().split("@")[0] for line in run(["ip", "-o", "link"]).splitlines()),
        "nft": run(["nft", "list", "ruleset"]),
    }


def assert_root_state_as_before(before: dict[str, Any], names: set[str]) -> None:
    """Nothing of ours (interfaces ``names``, tcplab tables) is left in the root namespace,
    and, when no other test runs beside us (no xdist worker), nothing changed at all."""
    after = root_state()
    assert not names & set(after["links"]), sorted(names & set(after["links"]))
    assert "tcplab" not in after["nft"] and "TCPLAB" not in after["nft"]
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        assert after == before


@pytest.fixture(scope="module")
def shaped(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MininetBackend, MemoryTracer, Path]]:
    before = root_state()
    tracer = MemoryTracer()
    base = tmp_path_factory.mktemp("shaping")
    pids: list[int] = []
    pcaps = base / "pcaps"
    with MininetBackend(
        shaping_spec(),
        tracer=tracer,
        state_dir=base / "state",
        pcap_dir=pcaps,
        pcap_interfaces=["h1-eth0", "r1-eth0"],
    ) as net:
        pids = [p.pid for p in net.processes]
        yield net, tracer, pcaps
    assert net.leftovers == []
    if not netem_available():  # on exit, each emulator's counters are in the trace
        metrics = {r.data["link"]: r.data["emulator"] for r in tracer.select(layer="link", name="metrics_updated")}
        assert set(metrics) == {"h1-r1", "r1-h2", "h1-r2"}
        assert all(m[d]["lost"] == 0 for m in (metrics["h1-r1"], metrics["r1-h2"]) for d in m)  # no loss asked
        assert not tracer.select(layer="link", name="error")
    assert all(process_start_time(pid) is None for pid in pids)  # emulators and captures are gone
    assert_root_state_as_before(before, set(net.spec.interfaces) | {"lw0", "li0", "lw1", "li1"})


def test_each_link_property_records_how_it_is_realised(shaped: tuple[MininetBackend, MemoryTracer, Path]) -> None:
    net, tracer, _ = shaped
    records = {r.data["link"]: r.data for r in tracer.select(layer="link", name="state_updated", node="net")}
    assert set(records) == {"h1-r1", "r1-h2", "h1-r2", "r2-h2"}
    delay_by = "netem" if netem_available() else "user-space"
    assert records["h1-r1"]["realised_by"] == {"bw": "htb", "delay": delay_by, "loss": "none"}
    assert records["h1-r2"]["realised_by"] == {"bw": "none", "delay": "none", "loss": delay_by}
    assert records["r2-h2"]["realised_by"] == {"bw": "none", "delay": "none", "loss": "none"}
    assert records["h1-r1"]["delay"].startswith(f"{delay_by} delay 5ms")
    if delay_by == "user-space":
        # at the router's end of both host-router links, for both directions
        assert records["h1-r1"]["delay"].endswith("(on r1 between lw0 and li0, each direction)")
        assert records["r1-h2"]["delay"].endswith("(on r1 between lw1 and li1, each direction)")
        assert set(net.link_emulators) == {"h1-r1", "r1-h2", "h1-r2"}
        links = net.cmd("r1", ["ip", "-o", "link"])
        assert all(name in links for name in ("lw0", "li0", "r1-eth0", "lw1", "li1", "r1-eth1"))
        assert "htb" in net.cmd("r1", ["tc", "qdisc", "show", "dev", "r1-eth0"])


def test_goodput_is_within_10_percent_of_the_link_rate(shaped: tuple[MininetBackend, MemoryTracer, Path]) -> None:
    net, _, _ = shaped
    size = 4 * MIB
    t = kernel_transfer(net, src="h1", dst="h2", dst_addr="10.0.2.2", size_bytes=size, seed=61, port=5101)
    assert t.received["sha256"] == t.sent["sha256"] == payload_sha256(size, 61)
    assert 0.9 * RATE_MBPS <= t.goodput_mbps <= RATE_MBPS, f"goodput {t.goodput_mbps:.2f} Mbit/s"


def _rtts_ms(out: str) -> list[float]:
    return [float(line.split("time=")[1].split()[0]) for line in out.splitlines() if "time=" in line]


@pytest.mark.parametrize("dst", ["10.0.2.2", "fd00:0:0:2::2"])
def test_round_trip_time_is_the_configured_delay(shaped: tuple[MininetBackend, MemoryTracer, Path], dst: str) -> None:
    net, _, _ = shaped
    net.cmd("h1", ["ping", "-n", "-c", "2", "-i", "0.1", dst], check=False, timeout=30)  # neighbours resolved
    out = net.cmd("h1", ["ping", "-n", "-c", "10", "-i", "0.1", "-W", "2", dst], check=False, timeout=30)
    rtts = _rtts_ms(out)
    expected = 4 * ONE_WAY_MS
    close = [r for r in rtts if abs(r - expected) <= 2.0]
    assert len(close) >= 8, f"RTTs {rtts} ms, expected {expected} ms"
    unshaped = _rtts_ms(
        net.cmd("h1", ["ping", "-n", "-c", "5", "-i", "0.1", "-I", "10.0.3.1", "10.0.4.2"], check=False)
    )
    assert unshaped and min(unshaped) < 2.0  # path B has no delay


def _icmp_times(path: Path) -> dict[tuple[int, int, int], float]:
    """(type, id, seq) -> capture time of each ICMP echo request/reply (IPv4) in ``path``."""
    _linktype, packets = read_pcap_linktype(path)
    out = {}
    for t, frame in packets:
        if frame[12:14] != b"\x08\x00" or frame[14 + 9] != 1:
            continue
        icmp = 14 + (frame[14] & 0x0F) * 4
        key = (
            frame[icmp],
            int.from_bytes(frame[icmp + 4 : icmp + 6], "big"),
            int.from_bytes(frame[icmp + 6 : icmp + 8], "big"),
        )
        out.setdefault(key, t)
    return out


def test_the_delay_is_one_way_in_each_direction_on_real_packets(
    shaped: tuple[MininetBackend, MemoryTracer, Path],
) -> None:
    """Seen at both ends of h1-r1 (one clock): requests and replies each take 5 ms."""
    net, _, pcaps = shaped
    net.cmd("h1", ["ping", "-n", "-c", "10", "-i", "0.05", "-p", "abcd", "10.0.2.2"], check=False, timeout=30)
    net.cmd("h1", ["sleep", "0.5"])  # let tcpdump write the last packets
    at_h1 = _icmp_times(pcaps / "h1-eth0.pcap")
    at_r1 = _icmp_times(pcaps / "r1-eth0.pcap")
    requests = [at_r1[k] - at_h1[k] for k in at_h1 if k[0] == 8 and k in at_r1]
    replies = [at_h1[k] - at_r1[k] for k in at_r1 if k[0] == 0 and k in at_h1]
    assert len(requests) >= 10 and len(replies) >= 10
    for what, delays in (("h1 -> r1", requests), ("r1 -> h1", replies)):
        close = [d for d in delays if abs(d * 1000 - ONE_WAY_MS) <= 1.0]
        assert len(close) >= 0.8 * len(delays), f"{what}: one-way delays {[round(d * 1000, 2) for d in delays]} ms"


UDP_SINK = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE: a busy machine must not drop them here
s.bind((sys.argv[1], 5300))
print(json.dumps({"event": "listening"}), flush=True)
s.settimeout(3.0)
seen = set()
try:
    while True:
        seen.add(int(s.recv(2048)[:8]))
except socket.timeout:
    pass
print(json.dumps({"event": "received", "count": len(seen)}), flush=True)
"""

UDP_SOURCE = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 0))
for i in range(int(sys.argv[3])):
    s.sendto(b"%08d" % i + bytes(200), (sys.argv[2], 5300))
    if i % 20 == 19:
        time.sleep(0.002)
"""


def _udp_delivered(net: MininetBackend, src: tuple[str, str], dst: tuple[str, str], count: int) -> int:
    popen: dict[str, Any] = {
        "stdin": subprocess.DEVNULL,
        "stdout": subprocess.PIPE,
        "stderr": subprocess.PIPE,
        "text": True,
    }
    sink = net.popen(dst[0], [sys.executable, "-c", UDP_SINK, dst[1]], **popen)
    assert read_json_line(sink, timeout=30)["event"] == "listening"
    net.cmd(src[0], [sys.executable, "-c", UDP_SOURCE, src[1], dst[1], str(count)], timeout=60)
    result = read_json_line(sink, timeout=30)
    sink.wait(timeout=10)
    return int(result["count"])


def test_loss_rate_matches_in_each_direction(shaped: tuple[MininetBackend, MemoryTracer, Path]) -> None:
    """2000 datagrams each way over h1-r2 (5 % loss each way): the losses are within 4.5
    binomial standard deviations (+-44) of 100, and exactly those the emulator counted."""
    net, _, _ = shaped
    sd = math.sqrt(DATAGRAMS * LOSS_PCT / 100 * (1 - LOSS_PCT / 100))
    expected = DATAGRAMS * LOSS_PCT / 100
    before = emulator_stats(net.link_emulators["h1-r2"]) if "h1-r2" in net.link_emulators else None
    lost_out = DATAGRAMS - _udp_delivered(net, ("h1", "10.0.3.1"), ("h2", "10.0.4.2"), DATAGRAMS)
    lost_back = DATAGRAMS - _udp_delivered(net, ("h2", "10.0.4.2"), ("h1", "10.0.3.1"), DATAGRAMS)
    udp_errors = {h: net.cmd(h, ["grep", "Udp:", "/proc/net/snmp"]).splitlines()[-1] for h in ("h1", "h2")}
    for what, lost in (("h1 -> h2", lost_out), ("h2 -> h1", lost_back)):
        assert abs(lost - expected) <= 4.5 * sd, (
            f"{what}: {lost} of {DATAGRAMS} lost, expected about {expected:g}; UDP counters {udp_errors}"
        )
    if before is not None:
        after = emulator_stats(net.link_emulators["h1-r2"])
        assert after["wire->inner"]["lost"] - before["wire->inner"]["lost"] == lost_out
        assert after["inner->wire"]["lost"] - before["inner->wire"]["lost"] == lost_back


def test_the_emulator_adds_little_jitter(shaped: tuple[MininetBackend, MemoryTracer, Path]) -> None:
    net, _, _ = shaped
    if not net.link_emulators:
        pytest.skip("netem realises delay on this kernel")
    stats = emulator_stats(net.link_emulators["h1-r1"])
    for direction in ("wire->inner", "inner->wire"):
        assert stats[direction]["forwarded"] > 0
        assert stats[direction]["late_p50_us"] <= 1000, stats  # frames leave within 1 ms of their due time


# --- plans (no network needed)


def test_the_emulator_sits_at_the_router_end_or_at_b() -> None:
    t = TopologyBuilder("ends")
    h1, h2, r1, r2 = t.host("h1"), t.host("h2"), t.router("r1"), t.router("r2")
    t.link(h1, r1, delay_ms=1.0)
    t.link(r1, r2, loss_pct=1.0)
    t.link(r2, h2, delay_ms=1.0)
    t.link(h1, h2, delay_ms=1.0)
    spec = t.build()
    plans = plan_links(spec, netem=False, seed=3)
    where = {name: (p.emulator.node, p.emulator.interface, p.emulator.wire) for name, p in plans.items() if p.emulator}
    assert where == {
        "h1-r1": ("r1", "r1-eth0", "lw0"),
        "r1-r2": ("r2", "r2-eth0", "lw0"),
        "r2-h2": ("r2", "r2-eth1", "lw1"),
        "h1-h2": ("h2", "h2-eth1", "lw1"),
    }
    assert emulator_names(spec, spec.interfaces["r1-eth0"]) == ("lw0", "li0")
    assert len({p.emulator.seed for p in plans.values()}) == 4  # one random stream per link
    assert plans["r1-r2"].methods == {"bw": "none", "delay": "none", "loss": "user-space"}
    # netem, when the kernel has it, needs no emulator
    assert all(p.emulator is None for p in plan_links(spec, netem=True).values())


def test_the_emulator_refuses_bad_arguments_with_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lab.mininet.linkemu", "--wire", "nosuch0", "--inner", "nosuch1", "--loss-pct", "150"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["event"] == "error"


def test_the_cli_shows_how_mininet_realises_each_link(capsys: pytest.CaptureFixture[str]) -> None:
    from lab.cli import main

    assert main(["topo", "two-paths", "--backend", "mininet", "-p", "loss_pct=1"]) == 0
    out = capsys.readouterr().out
    how = "netem" if netem_available() else "user-space"
    assert "on Mininet:" in out
    assert f"h1-r2      bw htb rate 5mbit burst 3028b; delay {how} delay 10ms" in out
    assert main(["topo", "single-path", "--backend", "mininet", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["mininet"]
    assert shown["h1-r1"]["realised_by"] == {"bw": "htb", "delay": how, "loss": "none"}
