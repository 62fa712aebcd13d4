"""Our user-space MPTCP against Linux MPTCP on Mininet two-paths: both roles, DSS checksums,
fallback through an option stripper; tshark checks the captures independently."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.errors import ConfigError
from lab.mininet.run import MininetRunResult, run_mininet_scenario
from lab.scenario import Scenario, run_scenario
from lab.scenario.middlebox import StripTcpOptions
from lab.scenario.mptcp import MptcpBackToBack, MptcpTransfer
from lab.trace import TraceRecord, read_jsonl
from lab.wire.mptcp import MPTCP_KIND
from tests.mininet.test_endpoint import UNSHAPED, clean_machine  # noqa: F401 - a fixture

MIB = 1024 * 1024
SIZE = 64 * MIB
FALLBACK_SIZE = 16 * MIB  # each way, at once
PORT = 5001
H1 = ("10.0.1.1", "10.0.3.1")  # path A, path B
H2 = ("10.0.2.2", "10.0.4.2")
# each path a bottleneck below what either stack can do, so that both paths carry data
PATHS = {"delay_ms": (0.0, 0.0), "bw_mbps": (20.0, 20.0)}
# our end: one subflow per path, otherwise our defaults
USER = {"path_manager": "paired"}
CAPTURE = ["h1-eth0", "h1-eth1"]  # everything h1 sends and receives, on both paths


def _scenario(src_stack: str, dst_stack: str, *, checksum: bool) -> Scenario:
    client = USER if src_stack == "user" else {}
    server = USER if dst_stack == "user" else {}
    return Scenario(
        name=f"mptcp-{src_stack}-to-{dst_stack}" + ("-csum" if checksum else ""),
        description="MPTCP between our stack and Linux over both paths of two-paths, 20 Mbit/s each",
        topology="two-paths",
        topology_params=PATHS,
        transfers=(
            MptcpTransfer(
                size_bytes=SIZE,
                port=PORT,
                src_stack=src_stack,
                dst_stack=dst_stack,
                client={**client, "checksum": checksum},
                server={**server, "checksum": checksum},
                wait_for_close=True,
            ),
        ),
        time_limit_s=180.0,
    )


def _run(scenario: Scenario, out: Path, capture: list[str]) -> tuple[MininetRunResult, list[TraceRecord]]:
    result = run_mininet_scenario(scenario, out_dir=out, pcap_interfaces=capture)
    assert result.errors == [] and not result.timed_out, result.summary()
    for host, info in result.endpoints.items():
        assert info["exit_status"] == 0, (host, info)
    for t in result.transfers:
        assert t.ok and t.bytes_received == t.bytes_expected and t.sha256_received == t.sha256_expected, t.to_dict()
    return result, list(read_jsonl(out / "trace.jsonl"))


KERNEL_CSUM_0 = "TCP Checksum 0xffff instead of 0x0000 (see RFC 1624)"
MANGLED_0 = "checksum 0xffff for 0x0000"

SCAN_FIELDS = [
    "frame.time_epoch",
    "ip.src",
    "ip.dst",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.flags.syn",
    "tcp.flags.ack",
    "tcp.flags.fin",
    "tcp.flags.reset",
    "_ws.malformed",
    "tcp.checksum.status",
    "ip.checksum.status",
    "_ws.expert.severity",
    "_ws.expert.message",
    "tcp.options.mptcp.subtype",
    "mptcp.expected_token",
    "tcp.options.mptcp.recvtok",
    "tcp.options.mptcp.checksumreq.flags",
    "tcp.options.mptcp.datafin.flag",
    "tcp.options.mptcp.ipv4",
]


def _scan(pcap: Path, ports: tuple[int, ...]) -> dict[str, Any]:
    """One tshark pass over a capture (MPTCP analysis on, TCP/IP checksums checked, the
    payload on ``ports`` decoded as plain data): malformed packets, expert errors, bad
    checksums and resets, and what it sees of MPTCP: tokens by address from the
    MP_CAPABLE keys, the receiver token of each MP_JOIN SYN, ADD_ADDRs, DATA_FINs, FINs,
    the checksum-required flag of MP_CAPABLE SYNs, and senders of any MPTCP option."""
    if shutil.which("tshark") is None:
        pytest.fail("tshark is not installed: apt install tshark")
    argv = ["tshark", "-n", "-r", str(pcap), "-o", "mptcp.analyze_mptcp:TRUE"]
    argv += ["-o", "tcp.check_checksum:TRUE", "-o", "ip.check_checksum:TRUE"]
    for port in ports:
        argv += ["-d", f"tcp.port=={port},data"]
    argv += ["-T", "fields", "-E", "aggregator=;"]
    for name in SCAN_FIELDS:
        argv += ["-e", name]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-500:]
    view: dict[str, Any] = {"expected_token": {}, "join_tokens": set(), "add_addr": set(), "csum_flag": set()}
    view |= {"data_fin": {}, "fin": {}, "resets": [], "reset_details": [], "mptcp_from": set(), "problems": []}
    for line in proc.stdout.splitlines():
        cols = line.split("\t") + [""] * len(SCAN_FIELDS)
        row = {name: [v for v in cols[i].split(";") if v] for i, name in enumerate(SCAN_FIELDS)}
        frame, src = float(row["frame.time_epoch"][0]), (row["ip.src"] or [""])[0]
        severities = [int(v, 0) for v in row["_ws.expert.severity"]]
        messages = row["_ws.expert.message"]
        if row["_ws.malformed"] or "0" in row["ip.checksum.status"]:
            view["problems"].append((frame, src, "malformed or bad checksum", messages))
        elif "0" in row["tcp.checksum.status"]:
            # a 0xffff written for 0x0000 is its own kind (tolerated from kernels by _check_clean);
            # the notes beside it (e.g. "Duplicate ACK") are not problems
            kind = MANGLED_0 if KERNEL_CSUM_0 in messages else "malformed or bad checksum"
            view["problems"].append((frame, src, kind, messages))
            others = [m for m, v in zip(messages, severities, strict=False) if v >= 0x800000 and m != KERNEL_CSUM_0]
            if kind == MANGLED_0 and others:
                view["problems"].append((frame, src, "expert error", others))
        elif any(v >= 0x800000 for v in severities):  # PI_ERROR
            view["problems"].append((frame, src, "expert error", row["_ws.expert.message"]))
        if row["tcp.flags.reset"] in (["1"], ["True"]):
            view["resets"].append(frame)
            ends = (src, *row["tcp.srcport"], *row["ip.dst"], *row["tcp.dstport"])
            view["reset_details"].append((frame, ends, row["tcp.options.mptcp.subtype"]))
        if row["tcp.flags.fin"] in (["1"], ["True"]):
            view["fin"][src] = min(frame, view["fin"].get(src, frame))
        subtypes = row["tcp.options.mptcp.subtype"]
        if subtypes:
            view["mptcp_from"].add(src)
        if "0" in subtypes:
            view["expected_token"].setdefault(src, set()).update(int(t) for t in row["mptcp.expected_token"])
            if row["tcp.flags.syn"] == ["1"]:
                view["csum_flag"].add(row["tcp.options.mptcp.checksumreq.flags"] == ["1"])
        if "1" in subtypes and row["tcp.flags.syn"] == ["1"] and row["tcp.flags.ack"] == ["0"]:
            view["join_tokens"] |= {(src, int(t)) for t in row["tcp.options.mptcp.recvtok"]}
        if "3" in subtypes:
            view["add_addr"] |= {(src, a) for a in row["tcp.options.mptcp.ipv4"]}
        if "1" in row["tcp.options.mptcp.datafin.flag"]:
            view["data_fin"][src] = min(frame, view["data_fin"].get(src, frame))
    return view




def _check_clean(
    view: dict[str, Any],
    name: str,
    closing: dict[str, float],
    ends: tuple[tuple[str, ...], ...],
    *,
    kernel: tuple[str, ...] = (),
) -> None:
    """No malformed packet, expert error or bad checksum; no reset before each end (a
    tuple of its addresses) began closing (``closing``: when each sender's first DATA_FIN
    or FIN went by; a reset after that can only answer a segment that came once the
    run had ended and the fences were gone). Linux's software checksum
    (skb_checksum_help) writes a computed 0x0000 as 0xffff (CSUM_MANGLED_0), the same
    value in one's-complement arithmetic, which tshark flags: tolerated from ``kernel``."""
    problems = [p for p in view["problems"] if not (p[1] in kernel and p[2] == MANGLED_0)]
    assert problems == [], (name, problems[:5])
    began = [min((t for src, t in closing.items() if src in addrs), default=None) for addrs in ends]
    assert None not in began, (name, closing)
    early = [t for t in view["resets"] if t < max(began)]
    # each early reset with its ends (src, sport, dst, dport) and MPTCP subtypes (6 MP_FAIL, 8 MP_TCPRST)
    details = [d for d in view.get("reset_details", []) if d[0] in early]
    assert early == [], (name, details[:5] or early[:5], closing)


def _mptcp_view(pcaps: Path) -> dict[str, Any]:
    """h1's two captures, scanned and merged (one clock: h1's)."""
    merged: dict[str, Any] = {"expected_token": {}, "join_tokens": set(), "add_addr": set(), "csum_flag": set()}
    merged |= {"data_fin": {}, "resets": [], "reset_details": [], "problems": []}
    for name in CAPTURE:
        view = _scan(pcaps / f"{name}.pcap", (PORT,))
        for src, tokens in view["expected_token"].items():
            merged["expected_token"].setdefault(src, set()).update(tokens)
        for key in ("join_tokens", "add_addr", "csum_flag"):
            merged[key] |= view[key]
        for src, t in view["data_fin"].items():
            merged["data_fin"][src] = min(t, merged["data_fin"].get(src, t))
        merged["resets"] += view["resets"]
        merged["reset_details"] += view["reset_details"]
        merged["problems"] += view["problems"]
    return merged


def _ours(records: list[TraceRecord], host: str) -> dict[str, Any]:
    """Our end's MPTCP records on ``host``: its last key_updated, subflows and what they carried."""
    mine = [r for r in records if r.node == host and r.layer == "mptcp"]
    keys = [r.data for r in mine if r.name == "key_updated"]
    established = {r.data["subflow"] for r in mine if r.name == "state_updated" and r.data.get("to") == "ESTABLISHED"}
    carried: dict[str, int] = {}
    for r in records:  # the subflows' TCP figures, sampled every 0.1 s
        if r.node == host and r.layer == "tcp" and r.name == "metrics_updated" and r.data.get("conn") in established:
            moved = max(r.data.get("bytes_sent", 0), r.data.get("bytes_received", 0))
            carried[r.data["conn"]] = max(carried.get(r.data["conn"], 0), moved)
    return {
        "keys": keys[-1] if keys else {},
        "established": established,
        "carried": carried,
        "added": {r.data["address_added"] for r in mine if "address_added" in r.data},
        "sent": {o["subtype"] for r in mine if r.name == "segment_sent" for o in r.data.get("mptcp", [])},
        "received": {o["subtype"] for r in mine if r.name == "segment_received" for o in r.data.get("mptcp", [])},
        "fin": {k for r in mine for k in ("data_fin_acked", "data_fin_received") if k in r.data},
        "errors": [r.data for r in mine if r.name == "error"],
        "fallback": [r.data["fallback"] for r in mine if "fallback" in r.data],
    }


def _check_user_end(facts: dict[str, Any], ours: dict[str, Any], *, checksum: bool) -> None:
    assert facts["mptcp"] is True and facts["fallback"] is None, facts
    assert facts["checksum"] is checksum and ours["keys"]["checksum"] is checksum
    assert ours["keys"]["local_token"] == facts["local_token"]
    assert ours["keys"]["remote_token"] == facts["remote_token"]
    assert facts["data_fin_acked"] and facts["data_fin_received"] and facts["peer_closed"], facts
    assert ours["fin"] == {"data_fin_acked", "data_fin_received"}
    assert ours["errors"] == [] and ours["fallback"] == []
    busy = [conn for conn, n in ours["carried"].items() if n >= MIB]
    assert len(busy) >= 2, ours["carried"]  # data on the initial subflow and on a join
    assert any(H1[1] in conn for conn in busy), ours["carried"]  # one of them on path B


def _check_kernel_end(facts: dict[str, Any], *, checksum: bool) -> None:
    assert facts["is_mptcp"] == 1 and facts["fallback"] is False and facts["remote_key_received"], facts
    assert facts["csum_enabled"] == int(checksum), facts
    assert facts["subflows"] >= 1, facts  # MP_JOIN subflows beside the initial one
    assert facts["peer_closed"] is True and facts["reset"] is False, facts


def _check_captures(
    view: dict[str, Any], *, ours: tuple[str, str], kernel: str, facts: dict[str, Any], checksum: bool
) -> None:
    """``ours``: our host's addresses (path A, path B); ``kernel``: the kernel host's path-A address."""
    # tshark derives each token from the key it saw in MP_CAPABLE: ours and the peer's match ours
    assert view["expected_token"] == {ours[0]: {facts["local_token"]}, kernel: {facts["remote_token"]}}, view
    # the checksum-required flag (RFC 8684 §3.1: A) in both SYNs
    assert view["csum_flag"] == {checksum}, view["csum_flag"]
    assert view["join_tokens"], view  # a join went out
    for src, token in view["join_tokens"]:  # each MP_JOIN SYN names its receiver's token
        assert token == (facts["remote_token"] if src in ours else facts["local_token"]), (src, token, facts)
    kernel_addrs = H1 if ours == H2 else H2
    _check_clean(view, "h1", view["data_fin"], (ours, kernel_addrs), kernel=kernel_addrs)  # DATA_FIN both ways


@pytest.mark.mininet
@pytest.mark.parametrize("checksum", [False, True], ids=["plain", "dss-checksum"])
def test_our_client_to_a_kernel_mptcp_server(tmp_path: Path, clean_machine: None, checksum: bool) -> None:  # noqa: F811
    result, records = _run(_scenario("user", "kernel-mptcp", checksum=checksum), tmp_path, CAPTURE)
    (transfer,) = result.transfers
    client, server = transfer.extra["client"], transfer.extra["server"]
    ours = _ours(records, "h1")
    _check_user_end(client, ours, checksum=checksum)
    _check_kernel_end(server, checksum=checksum)
    assert server["token"] == client["remote_token"]
    assert server["add_addr_signal"] == 1 and H2[1] in ours["added"]  # the kernel's ADD_ADDR, HMAC checked
    assert {"MP_CAPABLE", "MP_JOIN", "DSS", "ADD_ADDR"} <= ours["received"]
    counters = result.endpoints["h2"]["stats"]["mptcp_counters"]
    print("the kernel's MPTCP counters:", counters)  # shown with a failure: joins, MP_FAILs, resets
    assert counters.get("MPCapableACKRX") == 1 and counters.get("MPJoinAckRx", 0) >= 1, counters
    assert counters.get("EchoAdd") is not None, counters  # we echoed its ADD_ADDR
    view = _mptcp_view(tmp_path / "pcaps")
    _check_captures(view, ours=H1, kernel=H2[0], facts=client, checksum=checksum)
    assert (H2[0], H2[1]) in view["add_addr"]


@pytest.mark.mininet
@pytest.mark.parametrize("checksum", [False, True], ids=["plain", "dss-checksum"])
def test_a_kernel_mptcp_client_to_our_server(tmp_path: Path, clean_machine: None, checksum: bool) -> None:  # noqa: F811
    result, records = _run(_scenario("kernel-mptcp", "user", checksum=checksum), tmp_path, CAPTURE)
    (transfer,) = result.transfers
    client, server = transfer.extra["client"], transfer.extra["server"]
    ours = _ours(records, "h2")
    _check_user_end(server, ours, checksum=checksum)
    _check_kernel_end(client, checksum=checksum)
    assert client["token"] == server["remote_token"]
    assert client["add_addr_accepted"] == 1, client  # our ADD_ADDR of h2's path-B address
    assert "ADD_ADDR" in ours["sent"] and {"MP_CAPABLE", "MP_JOIN", "DSS"} <= ours["received"]
    counters = result.endpoints["h1"]["stats"]["mptcp_counters"]
    print("the kernel's MPTCP counters:", counters)  # shown with a failure: joins, MP_FAILs, resets
    assert counters.get("MPJoinSynAckRx", 0) >= 1 and counters.get("AddAddr") == 1, counters
    view = _mptcp_view(tmp_path / "pcaps")
    _check_captures(view, ours=H2, kernel=H1[0], facts=server, checksum=checksum)
    assert (H2[0], H2[1]) in view["add_addr"]


def _stripped(router: str) -> tuple[str, Callable[[], StripTcpOptions]]:
    return router, lambda: StripTcpOptions([MPTCP_KIND])


@pytest.mark.mininet
def test_an_option_stripper_makes_both_directions_fall_back_to_tcp(tmp_path: Path, clean_machine: None) -> None:  # noqa: F811
    scenario = Scenario(
        name="mptcp-kernel-stripped",
        description="TCPOPTSTRIP of option 30 on both routers between our MPTCP and Linux MPTCP",
        topology="two-paths",
        topology_params=UNSHAPED,
        middleboxes=(_stripped("r1"), _stripped("r2")),
        transfers=(
            MptcpTransfer(name="to-kernel", size_bytes=FALLBACK_SIZE, port=PORT, dst_stack="kernel-mptcp", client=USER),
            MptcpTransfer(name="to-us", size_bytes=FALLBACK_SIZE, port=PORT + 1, src_stack="kernel-mptcp", server=USER),
        ),
        time_limit_s=180.0,
    )
    result, records = _run(scenario, tmp_path, ["h1-eth0", "h2-eth0"])
    to_kernel, to_us = (t.extra for t in result.transfers)
    assert to_kernel["client"]["fallback"] == "no MP_CAPABLE in the SYN/ACK" and to_kernel["client"]["mptcp"] is False
    assert to_kernel["server"]["is_mptcp"] == 0 and to_kernel["server"]["reset"] is False
    assert to_us["server"]["mptcp"] is False and to_us["server"]["fallback"], to_us["server"]
    assert to_us["client"]["is_mptcp"] == 0 and to_us["client"]["reset"] is False
    assert [r.data for r in records if r.layer == "mptcp" and r.name == "error"] == []
    # what crossed the routers carried no MPTCP option: only h1's own packets on h1-eth0 had them
    for name, own, other in (("h1-eth0", H1, H2), ("h2-eth0", H2, H1)):
        view = _scan(tmp_path / "pcaps" / f"{name}.pcap", (PORT, PORT + 1))
        _check_clean(view, name, view["fin"], (H1, H2), kernel=H1 + H2)
        assert not view["mptcp_from"] & set(other), (name, view["mptcp_from"])
        if name == "h1-eth0":
            assert view["mptcp_from"] == {H1[0]}, view["mptcp_from"]  # our SYN and the kernel's asked for MPTCP


# --- without Mininet


def test_kernel_ends_take_only_what_linux_can_do_and_need_a_live_backend() -> None:
    with pytest.raises(ConfigError, match="takes only checksum"):
        MptcpTransfer(src_stack="kernel-mptcp", client={"scheduler": "round_robin"})
    with pytest.raises(ConfigError, match="no MPTCP settings"):
        MptcpTransfer(dst_stack="kernel", server={"checksum": True})
    with pytest.raises(ConfigError, match="stack must be one of"):
        MptcpTransfer(dst_stack="kernel-tcp")
    with pytest.raises(ConfigError, match="same host"):
        MptcpBackToBack(transfers=(MptcpTransfer(), MptcpTransfer(src="h2", dst="h1", port=5002)))
    with pytest.raises(ConfigError, match="port of its own"):
        MptcpBackToBack(transfers=(MptcpTransfer(), MptcpTransfer()))
    scenario = Scenario(
        name="k",
        description="",
        topology="two-paths",
        transfers=(MptcpTransfer(size_bytes=MIB, dst_stack="kernel-mptcp", server={}),),
    )
    with pytest.raises(ConfigError, match="live backend"):
        run_scenario(scenario)


def test_in_the_simulator_results_are_as_before_and_wait_for_close_waits() -> None:
    def run(**kw: Any) -> Any:
        transfer = MptcpTransfer(size_bytes=MIB, client=USER, server=USER, **kw)
        return run_scenario(Scenario(name="s", description="", topology="two-paths", transfers=(transfer,)))

    plain, waiting = run(), run(wait_for_close=True)
    assert plain.ok and waiting.ok
    (a,), (b,) = plain.transfers, waiting.transfers
    assert a.extra == {} and b.extra == {}  # the ends' facts are for live runs only
    assert a.completed_at == b.completed_at  # the same end of the data ...
    assert waiting.network.now > plain.network.now  # ... but the run went on until the close
