"""Our user-space TCP in Mininet hosts on real packets, against the kernel's TCP, fenced from its own kernel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.mininet.run import MininetRunResult, run_mininet_scenario
from lab.scenario import Scenario, Transfer
from lab.trace import read_jsonl

pytestmark = pytest.mark.mininet

MIB = 1024 * 1024
UNSHAPED = {"delay_ms": (0.0, 0.0), "bw_mbps": (1000.0, 1000.0)}


# --- the machine is left as it was


def _descendants(pid: int) -> set[tuple[int, str]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    out: set[tuple[int, str]] = set()
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        out.add((child, cmdline.strip()))
        todo += children.get(child, [])
    return out


def _endpoint_processes() -> set[int]:
    """Endpoint processes anywhere on the machine started by this test process's runs
    (their config lives in a temporary directory named after the run)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if b"lab.mininet.endpoint" in cmdline and b"/tcplab-mininet-" in cmdline:
                found.add(int(entry))
    return found


def system_state() -> dict[str, Any]:
    """What a run must leave as it found it: named namespaces, root links, the root
    nft ruleset, this process's children, and endpoint processes."""

    def run(argv: list[str]) -> str:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False).stdout

    links = sorted(link["ifname"] for link in json.loads(run(["ip", "-j", "link", "show"]) or "[]"))
    return {
        "netns": run(["ip", "netns", "list"]),
        "links": links,
        "nft": run(["nft", "list", "ruleset"]),
        "children": {cmd for _pid, cmd in _descendants(os.getpid())},
        "endpoints": _endpoint_processes(),
    }


def _leftovers(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What is in ``after`` and was not in ``before``. Other users of the machine may
    remove their namespaces and links meanwhile; only what appeared counts."""
    netns = set(after["netns"].splitlines()) - set(before["netns"].splitlines())
    out = {
        "netns": sorted(netns),
        "links": sorted(set(after["links"]) - set(before["links"])),
        "children": sorted(after["children"] - before["children"]),
        "endpoints": sorted(after["endpoints"] - before["endpoints"]),
    }
    out = {k: v for k, v in out.items() if v}
    if after["nft"] != before["nft"]:
        out["nft"] = after["nft"]
    return out


def assert_same_state(before: dict[str, Any], *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while (left := _leftovers(before, system_state())) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert left == {}


@pytest.fixture
def clean_machine() -> Iterator[None]:
    """Fails the test unless namespaces, links, the ruleset and processes are as before."""
    before = system_state()
    yield
    assert_same_state(before)


# --- helpers


def tshark_problems(pcap: Path, *, data_ports: tuple[int, ...] = (5001,)) -> dict[str, Any]:
    """Malformed packets, expert errors, bad checksums and RSTs in a capture, by tshark.
    The payload on ``data_ports`` is decoded as plain data: random bytes would otherwise
    tempt a heuristic dissector (Thrift) into reporting errors in what is no Thrift."""
    if shutil.which("tshark") is None:
        pytest.fail("tshark is not installed: apt install tshark")
    argv = ["tshark", "-n", "-r", str(pcap), "-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]
    for port in data_ports:
        argv += ["-d", f"tcp.port=={port},data"]
    proc = subprocess.run(
        [*argv, "-T", "fields", "-e", "frame.number", "-e", "tcp.flags.reset", "-e", "_ws.malformed",
         "-e", "tcp.checksum.status", "-e", "ip.checksum.status", "-e", "_ws.expert.severity",
         "-e", "_ws.expert.message"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-500:]
    out = dict.fromkeys(("malformed", "expert_errors", "bad_checksums", "resets"), 0)
    frames = 0
    details: list[str] = []
    for line in proc.stdout.splitlines():
        cols = line.split("\t") + [""] * 7
        frames += 1
        if "0xffff instead of 0x0000" in cols[6]:
            # RFC 1624: 0xffff and 0x0000 are the same one's-complement checksum (-0 and +0);
            # tshark flags the first form, which a sender may write (Linux can): not an error
            cols[3] = cols[3].replace("0", "1")
            cols[5] = ",".join(s for s in cols[5].split(",") if s and int(s, 0) < 0x800000)
        if cols[1] in ("1", "True"):
            out["resets"] += 1
        if cols[2]:
            out["malformed"] += 1
        if "0" in (cols[3], cols[4]):  # 0: Bad, 1: Good, 2: Unverified
            out["bad_checksums"] += 1
        if any(int(s, 0) >= 0x800000 for s in cols[5].split(",") if s):
            out["expert_errors"] += 1
        if (
            any(out.values())
            and len(details) < 5
            and line not in details
            and (
                cols[1] in ("1", "True")
                or cols[2]
                or "0" in (cols[3], cols[4])
                or any(int(s, 0) >= 0x800000 for s in cols[5].split(",") if s)
            )
        ):
            details.append(f"frame {cols[0]}: {cols[6]}")
    out["frames"] = frames
    return out | {"details": details} if details else out


def transfer_scenario(src_stack: str, dst_stack: str, *, size_bytes: int, name: str = "bulk") -> Scenario:
    return Scenario(
        name=f"{src_stack}-to-{dst_stack}",
        description="one bulk transfer over path A of two-paths, unshaped",
        topology="two-paths",
        topology_params=UNSHAPED,
        transfers=(Transfer(name=name, size_bytes=size_bytes, src_stack=src_stack, dst_stack=dst_stack),),
        time_limit_s=120.0,
    )


def check_run(result: MininetRunResult, size_bytes: int) -> None:
    assert result.errors == []
    assert not result.timed_out
    (t,) = result.transfers
    assert t.bytes_received == size_bytes
    assert t.sha256_received == t.sha256_expected
    assert t.ok, t.to_dict()
    for host, info in result.endpoints.items():
        assert info["exit_status"] == 0, (host, info)


# --- the tests


def test_user_space_client_to_kernel_server_64_mib(tmp_path: Path, clean_machine: None) -> None:
    size = 64 * MIB
    result = run_mininet_scenario(
        transfer_scenario("user", "kernel", size_bytes=size),
        out_dir=tmp_path,
        pcap_interfaces=["h1-eth0"],
        trace=False,
    )
    check_run(result, size)
    h1, h2 = result.endpoints["h1"], result.endpoints["h2"]
    assert h1["user_stack"] is True and h2["user_stack"] is False
    assert h2["kernel_ports"] == [5001] and h2["fence"] is None
    # the fence did its work: h1's kernel got the ACKs of h2 and dropped them, silently
    assert h1["fence_dropped"]["tcp_packets"] > 1000
    problems = tshark_problems(tmp_path / "pcaps" / "h1-eth0.pcap")
    assert problems["frames"] > size // 1500
    assert problems["resets"] == 0, problems
    assert problems["malformed"] == 0 and problems["bad_checksums"] == 0 and problems["expert_errors"] == 0, problems


def test_kernel_client_to_user_space_server_64_mib(tmp_path: Path, clean_machine: None) -> None:
    size = 64 * MIB
    result = run_mininet_scenario(
        transfer_scenario("kernel", "user", size_bytes=size),
        out_dir=tmp_path,
        pcap_interfaces=["h2-eth0"],
        trace=False,
    )
    check_run(result, size)
    h1, h2 = result.endpoints["h1"], result.endpoints["h2"]
    assert h1["user_stack"] is False and h2["user_stack"] is True
    assert h2["fence"]["tcp"] == [[5001, 5001], [40000, 60999]]
    assert h2["fence_dropped"]["tcp_packets"] > size // 1500  # every data segment reached h2's kernel: dropped
    problems = tshark_problems(tmp_path / "pcaps" / "h2-eth0.pcap")
    assert problems["frames"] > size // 1500
    assert problems["resets"] == 0, problems
    assert problems["malformed"] == 0 and problems["bad_checksums"] == 0 and problems["expert_errors"] == 0, problems


def test_user_space_and_kernel_stacks_share_a_host_without_stealing_segments(
    tmp_path: Path, clean_machine: None
) -> None:
    """h2 runs our server on 5001 and a kernel server on 5002 at once; h1 sends to both
    from our stack and from its kernel. Each stack only sees its own segments."""
    size = 8 * MIB
    scenario = Scenario(
        name="mixed",
        description="user-space and kernel transfers side by side",
        topology="two-paths",
        topology_params=UNSHAPED,
        transfers=(
            Transfer(name="user", size_bytes=size, port=5001),
            Transfer(name="kernel", size_bytes=size, port=5002, src_stack="kernel", dst_stack="kernel"),
            Transfer(name="user-to-kernel", size_bytes=size, port=5003, dst_stack="kernel", dst_interface=1),
        ),
        time_limit_s=120.0,
    )
    result = run_mininet_scenario(scenario, out_dir=tmp_path, pcaps=False)
    assert result.errors == [] and not result.timed_out
    assert [t.name for t in result.transfers] == ["user", "kernel", "user-to-kernel"]
    for t in result.transfers:
        assert t.ok, t.to_dict()
    assert result.endpoints["h2"]["kernel_ports"] == [5002, 5003]
    records = list(read_jsonl(tmp_path / "trace.jsonl"))
    # our stacks never answered a segment meant for a kernel socket
    resets = [r for r in records if r.layer == "tcp" and r.name == "segment_sent" and "R" in r.data["flags"]]
    assert resets == []
    ours = {r.data["conn"] for r in records if r.layer == "tcp" and r.name == "segment_received"}
    assert all(":5001" in conn for conn in ours if conn.startswith("10.0.2.2") or "->10.0.2.2" in conn)
    kernel = [r for r in records if r.layer == "kernel" and r.name == "state_updated"]
    assert {r.node for r in kernel} == {"h1", "h2"}
    closed = [r for r in kernel if r.data["event"] == "closed"]
    assert closed and all(r.data["reset"] is False and r.data["snd_mss"] > 0 for r in closed)
    sampled = [r for r in records if r.layer == "kernel" and r.name == "metrics_updated"]
    assert sampled and all(r.data["rtt_us"] > 0 for r in sampled)
    # the kernel's own client port came from the range the fence leaves it
    h1_kernel = [r for r in kernel if r.node == "h1" and r.data["event"] == "established"]
    port = int(h1_kernel[0].data["conn"].split("->")[0].rsplit(":", 1)[1])
    assert 32768 <= port <= 39999
