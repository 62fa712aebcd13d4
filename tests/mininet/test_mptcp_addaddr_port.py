"""ADD_ADDR with a port (RFC 8684 §3.4.1) between our MPTCP and Linux on Mininet two-paths.

Linux joins the port our server announces; our client joins the port a Linux
server announces with ``ip mptcp endpoint add ADDR dev IF port P signal``.
tshark on h1's captures sees the ADD_ADDR with its port and the MP_JOIN SYN to it.
Over IPv6, Linux joins the IPv6 address our server announces.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.mininet.run import run_mininet_scenario
from lab.scenario import Scenario
from lab.scenario.mptcp import MptcpTransfer
from lab.trace import TraceRecord, read_jsonl
from tests.mininet.test_endpoint import clean_machine  # noqa: F401 - a fixture

MIB = 1024 * 1024
SIZE = 24 * MIB
PORT = 5001
JOIN_PORT = 10100
H1 = ("10.0.1.1", "10.0.3.1")  # path A, path B
H2 = ("10.0.2.2", "10.0.4.2")
PATHS = {"delay_ms": (0.0, 0.0), "bw_mbps": (20.0, 20.0)}  # each path a bottleneck: both carry data
CAPTURE = ["h1-eth0", "h1-eth1"]


def _run(transfer: MptcpTransfer, out: Path) -> tuple[dict, list[TraceRecord], dict]:
    scenario = Scenario(
        name="mptcp-addaddr-port",
        description="ADD_ADDR with a port between our MPTCP and Linux",
        topology="two-paths",
        topology_params=PATHS,
        transfers=(transfer,),
        time_limit_s=120.0,
    )
    result = run_mininet_scenario(scenario, out_dir=out, pcap_interfaces=CAPTURE)
    assert result.errors == [] and not result.timed_out, result.summary()
    (t,) = result.transfers
    assert t.ok and t.bytes_received == t.bytes_expected and t.sha256_received == t.sha256_expected, t.to_dict()
    return t.extra, list(read_jsonl(out / "trace.jsonl")), result.endpoints


def _wire(pcaps: Path) -> tuple[set[tuple[str, str, int, bool]], set[tuple[str, str, int]]]:
    """(ADD_ADDRs as (sender, address, port or 0, echo), MP_JOIN SYNs as (src, dst, dst port)) tshark sees."""
    if shutil.which("tshark") is None:
        pytest.fail("tshark is not installed: apt install tshark")
    fields = ["ip.src", "ip.dst", "tcp.dstport", "tcp.flags.syn", "tcp.flags.ack"]
    fields += [
        "tcp.options.mptcp.subtype",
        "tcp.options.mptcp.ipv4",
        "tcp.options.mptcp.port",
        "tcp.options.mptcp.echo",
    ]
    adds, joins = set(), set()
    for name in CAPTURE:
        argv = ["tshark", "-n", "-r", str(pcaps / f"{name}.pcap"), "-T", "fields", "-E", "aggregator=;"]
        for f in fields:
            argv += ["-e", f]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=True).stdout
        for line in out.splitlines():
            src, dst, dport, syn, ack, subtypes, addr, port, echo = (line.split("\t") + [""] * 9)[:9]
            subtypes_l = subtypes.split(";")
            if "3" in subtypes_l:
                adds.add((src, addr, int(port or 0), echo in ("1", "True")))
            if "1" in subtypes_l and syn in ("1", "True") and ack in ("0", "False"):
                joins.add((src, dst, int(dport)))
    return adds, joins


def _carried(records: list[TraceRecord], host: str) -> dict[str, int]:
    """Bytes each of our subflows on ``host`` moved (its TCP figures, sampled every 0.1 s)."""
    out: dict[str, int] = {}
    for r in records:
        if r.node == host and r.layer == "tcp" and r.name == "metrics_updated":
            moved = max(r.data.get("bytes_sent", 0), r.data.get("bytes_received", 0))
            out[r.data["conn"]] = max(out.get(r.data["conn"], 0), moved)
    return out


@pytest.mark.mininet
def test_linux_client_joins_the_port_our_server_announces(tmp_path: Path, clean_machine: None) -> None:  # noqa: F811
    transfer = MptcpTransfer(
        size_bytes=SIZE,
        port=PORT,
        src_stack="kernel-mptcp",
        server={"path_manager": "paired", "announce_port": JOIN_PORT},
        wait_for_close=True,
    )
    extra, records, endpoints = _run(transfer, tmp_path)
    client = extra["client"]
    assert client["is_mptcp"] == 1 and client["fallback"] is False and client["add_addr_accepted"] == 1, client
    counters = endpoints["h1"]["stats"]["mptcp_counters"]
    # Linux verified our ADD_ADDR's HMAC (over the port) and echoed it; its join got our SYN/ACK
    assert counters.get("AddAddr") == 1 and counters.get("MPJoinSynAckRx", 0) >= 1, counters
    assert counters.get("AddAddrDrop") is None, counters
    ours = [r for r in records if r.node == "h2" and r.layer == "mptcp"]
    assert [r.data for r in ours if r.name == "error"] == []
    sent = [o for r in ours if r.name == "segment_sent" for o in r.data["mptcp"] if o["subtype"] == "ADD_ADDR"]
    assert any(o["port"] == JOIN_PORT and o["truncated_hmac"] for o in sent), sent
    received = [o for r in ours if r.name == "segment_received" for o in r.data["mptcp"] if o["subtype"] == "ADD_ADDR"]
    assert any(o["port"] == JOIN_PORT and o["truncated_hmac"] is None for o in received), "Linux's echo with the port"
    joined = {r.data["subflow"] for r in ours if r.name == "state_updated" and r.data.get("to") == "ESTABLISHED"}
    on_port = [s for s in joined if s.startswith(f"{H2[1]}:{JOIN_PORT}->")]
    assert on_port, joined
    carried = _carried(records, "h2")
    assert max(carried.get(s, 0) for s in on_port) >= MIB, carried
    adds, joins = _wire(tmp_path / "pcaps")
    assert (H2[0], H2[1], JOIN_PORT, False) in adds and (H1[0], H2[1], JOIN_PORT, True) in adds, adds
    assert any(dst == H2[1] and dport == JOIN_PORT for _src, dst, dport in joins), joins


@pytest.mark.mininet
def test_our_client_joins_the_port_a_linux_server_announces(tmp_path: Path, clean_machine: None) -> None:  # noqa: F811
    transfer = MptcpTransfer(
        size_bytes=SIZE,
        port=PORT,
        dst_stack="kernel-mptcp",
        client={"path_manager": "paired"},
        kernel_announce_port=JOIN_PORT,
        wait_for_close=True,
    )
    extra, records, endpoints = _run(transfer, tmp_path)
    server = extra["server"]
    assert server["is_mptcp"] == 1 and server["fallback"] is False and server["subflows"] >= 1, server
    counters = endpoints["h2"]["stats"]["mptcp_counters"]
    assert counters.get("MPJoinAckRx", 0) >= 1, counters
    ours = [r for r in records if r.node == "h1" and r.layer == "mptcp"]
    assert [r.data for r in ours if r.name == "error"] == []  # the HMAC over address and port verified
    assert any(r.data.get("address_added") == H2[1] for r in ours)
    echoes = [
        o
        for r in ours
        if r.name == "segment_sent"
        for o in r.data["mptcp"]
        if o["subtype"] == "ADD_ADDR" and o["truncated_hmac"] is None
    ]
    assert echoes and all(o["port"] == JOIN_PORT for o in echoes), echoes
    joined = {r.data["subflow"] for r in ours if r.name == "state_updated" and r.data.get("to") == "ESTABLISHED"}
    on_port = [s for s in joined if s.endswith(f"->{H2[1]}:{JOIN_PORT}")]
    assert on_port, joined
    carried = _carried(records, "h1")
    assert max(carried.get(s, 0) for s in on_port) >= MIB, carried
    adds, joins = _wire(tmp_path / "pcaps")
    assert (H2[0], H2[1], JOIN_PORT, False) in adds and (H1[0], H2[1], JOIN_PORT, True) in adds, adds
    assert (H1[1], H2[1], JOIN_PORT) in joins, joins


def test_kernel_announce_port_is_checked() -> None:
    with pytest.raises(ConfigError, match="kernel-mptcp server"):
        MptcpTransfer(kernel_announce_port=JOIN_PORT)
    for bad in (0, 70000, PORT, True):
        with pytest.raises(ConfigError, match="kernel_announce_port"):
            MptcpTransfer(dst_stack="kernel-mptcp", kernel_announce_port=bad, port=PORT)


@pytest.mark.mininet
def test_linux_client_joins_the_ipv6_address_our_server_announces(tmp_path: Path, clean_machine: None) -> None:  # noqa: F811
    """MPTCP over IPv6 against Linux: MP_CAPABLE, our 28-byte IPv6 ADD_ADDR (HMAC checked by the
    kernel), and the kernel's MP_JOIN to that address, data on both subflows."""
    transfer = MptcpTransfer(
        size_bytes=SIZE,
        port=PORT,
        src_stack="kernel-mptcp",
        server={"path_manager": "paired"},
        ipv6=True,
        wait_for_close=True,
    )
    extra, records, endpoints = _run(transfer, tmp_path)
    client = extra["client"]
    assert client["is_mptcp"] == 1 and client["fallback"] is False and client["add_addr_accepted"] == 1, client
    counters = endpoints["h1"]["stats"]["mptcp_counters"]
    assert counters.get("AddAddr") == 1 and counters.get("MPJoinSynAckRx", 0) >= 1, counters
    ours = [r for r in records if r.node == "h2" and r.layer == "mptcp"]
    assert [r.data for r in ours if r.name == "error"] == []
    sent = [o for r in ours if r.name == "segment_sent" for o in r.data["mptcp"] if o["subtype"] == "ADD_ADDR"]
    assert any(o["address"] == "fd00:0:0:4::2" and o["truncated_hmac"] for o in sent), sent
    joined = {r.data["subflow"] for r in ours if r.name == "state_updated" and r.data.get("to") == "ESTABLISHED"}
    assert len(joined) == 2 and all(s.count("[") == 2 for s in joined), joined  # both subflows IPv6
    on_b = [s for s in joined if s.startswith("[fd00:0:0:4::2]:")]
    assert on_b and max(_carried(records, "h2").get(s, 0) for s in on_b) >= MIB
