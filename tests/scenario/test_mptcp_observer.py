"""The wire observer (lab.scenario.mptcp_observer) on Linux's own captures, checked against tshark's MPTCP
analysis: tokens from the MP_CAPABLE keys, subflows per connection, ADD_ADDR, DATA_FIN."""

from __future__ import annotations

import random
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.mininet.liverun import MininetRun, kernel_ends
from lab.pcap import read_pcap_linktype
from lab.runs import ControlUnavailable
from lab.scenario import Scenario
from lab.scenario.mptcp import MptcpTransfer
from lab.scenario.mptcp_observer import ListTracer, WireObserver, observe_pcap, tcp_filter
from lab.trace import TraceRecord

CAPTURES = Path("/work/shared/spec/captures")
# the client's addresses in each capture (the captures were taken in the client's namespace)
CLIENT = {
    "mptcp_v1_join_prio_rmaddr_fastclose.pcap": ("192.0.2.1", "198.51.100.1"),
    "mptcp_v1_checksum_mpc_data.pcap": ("192.0.2.1",),
    "mptcp_v1_addaddr_port.pcap": ("192.0.2.1", "198.51.100.1"),
    "mptcp_v1_ipv6_addaddr.pcap": ("2001:db8:1::1", "2001:db8:2::1"),
    "mptcp_v1_mpfail_infinite_mapping.pcap": ("192.0.2.1",),
}
SERVER = {
    "mptcp_v1_join_prio_rmaddr_fastclose.pcap": ("192.0.2.2", "198.51.100.2"),
    "mptcp_v1_checksum_mpc_data.pcap": ("192.0.2.2",),
    "mptcp_v1_addaddr_port.pcap": ("192.0.2.2", "198.51.100.2"),
    "mptcp_v1_ipv6_addaddr.pcap": ("2001:db8:1::2", "2001:db8:2::2"),
    "mptcp_v1_mpfail_infinite_mapping.pcap": ("192.0.2.2",),
}
FIELDS = [
    "tcp.stream",
    "ip.src",
    "ipv6.src",
    "tcp.flags.syn",
    "tcp.flags.ack",
    "tcp.options.mptcp.subtype",
    "mptcp.expected_token",
    "tcp.options.mptcp.recvtok",
    "tcp.options.mptcp.ipv4",
    "tcp.options.mptcp.ipv6",
    "tcp.options.mptcp.echo",
    "tcp.options.mptcp.datafin.flag",
]


def tshark_view(pcap: Path) -> dict:
    """What tshark makes of a capture: tokens by sender, MPTCP subflows (TCP streams whose SYN
    carries MP_CAPABLE or MP_JOIN), ADD_ADDR addresses (not echoes) by sender, DATA_FIN senders."""
    if shutil.which("tshark") is None:
        pytest.fail("tshark is not installed: apt install tshark")
    argv = ["tshark", "-n", "-r", str(pcap), "-o", "mptcp.analyze_mptcp:TRUE", "-T", "fields", "-E", "aggregator=;"]
    for name in FIELDS:
        argv += ["-e", name]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-500:]
    view: dict = {"tokens": {}, "subflows": set(), "add_addr": set(), "data_fin": set(), "join_tokens": set()}
    for line in proc.stdout.splitlines():
        cols = line.split("\t") + [""] * len(FIELDS)
        row = {name: [v for v in cols[i].split(";") if v] for i, name in enumerate(FIELDS)}
        src = (row["ip.src"] or row["ipv6.src"])[0]
        subtypes = row["tcp.options.mptcp.subtype"]
        syn = row["tcp.flags.syn"] in (["1"], ["True"])
        if "0" in subtypes and row["mptcp.expected_token"]:
            view["tokens"].setdefault(src, set()).update(int(t) for t in row["mptcp.expected_token"])
        if syn and row["tcp.flags.ack"] in (["0"], ["False"]) and ("0" in subtypes or "1" in subtypes):
            view["subflows"].add(int(row["tcp.stream"][0]))
        if syn and "1" in subtypes:
            view["join_tokens"] |= {int(t) for t in row["tcp.options.mptcp.recvtok"]}
        if "3" in subtypes and row["tcp.options.mptcp.echo"] in (["0"], ["False"]):
            view["add_addr"] |= {(src, a) for a in row["tcp.options.mptcp.ipv4"] + row["tcp.options.mptcp.ipv6"]}
        if "1" in row["tcp.options.mptcp.datafin.flag"]:
            view["data_fin"].add(src)
    return view


def wire_view(records: list[TraceRecord]) -> dict:
    keys = [r.data for r in records if r.name == "key_updated"]
    subflows = {r.data["subflow"] for r in records if r.data.get("to") == "SYN"}
    established = {r.data["subflow"] for r in records if r.data.get("to") == "ESTABLISHED"}
    return {
        "keys": keys,
        "subflows": subflows,
        "established": established,
        "added": {r.data["address_added"] for r in records if "address_added" in r.data},
        "data_fin_received": [r.data["data_fin_received"] for r in records if "data_fin_received" in r.data],
        "data_fin_acked": any("data_fin_acked" in r.data for r in records),
        "errors": [r.data for r in records if r.name == "error"],
    }


@pytest.mark.parametrize("name", sorted(CLIENT))
@pytest.mark.parametrize("side", ["client", "server"])
def test_records_from_a_linux_capture_match_tshark(name: str, side: str) -> None:
    pcap = CAPTURES / name
    mine, theirs = (CLIENT, SERVER) if side == "client" else (SERVER, CLIENT)
    records = observe_pcap(pcap, "h", mine[name])
    assert records and all(r.data.get("source") == "wire" and r.layer == "mptcp" for r in records)
    assert all(a.t <= b.t for a, b in zip(records, records[1:], strict=False))
    ts = tshark_view(pcap)
    ours = wire_view(records)
    # one connection; its tokens are what tshark computes from the keys each side sent
    assert len(ours["keys"]) == 1, ours["keys"]
    keys = ours["keys"][0]
    assert ts["tokens"] == {mine[name][0]: {keys["local_token"]}, theirs[name][0]: {keys["remote_token"]}}
    assert all(r.data["token"] == keys["local_token"] for r in records), "every record names the node's token"
    # every MP_JOIN SYN names the server's token, which is ours or the peer's
    assert ts["join_tokens"] <= {keys["remote_token"] if side == "client" else keys["local_token"]}
    # as many subflows as tshark sees MPTCP SYNs, each established
    assert len(ours["subflows"]) == len(ts["subflows"]) and ours["established"] == ours["subflows"]
    # ADD_ADDRs the node received (with a verified HMAC)
    assert ours["added"] == {addr for src, addr in ts["add_addr"] if src not in mine[name]}
    assert ours["errors"] == []
    # DATA_FIN: received when the peer sent one, acked when the node sent one
    assert bool(ours["data_fin_received"]) == any(src in theirs[name] for src in ts["data_fin"])


def test_subflow_figures_and_events_of_the_join_capture() -> None:
    records = observe_pcap(
        CAPTURES / "mptcp_v1_join_prio_rmaddr_fastclose.pcap", "h", CLIENT["mptcp_v1_join_prio_rmaddr_fastclose.pcap"]
    )
    closed = {r.data["subflow"]: r.data for r in records if r.data.get("to") == "CLOSED"}
    initial = "192.0.2.1:50774->192.0.2.2:5001"
    # payload bytes from the sequence numbers: 5 + 5 + 3000 + 5 + 5 each way on the initial subflow
    assert closed[initial]["bytes_sent"] == 3020 and closed[initial]["bytes_received"] == 3020
    assert closed[initial]["reset"] is True  # the abortive close
    joins = [r.data for r in records if r.data.get("to") == "ESTABLISHED" and "remote_id" in r.data]
    assert sorted(j["remote_id"] for j in joins) == [0, 1]  # to the announced address, and to the initial one
    assert any(r.data.get("backup") is True and "from" not in r.data for r in records)  # MP_PRIO sent
    assert [r.data["address_removed"] for r in records if "address_removed" in r.data] == [[1]]
    assert any(r.data.get("fastclose") for r in records)
    assert any(r.data.get("terminated") for r in records)
    metrics = [r.data for r in records if r.name == "metrics_updated"]
    assert metrics and all(m["cwnd"] is None and m["srtt_ms"] is not None for m in metrics)


def test_checksum_data_fin_and_fallback_from_captures() -> None:
    name = "mptcp_v1_checksum_mpc_data.pcap"
    records = observe_pcap(CAPTURES / name, "h", CLIENT[name])
    keys = next(r.data for r in records if r.name == "key_updated")
    assert keys["checksum"] is True
    # 5 + 5 + 2000 bytes from the server, then its DATA_FIN
    assert [r.data["data_fin_received"] for r in records if "data_fin_received" in r.data] == [2010]
    assert any(r.data.get("data_fin_acked") for r in records)
    name = "mptcp_v1_mpfail_infinite_mapping.pcap"
    records = observe_pcap(CAPTURES / name, "h", CLIENT[name])
    assert len([r for r in records if "mp_fail" in r.data]) == 2  # one each way
    assert any(r.data.get("infinite_mapping") for r in records)
    assert [r.data["fallback"] for r in records if "fallback" in r.data] == ["infinite mapping (after MP_FAIL)"]


def test_damaged_packets_are_counted_never_raised() -> None:
    linktype, frames = read_pcap_linktype(CAPTURES / "mptcp_v1_join_prio_rmaddr_fastclose.pcap")
    assert linktype == 276
    packets = [frame[20:] for _, frame in frames]
    tracer = ListTracer()
    observer = WireObserver("h", ["192.0.2.1", "198.51.100.1"], tracer)
    rng = random.Random(5)
    for i, packet in enumerate(packets * 3):
        cut = packet[: rng.randrange(0, len(packet) + 1)]
        flipped = bytearray(packet)
        flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        for variant in (cut, bytes(flipped), b"", b"\x45", bytes(rng.randrange(256) for _ in range(60))):
            observer.observe(variant, now=float(i))
    observer.sample(1e9)
    assert observer.malformed > 0 and observer.packets == 5 * 3 * len(packets)


def test_port_filter_keeps_other_connections_out() -> None:
    name = "mptcp_v1_addaddr_port.pcap"
    assert observe_pcap(CAPTURES / name, "h", CLIENT[name], ports=[4000]) == []
    records = observe_pcap(CAPTURES / name, "h", CLIENT[name], ports=[5001])
    subflows = {r.data["subflow"] for r in records if r.data.get("to") == "SYN"}
    assert subflows == {"192.0.2.1:35862->192.0.2.2:5001"}  # the join went to port 10100


def test_bpf_program_jumps_stay_inside() -> None:
    program = tcp_filter()
    assert program[-2][0] == program[-1][0] == 0x06  # ends in two returns: accept (cut), drop
    for pc, (code, jt, jf, _k) in enumerate(program):
        if code & 0x07 == 0x05:  # BPF_JMP: both targets inside the program
            assert pc + 1 + jt < len(program) and pc + 1 + jf < len(program)


KERNEL_SERVER = Scenario(
    name="kernel-server",
    description="our MPTCP client, a kernel MPTCP server",
    topology="two-paths",
    transfers=(MptcpTransfer(size_bytes=1024, dst_stack="kernel-mptcp", port=5002),),
)


def test_live_run_controls_before_the_start() -> None:
    """Without a running network: what a Mininet run refuses, and why (no root needed)."""
    assert kernel_ends(KERNEL_SERVER) == {"h2": {5002}}
    run = MininetRun(KERNEL_SERVER)
    assert run.controls == frozenset({"links", "middleboxes"})
    for call in (
        lambda: run.pause(True),
        lambda: run.step(0.1),
        lambda: run.set_speed(2.0),
        lambda: run.start_transfer(),
        lambda: run.stop_transfer(),
    ):
        with pytest.raises(ControlUnavailable):
            call()
    with pytest.raises(ControlUnavailable, match="simulated runs"):
        run.pause(True)
    with pytest.raises(ConfigError, match="no link named"):
        run.set_link_up("nowhere", False)
    with pytest.raises(ControlUnavailable, match="not running yet"):
        run.set_link_up("h1-r2", False)
    with pytest.raises(ConfigError, match="no middlebox policy"):
        run.set_middlebox_enabled("r9/none", True)
    assert {p.key for p in run.middlebox_policies()} >= {"r1/strip_tcp_options:30", "r2/strip_tcp_options:30"}
    assert run.status().text == "not started" and run.status().now == 0.0
    run.close()
    assert run.status().finished


def test_excluded_local_ports_and_a_four_tuple_used_again() -> None:
    name = "mptcp_v1_checksum_mpc_data.pcap"
    linktype, frames = read_pcap_linktype(CAPTURES / name)
    tracer = ListTracer()
    fenced = WireObserver("h", CLIENT[name], tracer, exclude_local_ports=[(35000, 36000)])
    for ts, frame in frames:
        fenced.observe(frame[20:], now=ts)
    assert tracer.records == []  # the client's port 35854 is the user-space stack's: not ours to report
    observer = WireObserver("h", CLIENT[name], tracer)
    for offset in (0.0, 100.0):  # the same connection twice, on the same four-tuple
        for ts, frame in frames:
            observer.observe(frame[20:], now=ts + offset)
    keys = [r for r in tracer.records if r.name == "key_updated"]
    assert len(keys) == 2 and len(observer.connections) == 2
    closed = [r for r in tracer.records if r.data.get("to") == "CLOSED"]
    assert len(closed) == 2 and all(r.data["bytes_received"] == 2010 for r in closed)


def test_a_retransmitted_syn_is_one_subflow() -> None:
    name = "mptcp_v1_addaddr_port.pcap"
    linktype, frames = read_pcap_linktype(CAPTURES / name)
    tracer = ListTracer()
    observer = WireObserver("h", CLIENT[name], tracer)
    for i, (ts, frame) in enumerate(frames):
        observer.observe(frame[20:], now=ts)
        if i in (0, 5):  # the first SYN and the MP_JOIN SYN, seen twice
            observer.observe(frame[20:], now=ts + 1e-6)
    assert len(observer.connections) == 1
    syns = [r for r in tracer.records if r.data.get("to") == "SYN"]
    assert len(syns) == 2  # the initial subflow and the join, once each
    assert len([r for r in tracer.records if r.name == "segment_sent" and r.data["flags"] == "S"]) == 4
