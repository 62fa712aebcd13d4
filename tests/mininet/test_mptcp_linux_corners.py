"""Our MPTCP client against a Linux MPTCP server on Mininet two-paths, where independent
testing found it wanting: failover to a backup subflow when the active path's link goes
down, short flows, resets after our DATA_FIN, and Linux's ADD_ADDR sent once.

Figures (failover time, median short-flow completion) are printed; run with ``-s`` to see them.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab.errors import ConfigError
from lab.mininet.run import MininetRunResult, run_mininet_scenario
from lab.scenario import LinkEvent, Scenario
from lab.scenario.mptcp import MptcpBackToBack, MptcpTransfer
from lab.trace import TraceRecord, read_jsonl
from tests.mininet.test_endpoint import clean_machine  # noqa: F401 - a fixture

KIB = 1024
MIB = 1024 * KIB
PORT = 5001
H1 = ("10.0.1.1", "10.0.3.1")  # path A, path B
H2 = ("10.0.2.2", "10.0.4.2")
CAPTURE = ["h1-eth0", "h1-eth1"]  # everything h1 sends and receives, on both paths
# each path a bottleneck below what either stack can do
PATHS = {"delay_ms": (0.0, 0.0), "bw_mbps": (20.0, 20.0)}

FAILOVER_SIZE = 6 * MIB  # ~2.5 s at 20 Mbit/s: path A goes down with most of it still to send
LINK_DOWN_S = 1.0
FAILOVER_WITHIN_S = 2.0


def _records(out: Path) -> list[TraceRecord]:
    return list(read_jsonl(out / "trace.jsonl"))


def _check_byte_exact(result: MininetRunResult) -> None:
    assert result.errors == [] and not result.timed_out, result.summary()
    for t in result.transfers:
        assert t.ok and t.bytes_received == t.bytes_expected and t.sha256_received == t.sha256_expected, t.to_dict()


def _data_sent_on(records: list[TraceRecord], host: str, local_addr: str) -> list[float]:
    """When ``host`` sent a segment carrying data from ``local_addr`` (our TCP's records)."""
    return [
        r.t
        for r in records
        if r.node == host
        and r.layer == "tcp"
        and r.name == "segment_sent"
        and str(r.data.get("conn", "")).startswith(f"{local_addr}:")
        and r.data.get("len", 0) > 0
    ]


def _resets_from(pcaps: Path, addrs: tuple[str, ...], names: list[str] = CAPTURE) -> list[tuple[str, str, int]]:
    """The RSTs sent from ``addrs`` in the captures ``names`` (by tshark), as (source, destination, port)."""
    if shutil.which("tshark") is None:
        pytest.fail("tshark is not installed: apt install tshark")
    found = []
    for name in names:
        argv = ["tshark", "-n", "-r", str(pcaps / f"{name}.pcap"), "-Y", "tcp.flags.reset == 1"]
        argv += ["-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "tcp.srcport"]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
        for line in out.splitlines():
            src, dst, port = line.split("\t")
            if src in addrs:
                found.append((src, dst, int(port)))
    return found


# --- 1. failover to a backup subflow, our side sending


@pytest.mark.mininet
@pytest.mark.parametrize("marked_by", ["linux", "us"])
def test_our_sender_fails_over_to_the_backup_subflow_when_path_a_goes_down(
    tmp_path: Path,
    clean_machine: None,  # noqa: F811
    marked_by: str,
) -> None:
    """Path B's subflow is a backup, marked by Linux (a ``signal backup`` endpoint: the B flag
    in its MP_JOIN SYN/ACK) or by us (the B flag in our MP_JOIN SYN); path A's link r1-h2
    goes down 1 s into the transfer. With the default scheduler our client moves the
    transfer to the backup within 2 s and Linux gets every byte."""
    client: dict[str, Any] = {"path_manager": "paired"}
    if marked_by == "us":
        client["backup_addresses"] = (H1[1],)
    scenario = Scenario(
        name=f"mptcp-failover-{marked_by}",
        description="our client to Linux MPTCP; path B a backup; path A's link goes down mid-transfer",
        topology="two-paths",
        topology_params=PATHS,
        link_events=(LinkEvent(at_s=LINK_DOWN_S, link="r1-h2", up=False),),
        transfers=(
            MptcpTransfer(
                size_bytes=FAILOVER_SIZE,
                port=PORT,
                dst_stack="kernel-mptcp",
                client=client,
                kernel_backup=marked_by == "linux",
            ),
        ),
        time_limit_s=60.0,
    )
    result = run_mininet_scenario(scenario, out_dir=tmp_path, pcap_interfaces=CAPTURE)
    _check_byte_exact(result)
    records = _records(tmp_path)
    (down,) = [
        r.t for r in records if r.layer == "link" and r.name == "state_updated" and r.data.get("up") is False
    ]
    mine = [r for r in records if r.node == "h1" and r.layer == "mptcp"]
    assert [r.data for r in mine if r.name == "error"] == []
    established = [
        r.data
        for r in mine
        if r.name == "state_updated"
        and r.data.get("to") == "ESTABLISHED"
        and str(r.data.get("subflow", "")).startswith(f"{H1[1]}:")
    ]
    assert established and established[0]["backup"] is True, established  # path B's subflow is a backup
    joins = [
        o
        for r in mine
        if r.name == ("segment_received" if marked_by == "linux" else "segment_sent")
        for o in r.data.get("mptcp", [])
        if o["subtype"] == "MP_JOIN" and "backup" in o
    ]
    assert any(o["backup"] for o in joins), joins  # the B flag: in Linux's SYN/ACK, or in our SYN
    on_backup = _data_sent_on(records, "h1", H1[1])
    assert on_backup, "no data ever went over path B"
    assert min(on_backup) > down, (min(on_backup), down)  # idle as a backup while path A worked
    switched_s = min(on_backup) - down
    print(f"\nfailover, backup marked by {marked_by}: first data on the backup {switched_s * 1000:.0f} ms "
          "after path A's link went down")
    assert switched_s < FAILOVER_WITHIN_S, switched_s
    # Linux reset nothing (our stack resets what is left when the run stops)
    assert _resets_from(tmp_path / "pcaps", H2) == [], "Linux reset a subflow"
    server = result.transfers[0].extra["server"]
    assert server["is_mptcp"] == 1 and server["fallback"] is False, server
    # Linux announced path B once: we echoed its ADD_ADDR the first time
    counters = result.endpoints["h2"]["stats"]["mptcp_counters"]
    print(f"AddAddrTx {counters.get('AddAddrTx')}, EchoAdd {counters.get('EchoAdd')}")
    assert counters.get("AddAddrTx") == 1 and counters.get("EchoAdd") == 1, counters


# --- 2. short flows: 100 x 10 KiB, our client and Linux's against the same Linux server

SHORT_FLOWS = 100
SHORT_SIZE = 10 * KIB
SHORT_WITHIN = 1.5  # our median completion time at most this many times Linux's


def _short_flows(out: Path, client_stack: str) -> list[float]:
    """Completion times (s, from the client's connect to the server's end of stream) of
    SHORT_FLOWS back-to-back 10 KiB MPTCP transfers to a Linux MPTCP server on two-paths
    (its default paths: 10 ms and 40 ms round trips)."""
    flows = tuple(
        MptcpTransfer(
            name=f"short-{i}",
            size_bytes=SHORT_SIZE,
            port=PORT + i,
            src_stack=client_stack,
            dst_stack="kernel-mptcp",
            client={},
            server={},
        )
        for i in range(SHORT_FLOWS)
    )
    scenario = Scenario(
        name=f"mptcp-short-flows-{client_stack}",
        description="100 short MPTCP flows, one after the other, to a Linux MPTCP server",
        topology="two-paths",
        transfers=(MptcpBackToBack(transfers=flows, gap_s=0.02),),
        time_limit_s=90.0,
    )
    result = run_mininet_scenario(scenario, out_dir=out, pcaps=False)
    _check_byte_exact(result)
    assert len(result.transfers) == SHORT_FLOWS
    times = []
    for t in result.transfers:
        assert t.started_at is not None and t.completed_at is not None, t.to_dict()
        times.append(t.completed_at - t.started_at)
    return times


@pytest.mark.mininet
def test_short_flows_from_our_client_complete_about_as_fast_as_from_linux(
    tmp_path: Path,
    clean_machine: None,  # noqa: F811
) -> None:
    ours = _short_flows(tmp_path / "ours", "user")
    linux = _short_flows(tmp_path / "linux", "kernel-mptcp")
    ours_ms, linux_ms = statistics.median(ours) * 1000, statistics.median(linux) * 1000
    print(f"\n{SHORT_FLOWS} x {SHORT_SIZE // KIB} KiB to Linux MPTCP: median completion ours {ours_ms:.1f} ms, "
          f"Linux {linux_ms:.1f} ms (ratio {ours_ms / linux_ms:.2f}); "
          f"p90 ours {sorted(ours)[SHORT_FLOWS * 9 // 10] * 1000:.1f} ms, "
          f"Linux {sorted(linux)[SHORT_FLOWS * 9 // 10] * 1000:.1f} ms")
    assert ours_ms <= SHORT_WITHIN * linux_ms, (ours_ms, linux_ms)


# --- 3 and 4. no reset from Linux after our DATA_FIN, and Linux's ADD_ADDR sent once

CLOSE_RUNS = 20
CLOSE_SIZE = 1 * MIB  # both paths carry data before the DATA_FIN


@pytest.mark.mininet
def test_linux_resets_nothing_after_our_data_fin_and_sends_each_add_addr_once(
    tmp_path: Path,
    clean_machine: None,  # noqa: F811
) -> None:
    """20 connections, one after the other, from our client (a subflow per path) to Linux,
    each closed at the data level both ways: Linux sends no RST on any subflow, and
    announces path B once per connection (our first echo is taken)."""
    flows = tuple(
        MptcpTransfer(
            name=f"close-{i}",
            size_bytes=CLOSE_SIZE,
            port=PORT + i,
            dst_stack="kernel-mptcp",
            client={"path_manager": "paired"},
            wait_for_close=True,
        )
        for i in range(CLOSE_RUNS)
    )
    scenario = Scenario(
        name="mptcp-data-fin-to-linux",
        description="20 MPTCP connections to Linux, each closed with DATA_FIN both ways",
        topology="two-paths",
        topology_params=PATHS,
        transfers=(MptcpBackToBack(transfers=flows, gap_s=0.05),),
        time_limit_s=90.0,
    )
    result = run_mininet_scenario(scenario, out_dir=tmp_path, pcap_interfaces=CAPTURE)
    _check_byte_exact(result)
    records = _records(tmp_path)
    mine = [r for r in records if r.node == "h1" and r.layer == "mptcp"]
    assert [r.data for r in mine if r.name == "error"] == []
    acked = [r for r in mine if r.name == "state_updated" and r.data.get("data_fin_acked")]
    received = [r for r in mine if r.name == "state_updated" and "data_fin_received" in r.data]
    assert len(acked) == len(received) == CLOSE_RUNS, (len(acked), len(received))
    for i in (0, 1):  # both paths carried data in every connection
        senders = {str(r.data["conn"]).split("->")[1] for r in records if r.node == "h1" and r.layer == "tcp"
                   and r.name == "segment_sent" and r.data.get("len", 0) > 0 and r.data["conn"].startswith(H1[i])}
        assert len(senders) == CLOSE_RUNS, (i, len(senders))
    linux_resets = _resets_from(tmp_path / "pcaps", H2)
    counters = result.endpoints["h2"]["stats"]["mptcp_counters"]
    print(f"\n{CLOSE_RUNS} connections closed with DATA_FIN: {len(linux_resets)} RSTs from Linux; "
          f"AddAddrTx {counters.get('AddAddrTx')}, EchoAdd {counters.get('EchoAdd')}")
    assert linux_resets == [], linux_resets[:5]
    assert counters.get("AddAddrTx") == CLOSE_RUNS and counters.get("EchoAdd") == CLOSE_RUNS, counters


def test_kernel_backup_is_checked() -> None:
    with pytest.raises(ConfigError, match="kernel_backup needs a kernel-mptcp server"):
        MptcpTransfer(kernel_backup=True)
    MptcpTransfer(dst_stack="kernel-mptcp", kernel_backup=True)
