"""The Mininet backend on real namespaces: addresses and routes, both paths, shaping, captures, cleanup."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.errors import ConfigError
from lab.mininet import MininetBackend, MininetCommandError, clean, netem_available, plan_links, topo
from lab.mininet.apps import payload_sha256
from lab.mininet.backend import _sigint_deferred, process_start_time
from lab.pcap import read_pcap_linktype
from lab.topology import TopologyBuilder, TopologySpec, build_topology
from lab.trace import MemoryTracer
from tests.mininet.conftest import ROOT, kernel_transfer, read_json_line
from topologies import TOPOLOGIES

pytestmark = pytest.mark.mininet

MIB = 1024 * 1024


def spec_of(name: str, **params: Any) -> TopologySpec:
    return build_topology(name, TOPOLOGIES[name], **params)


def root_interfaces() -> set[str]:
    return {name for _index, name in socket.if_nameindex()}


def wait_dead(pid: int, start: int | None, *, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        now = process_start_time(pid)
        if now is None or (start is not None and now != start):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="module")
def two_paths(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MininetBackend, MemoryTracer]]:
    """two-paths without delay (path A 10 Mbit/s via r1, path B 5 Mbit/s via r2)."""
    tracer = MemoryTracer()
    state = tmp_path_factory.mktemp("state")
    with MininetBackend(spec_of("two-paths", delay_ms=(0.0, 0.0)), tracer=tracer, state_dir=state) as net:
        yield net, tracer


# --- the network is the spec


def test_addresses_forwarding_and_link_realisation_follow_the_spec(
    two_paths: tuple[MininetBackend, MemoryTracer],
) -> None:
    net, tracer = two_paths
    for iface in net.spec.interfaces.values():
        shown = json.loads(net.cmd(iface.node, ["ip", "-j", "addr", "show", "dev", iface.name]))[0]
        addrs = {(a["local"], a["prefixlen"]) for a in shown["addr_info"]}
        assert {(iface.ipv4, 24), (iface.ipv6, 64)} <= addrs, (iface.name, addrs)
        assert shown["mtu"] == 1500
    for node in net.spec.nodes:
        forwarding = net.cmd(node, ["sysctl", "-n", "net.ipv4.ip_forward"]).strip()
        assert forwarding == ("1" if node.startswith("r") else "0"), node
    assert net.link_realisation["h1-r1"]["bw"].startswith("htb rate 10mbit")
    assert net.link_realisation["h1-r2"]["bw"].startswith("htb rate 5mbit")
    assert net.link_realisation["h1-r1"]["delay"] == "none requested"
    records = tracer.select(layer="link", name="state_updated", node="net")
    assert {r.data["link"]: r.data["bw"] for r in records} == {
        name: r["bw"] for name, r in net.link_realisation.items()
    }
    assert "htb" in net.cmd("r2", ["tc", "qdisc", "show", "dev", "r2-eth1"])


def test_ping_reaches_h2_over_path_a_and_path_b(two_paths: tuple[MininetBackend, MemoryTracer]) -> None:
    if shutil.which("ping") is None:
        pytest.skip("ping is not installed: apt install iputils-ping")
    net, _ = two_paths
    for src, dst in (
        (None, "10.0.2.2"),  # path A
        ("10.0.3.1", "10.0.4.2"),  # path B
        (None, "fd00:0:0:2::2"),
        ("fd00:0:0:3::1", "fd00:0:0:4::2"),
    ):
        argv = ["ping", "-n", "-c", "10", "-i", "0.05", "-W", "2"] + (["-I", src] if src else []) + [dst]
        out = net.cmd("h1", argv, check=False, timeout=30)
        replies = out.count("bytes from")
        assert replies >= 8, f"{replies}/10 replies from {dst}:\n{out}"


def test_kernel_tcp_moves_bytes_exactly_over_both_paths(two_paths: tuple[MininetBackend, MemoryTracer]) -> None:
    net, _ = two_paths
    size = 1 * MIB
    cases = [
        ("path A", None, "10.0.2.2", 11),
        ("path B", "10.0.3.1", "10.0.4.2", 12),
        ("path A over IPv6", None, "fd00:0:0:2::2", 13),
        ("path B over IPv6", "fd00:0:0:3::1", "fd00:0:0:4::2", 14),
    ]
    for what, bind, dst, seed in cases:
        t = kernel_transfer(net, src="h1", dst="h2", dst_addr=dst, size_bytes=size, seed=seed, bind=bind)
        assert t.received["bytes"] == size, what
        assert t.received["sha256"] == t.sent["sha256"] == payload_sha256(size, seed), what
        if bind is not None:
            assert t.received["peer"][0] == bind, what


def test_a_host_routes_by_source_address(two_paths: tuple[MininetBackend, MemoryTracer]) -> None:
    """Bound to h1's path-B address, even a transfer to h2's path-A address goes through r2."""
    net, _ = two_paths
    size = 1 * MIB
    before = {r: net.interface_counters(r) for r in ("r1", "r2")}
    t = kernel_transfer(net, src="h1", dst="h2", dst_addr="10.0.2.2", size_bytes=size, seed=21, bind="10.0.3.1")
    after = {r: net.interface_counters(r) for r in ("r1", "r2")}
    assert t.received["sha256"] == payload_sha256(size, 21)

    def delta(router: str, iface: str, counter: str) -> int:
        return after[router][iface][counter] - before[router][iface][counter]

    assert delta("r2", "r2-eth0", "rx_bytes") >= size  # data in from h1 ...
    assert delta("r2", "r2-eth1", "tx_bytes") >= size  # ... and on to h2
    assert delta("r1", "r1-eth0", "rx_bytes") < size // 10  # r1 sees only h2's ACKs, coming back
    before_a = net.interface_counters("r1")
    kernel_transfer(net, src="h1", dst="h2", dst_addr="10.0.2.2", size_bytes=size, seed=22)  # unbound: path A
    assert net.interface_counters("r1")["r1-eth0"]["rx_bytes"] - before_a["r1-eth0"]["rx_bytes"] >= size


def test_a_router_source_route_wins_over_its_destination_route(tmp_path: Path) -> None:
    """r1's destination route to h2 goes via r2; its source route for h1's address goes via r3."""
    t = TopologyBuilder("detour")
    h1, h2, r1, r2, r3 = t.host("h1"), t.host("h2"), t.router("r1"), t.router("r2"), t.router("r3")
    t.link(h1, r1)  # 10.0.1.0/24
    t.link(r1, r2)  # r1-eth1
    t.link(r2, h2)  # 10.0.3.0/24: h2 is 10.0.3.2
    t.link(r1, r3)  # r1-eth2
    t.link(r3, r2)
    t.route("r1", "10.0.3.2", "r1-eth2", src="10.0.1.1")
    spec = t.build()
    with MininetBackend(spec, state_dir=tmp_path) as net:
        before = net.interface_counters("r3")
        size = 512 * 1024
        tr = kernel_transfer(net, src="h1", dst="h2", dst_addr="10.0.3.2", size_bytes=size, seed=31)
        assert tr.received["sha256"] == payload_sha256(size, 31)
        after = net.interface_counters("r3")
        assert after["r3-eth0"]["rx_bytes"] - before["r3-eth0"]["rx_bytes"] >= size
        rules = net.cmd("r1", ["ip", "rule", "show"])
        assert "from 10.0.1.1 to 10.0.3.2" in rules


# --- shaping


def test_htb_limits_goodput_to_the_link_rate(tmp_path: Path) -> None:
    tracer = MemoryTracer()
    spec = spec_of("single-path", bw_mbps=10.0, delay_ms=0.0)
    with MininetBackend(spec, tracer=tracer, state_dir=tmp_path) as net:
        size = 4 * MIB
        t = kernel_transfer(net, src="h1", dst="h2", dst_addr="10.0.2.2", size_bytes=size, seed=41)
    assert t.received["sha256"] == payload_sha256(size, 41)
    # 10 Mbit/s of frames carry at most 1448/1514 of it as TCP payload: about 9.5 Mbit/s
    assert 7.0 <= t.goodput_mbps <= 10.0, f"goodput {t.goodput_mbps:.2f} Mbit/s over a 10 Mbit/s link"
    realised = {r.data["link"]: r.data for r in tracer.select(layer="link", name="state_updated", node="net")}
    assert set(realised) == {"h1-r1", "r1-h2"}
    assert all(
        d["bw"].startswith("htb rate 10mbit") and d["queue"].startswith("pfifo limit 100") for d in realised.values()
    )


def test_delay_and_loss_are_netem_or_the_user_space_emulator(tmp_path: Path) -> None:
    spec = spec_of("single-path", delay_ms=20.0, loss_pct=1.0)
    if not netem_available():  # tests/mininet/test_shaping.py measures what the emulator does
        with MininetBackend(spec, state_dir=tmp_path) as net:
            assert net.link_realisation["h1-r1"]["delay"].startswith("user-space delay 10ms")
            assert net.link_realisation["r1-h2"]["loss"].startswith("user-space loss 0.501256%")  # each link
            assert set(net.link_emulators) == {"h1-r1", "r1-h2"}
        return
    with MininetBackend(spec, state_dir=tmp_path) as net:
        assert net.link_realisation["h1-r1"]["delay"] == "netem delay 10ms"
        assert "netem" in net.cmd("h1", ["tc", "qdisc", "show", "dev", "h1-eth0"])


def test_with_netem_delay_and_loss_become_an_htb_leaf() -> None:
    """The plan a kernel with sch_netem gets (this one may have none to run it on)."""
    spec = spec_of("single-path", bw_mbps=10.0, delay_ms=20.0, loss_pct=0.0)
    plan = plan_links(spec, netem=True)["h1-r1"]
    assert plan.realisation["delay"] == "netem delay 10ms"
    assert plan.realisation["loss"] == "none requested"
    assert set(plan.tc) == {"h1-eth0", "r1-eth0"}
    leaf = plan.tc["h1-eth0"][-1]
    # 100 queued packets plus what is in flight: 10 Mbit/s for 10 ms is 9 frames
    assert leaf == "qdisc add dev h1-eth0 parent 1:1 handle 10: netem delay 10ms limit 110"
    unshaped = plan_links(spec_of("single-path", bw_mbps=None, delay_ms=0.0, loss_pct=2.0), netem=True)["r1-h2"]
    assert unshaped.realisation["bw"] == "none requested"
    assert unshaped.tc["h2-eth0"] == [
        f"qdisc add dev h2-eth0 root handle 10: netem loss {unshaped.realisation['loss'].split()[-1]} limit 10000"
    ]


# --- captures


def test_pcaps_hold_the_tcp_packets_of_a_transfer(tmp_path: Path) -> None:
    spec = spec_of("single-path", bw_mbps=100.0, delay_ms=0.0)
    pcaps = tmp_path / "pcaps"
    with MininetBackend(spec, pcap_dir=pcaps, state_dir=tmp_path / "state") as net:
        size = 256 * 1024
        kernel_transfer(net, src="h1", dst="h2", dst_addr="10.0.2.2", size_bytes=size, seed=51, port=5002)
    assert sorted(p.name for p in pcaps.iterdir()) == sorted(f"{i}.pcap" for i in spec.interfaces)
    linktype, packets = read_pcap_linktype(pcaps / "h1-eth0.pcap")
    assert linktype == 1  # Ethernet
    ports = []
    for _t, frame in packets:
        if struct.unpack_from("!H", frame, 12)[0] != 0x0800 or frame[14 + 9] != 6:
            continue
        ihl = (frame[14] & 0x0F) * 4
        ports.append(struct.unpack_from("!HH", frame, 14 + ihl))
        assert len(frame) <= 1514  # offloads are off: real MTU-sized frames
    to_server = sum(1 for _src, dst in ports if dst == 5002)
    assert to_server >= size // 1448  # every data segment went past h1-eth0
    assert any(src == 5002 for src, _dst in ports)  # and the ACKs came back


# --- cleanup


def test_exit_removes_processes_interfaces_and_state(tmp_path: Path) -> None:
    spec = spec_of("single-path", delay_ms=0.0)
    with MininetBackend(spec, state_dir=tmp_path) as net:
        tracked = net.popen("h1", ["sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stray = int(net.host("h2").cmd("sleep 601 >/dev/null 2>&1 & echo $!").split()[-1])  # not tracked
        pids = {tracked.pid: process_start_time(tracked.pid), stray: process_start_time(stray)}
        pids |= {pid: process_start_time(pid) for pid in net.node_pids.values()}
        assert all(start is not None for start in pids.values())
        assert len(list(tmp_path.glob("*.json"))) == 1
    assert net.leftovers == []
    for pid, start in pids.items():
        assert wait_dead(pid, start), f"process {pid} survived"
    assert not (root_interfaces() & set(spec.interfaces))
    assert list(tmp_path.glob("*.json")) == []


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()], ids=["exception", "ctrl-c"])
def test_an_exception_in_the_with_block_still_cleans_up(tmp_path: Path, error: BaseException) -> None:
    spec = spec_of("two-paths", delay_ms=(0.0, 0.0))
    pids: dict[int, int | None] = {}
    with pytest.raises(type(error)), MininetBackend(spec, state_dir=tmp_path) as net:
        proc = net.popen("r1", ["sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        pids = {pid: process_start_time(pid) for pid in [proc.pid, *net.node_pids.values()]}
        raise error
    assert len(pids) == 5
    for pid, start in pids.items():
        assert wait_dead(pid, start), f"process {pid} survived"
    assert not (root_interfaces() & set(spec.interfaces))
    assert list(tmp_path.glob("*.json")) == []


def test_a_failing_configuration_command_names_node_and_line_and_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = topo.node_commands

    def broken(spec: TopologySpec, node: str, *args: Any, **kwargs: Any) -> topo.NodeCommands:
        cmds = real(spec, node, *args, **kwargs)
        if node == "r1":
            cmds.ip4.append("route add 10.9.9.9/32 via 10.8.8.8")  # no such neighbour
        return cmds

    monkeypatch.setattr(topo, "node_commands", broken)
    spec = spec_of("single-path", delay_ms=0.0)
    refused = pytest.raises(MininetCommandError, match=r"^r1: ip -4 -batch - failed .*\[line: route add 10\.9\.9\.9/32")
    with refused, MininetBackend(spec, state_dir=tmp_path):
        pytest.fail("a node whose configuration failed was used")
    assert list(tmp_path.glob("*.json")) == []
    assert not (root_interfaces() & set(spec.interfaces))


def test_ctrl_c_during_cleanup_is_raised_after_it() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), _sigint_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        done.append("cleanup finished")
    assert done == ["cleanup finished"]


CRASHING_RUN = """
import json, subprocess, sys, time
from lab.mininet import MininetBackend
from lab.topology import build_topology
from topologies import TOPOLOGIES

spec = build_topology("single-path", TOPOLOGIES["single-path"], delay_ms=0.0)
net = MininetBackend(spec, state_dir=sys.argv[1]).__enter__()
sleeper = net.popen("h1", ["sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
# nohup: outlives the hangup of h2's shell; PID 1 adopts it and nothing recorded it
stray = int(net.host("h2").cmd("nohup sleep 601 </dev/null >/dev/null 2>&1 & echo $!").split()[-1])
print(json.dumps({"sleeper": sleeper.pid, "stray": stray, "shells": list(net.node_pids.values())}), flush=True)
time.sleep(600)
"""


def test_clean_removes_what_a_killed_run_left(tmp_path: Path) -> None:
    state = tmp_path / "state"
    run = subprocess.Popen(
        [sys.executable, "-c", CRASHING_RUN, str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        started = read_json_line(run, timeout=60)
    finally:
        run.send_signal(signal.SIGKILL)  # the controller dies without cleaning up
        run.communicate(timeout=30)
    pids = {pid: process_start_time(pid) for pid in [started["sleeper"], started["stray"], *started["shells"]]}
    assert pids[started["sleeper"]] is not None, "the tracked process should outlive its killed controller"
    assert len(list(state.glob("*.json"))) == 1
    done = clean(state_dir=state)
    assert any("killed processes" in line for line in done), done
    for pid, start in pids.items():
        assert wait_dead(pid, start), f"process {pid} survived clean()"
    assert list(state.glob("*.json")) == []
    assert clean(state_dir=state) == []  # nothing left to do


def test_clean_leaves_a_live_run_alone(tmp_path: Path) -> None:
    spec = spec_of("single-path", delay_ms=0.0)
    with MininetBackend(spec, state_dir=tmp_path) as net:
        proc = net.popen("h1", ["sleep", "600"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        assert clean(state_dir=tmp_path) == []
        assert proc.poll() is None
        assert len(list(tmp_path.glob("*.json"))) == 1


# --- prerequisites and mn --custom


def test_missing_prerequisites_are_one_line_naming_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    spec = spec_of("single-path", delay_ms=0.0)
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "mnexec" else real_which(name, *a, **k))
    with pytest.raises(ConfigError, match=r"mnexec.*apt install mininet"), MininetBackend(spec, state_dir=tmp_path):
        pass
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(ConfigError, match=r"needs root"), MininetBackend(spec, state_dir=tmp_path):
        pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(shutil.which("mn") is None, reason="the mn command is not installed: apt install mininet")
def test_registered_topologies_work_as_mn_custom_topologies(tmp_path: Path) -> None:
    script = tmp_path / "pre.cli"
    script.write_text("h1 ip -4 -br addr\nr2 sysctl net.ipv4.ip_forward\n", encoding="utf-8")
    # its own PID namespace: if mn fails it runs Mininet's cleanup, which kills by name pattern
    mn = ["unshare", "--pid", "--fork", "--mount-proc", "mn", "--controller", "none"]
    custom = ["--custom", "lab/mininet/custom.py"]
    proc = subprocess.run(
        [*mn, *custom, "--topo", "two-paths,delay_ms=0:0", "--pre", str(script), "--test", "none"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    shown = proc.stdout + proc.stderr  # Mininet's CLI logs what the commands print
    assert "10.0.1.1/24" in shown and "10.0.3.1/24" in shown
    assert "net.ipv4.ip_forward = 1" in shown
    assert "tcplab link h1-r2: bw htb rate 5mbit" in shown
    refused = subprocess.run(
        [*mn, *custom, "--topo", "two-paths,bogus=1", "--test", "none"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        check=False,
    )
    assert refused.returncode == 2
    assert refused.stderr.strip().startswith("tcplab: topology two-paths: unknown parameter"), refused.stderr[-2000:]
