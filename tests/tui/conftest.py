"""Fixtures for the TUI tests: the built-in scenarios, apps on simulated and replayed runs,
and synthetic trace fixtures for layers whose endpoints are not in the tree yet."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from lab.runs import ReplayRun
from lab.scenario import Scenario, Transfer
from lab.sim.liverun import SimRun
from lab.trace import TraceRecord
from lab.wire.eno import GlobalSuboption, SynEnoOption, TepSuboption, push_syn_eno_option
from topologies.scenarios import SCENARIOS
from tui.app import LabApp

TWO_PATHS: Scenario = SCENARIOS["two-paths"]
SINGLE_PATH: Scenario = SCENARIOS["single-path"]
SMALL_TWO_PATHS: Scenario = replace(
    TWO_PATHS, name="two-paths-small", transfers=(Transfer(size_bytes=256 * 1024),), main_view="topology"
)


async def until_finished(app: LabApp, pilot, *, limit_s: float = 60.0) -> None:
    """Let the run go until its record stream ends, then let the app settle."""
    waited = 0.0
    while not app.finished and waited < limit_s:
        await pilot.pause(0.05)
        waited += 0.05
    assert app.finished, "the run did not finish"
    await pilot.pause()


async def eventually(pilot, predicate, *, limit_s: float = 10.0) -> None:
    """Wait until ``predicate()`` holds (controls go through the run's worker; a loaded machine is slow)."""
    waited = 0.0
    while not predicate() and waited < limit_s:
        await pilot.pause(0.05)
        waited += 0.05
    assert predicate(), f"condition not reached in time; the app's problems: {pilot.app.problems[-3:]}"


def sim_app(scenario: Scenario = SMALL_TWO_PATHS, **kw) -> LabApp:
    return LabApp(SimRun(scenario, seed=1, speed=None, **kw))


def write_trace(path: Path, records: list[TraceRecord], topology: dict | None = None) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "trace.jsonl").write_text("".join(r.to_json() + "\n" for r in records))
    if topology is not None:
        (path / "topology.json").write_text(json.dumps(topology))
    return path


def replay_app(path: Path) -> LabApp:
    return LabApp(ReplayRun(path, speed=None))


TWO_HOSTS_TOPOLOGY = {
    "name": "two-hosts",
    "nodes": [{"name": "h1", "kind": "host"}, {"name": "h2", "kind": "host"}],
    "links": [{"name": "h1-h2", "a": "h1", "b": "h2", "bw_mbps": 10.0, "delay_ms": 5.0, "loss_pct": 0.0}],
    "interfaces": [
        {"name": "h1-eth0", "node": "h1", "link": "h1-h2", "ipv4": "10.0.1.1", "ipv6": "fd00:0:0:1::1", "peer": "h2"},
        {"name": "h2-eth0", "node": "h2", "link": "h1-h2", "ipv4": "10.0.1.2", "ipv6": "fd00:0:0:1::2", "peer": "h1"},
    ],
    "diagram": "h1 ─── h2",
}

SF_A = "10.0.1.1:40000->10.0.2.2:5001"
SF_B = "10.0.3.1:40001->10.0.4.2:5001"


def synthetic_mptcp_trace() -> list[TraceRecord]:
    """A synthetic trace fixture in the mptcp record shapes: two subflows, DSS mappings,
    a reinjection, keys, then a fallback."""
    token = 0x1A2B3C4D
    r = []
    r.append(
        TraceRecord(
            0.01,
            "h1",
            "mptcp",
            "key_updated",
            {
                "token": token,
                "local_key": "00aa",
                "remote_key": "00bb",
                "local_token": token,
                "remote_token": 0x55,
                "idsn": 7,
            },
        )
    )
    r.append(
        TraceRecord(
            0.02,
            "h1",
            "mptcp",
            "state_updated",
            {
                "conn": SF_A,
                "token": token,
                "subflow": SF_A,
                "address_id": 0,
                "from": "SYN_SENT",
                "to": "ESTABLISHED",
                "backup": False,
            },
        )
    )
    r.append(
        TraceRecord(
            0.03,
            "h1",
            "mptcp",
            "segment_sent",
            {"conn": SF_A, "subflow": SF_A, "mptcp": [{"subtype": "MP_JOIN", "address_id": 1, "backup": True}]},
        )
    )
    r.append(
        TraceRecord(
            0.05,
            "h1",
            "mptcp",
            "state_updated",
            {
                "conn": SF_A,
                "token": token,
                "subflow": SF_B,
                "address_id": 1,
                "from": "SYN_SENT",
                "to": "ESTABLISHED",
                "backup": True,
            },
        )
    )
    for i in range(5):
        t = 0.1 + i * 0.1
        r.append(
            TraceRecord(
                t,
                "h1",
                "mptcp",
                "segment_sent",
                {
                    "conn": SF_A,
                    "subflow": SF_A,
                    "mptcp": [
                        {
                            "subtype": "DSS",
                            "data_seq": 1000 + i * 1448,
                            "subflow_seq": 1 + i * 1448,
                            "data_level_length": 1448,
                        }
                    ],
                },
            )
        )
        for sf, rate in ((SF_A, 8e6 + i * 1e5), (SF_B, 2e6 - i * 1e5)):
            r.append(
                TraceRecord(
                    t,
                    "h1",
                    "mptcp",
                    "metrics_updated",
                    {
                        "token": token,
                        "subflow": sf,
                        "srtt_ms": 10.0 + i,
                        "cwnd": 14480 + i * 1448,
                        "bytes_sent": 100000 * (i + 1),
                        "bytes_acked": 90000 * (i + 1),
                        "rate_bps": rate,
                    },
                )
            )
    r.append(
        TraceRecord(
            0.6,
            "h1",
            "mptcp",
            "state_updated",
            {"token": token, "reinjected": {"data_seq": 2448, "len": 1448, "from_subflow": SF_B, "to_subflow": SF_A}},
        )
    )
    r.append(
        TraceRecord(
            0.7,
            "h1",
            "mptcp",
            "state_updated",
            {"token": token, "fallback": "MPTCP option stripped by a middlebox (no DSS on the first data segment)"},
        )
    )
    return r


def eno_option_data(option: SynEnoOption) -> str:
    """The trace's ``data`` for an ENO option (the bytes after kind and length), hex."""
    return push_syn_eno_option(option)[2:].hex()


def synthetic_eno_trace(*, stripped: bool) -> list[TraceRecord]:
    """A synthetic trace fixture: a handshake whose SYN and SYN/ACK carry real ENO options
    (encoded by lab.wire.eno); with ``stripped`` the SYN/ACK arrives without it."""
    client = "10.0.1.1:40000->10.0.1.2:7"
    server = "10.0.1.2:7->10.0.1.1:40000"
    syn_opt = {"kind": 69, "data": eno_option_data(SynEnoOption(suboptions=(TepSuboption(0x21), TepSuboption(0x22))))}
    synack_opt = {
        "kind": 69,
        "data": eno_option_data(SynEnoOption(suboptions=(GlobalSuboption(passive_role=True), TepSuboption(0x21)))),
    }
    mss = {"kind": "MSS", "value": 1460}
    r = [
        TraceRecord(
            0.0,
            "h1",
            "tcp",
            "segment_sent",
            {"conn": client, "flags": "S", "seq": 100, "ack": 0, "len": 0, "win": 65535, "options": [mss, syn_opt]},
        ),
        TraceRecord(
            0.005,
            "h2",
            "tcp",
            "segment_received",
            {"conn": server, "flags": "S", "seq": 100, "ack": 0, "len": 0, "win": 65535, "options": [mss, syn_opt]},
        ),
        TraceRecord(
            0.005,
            "h2",
            "tcp",
            "segment_sent",
            {
                "conn": server,
                "flags": "SA",
                "seq": 900,
                "ack": 101,
                "len": 0,
                "win": 65535,
                "options": [mss, synack_opt],
            },
        ),
        TraceRecord(
            0.01,
            "h1",
            "tcp",
            "segment_received",
            {
                "conn": client,
                "flags": "SA",
                "seq": 900,
                "ack": 101,
                "len": 0,
                "win": 65535,
                "options": [mss] if stripped else [mss, synack_opt],
            },
        ),
        TraceRecord(
            0.01,
            "h1",
            "tcp",
            "segment_sent",
            {"conn": client, "flags": "A", "seq": 101, "ack": 901, "len": 0, "win": 65535, "options": []},
        ),
    ]
    return r


def synthetic_eno_records(*, stripped: bool) -> list[TraceRecord]:
    """A synthetic trace fixture in the eno/tcpcrypt record shapes of docs/trace.md: host A offers
    TEPs 0x23 0x21, host B picks 0x23; with ``stripped`` a middlebox removed ENO from the SYN."""
    a_conn = "10.0.1.1:43353->10.0.2.2:5001"
    b_conn = "10.0.2.2:5001->10.0.1.1:43353"
    syn = {
        "conn": a_conn,
        "segment": "SYN",
        "form": "syn",
        "option": "45042321",
        "b": False,
        "a": False,
        "teps": ["0x23", "0x21"],
        "suboptions": [{"tep": "0x23", "v": False, "data": ""}, {"tep": "0x21", "v": False, "data": ""}],
    }
    r = [
        TraceRecord(
            0.0,
            "h1",
            "eno",
            "state_updated",
            {"conn": a_conn, "from": "closed", "to": "syn-sent", "input": "active open"},
        ),
        TraceRecord(0.0, "h1", "eno", "segment_sent", syn),
    ]
    if stripped:
        return r + [
            TraceRecord(0.02, "h2", "eno", "segment_received", {"conn": b_conn, "segment": "SYN", "option": None}),
            TraceRecord(
                0.02,
                "h2",
                "eno",
                "state_updated",
                {
                    "conn": b_conn,
                    "from": "listen",
                    "to": "fallback",
                    "input": "ENO failed, opportunistic",
                    "reason": "no_eno_option",
                    "detail": "the SYN carries no ENO option",
                    "policy": "opportunistic",
                },
            ),
        ]
    sid = "23c852b92af5e8e324c7b81fa95d9aec8419cfe19ef134171acb9b69ee13a2f088"
    agreed = {
        "role": "B",
        "tep": "0x23",
        "tep_name": "TCPCRYPT_ECDHE_Curve25519",
        "why": "last TEP in host B's SYN-form option that host A also offered",
        "local_a": False,
        "remote_a": False,
        "local_b": True,
        "remote_b": False,
    }
    return r + [
        TraceRecord(0.02, "h2", "eno", "segment_received", {**syn, "conn": b_conn}),
        TraceRecord(
            0.02,
            "h2",
            "eno",
            "state_updated",
            {"conn": b_conn, "from": "listen", "to": "awaiting-ack", "input": "agreed", **agreed},
        ),
        TraceRecord(
            0.02,
            "h2",
            "eno",
            "segment_sent",
            {
                "conn": b_conn,
                "segment": "SYN-ACK",
                "form": "syn",
                "option": "45040123",
                "b": True,
                "a": False,
                "teps": ["0x23"],
            },
        ),
        TraceRecord(
            0.04,
            "h1",
            "eno",
            "segment_received",
            {
                "conn": a_conn,
                "segment": "SYN-ACK",
                "form": "syn",
                "option": "45040123",
                "b": True,
                "a": False,
                "teps": ["0x23"],
            },
        ),
        TraceRecord(
            0.04,
            "h1",
            "eno",
            "state_updated",
            {
                "conn": a_conn,
                "from": "syn-sent",
                "to": "negotiated",
                "input": "agreed",
                **agreed,
                "role": "A",
                "local_b": False,
                "remote_b": True,
            },
        ),
        TraceRecord(
            0.04, "h1", "eno", "segment_sent", {"conn": a_conn, "segment": "ACK", "form": "non-syn", "option": "4502"}
        ),
        TraceRecord(
            0.06,
            "h2",
            "tcpcrypt",
            "key_updated",
            {
                "conn": b_conn,
                "session_id": sid,
                "tep": "TCPCRYPT_ECDHE_Curve25519",
                "aead": "AEAD_AES_128_GCM",
                "role": "B",
                "direction": "both",
                "generation": 0,
            },
        ),
        TraceRecord(
            0.06,
            "h2",
            "eno",
            "state_updated",
            {"conn": b_conn, "from": "negotiated", "to": "encrypted", "input": "TEP keys ready", "session_id": sid},
        ),
        TraceRecord(
            0.08,
            "h1",
            "tcpcrypt",
            "key_updated",
            {
                "conn": a_conn,
                "session_id": sid,
                "tep": "TCPCRYPT_ECDHE_Curve25519",
                "aead": "AEAD_AES_128_GCM",
                "role": "A",
                "direction": "both",
                "generation": 0,
            },
        ),
        TraceRecord(
            0.08,
            "h1",
            "eno",
            "state_updated",
            {"conn": a_conn, "from": "negotiated", "to": "encrypted", "input": "TEP keys ready", "session_id": sid},
        ),
    ]


def synthetic_ike_trace() -> list[TraceRecord]:
    """A synthetic trace fixture in the ike/iketcp/esp shapes of docs/trace.md: IKE over UDP 500
    blocked (a retransmission, the timeout), then IKE over TCP 4500 with its prefix and ESP."""
    sa = "9697b36b78d8cb96"
    sa2 = "346fffb14c30aa0c"
    drop = {"policy": "block_udp", "reason": "UDP port blocked", "sport": 500, "dport": 500, "ingress": "r1-eth0"}
    return [
        TraceRecord(
            0.0,
            "h1",
            "ike",
            "state_updated",
            {
                "event": "connect",
                "transport": "fallback",
                "fallback": "sequential",
                "plan": ["udp:500", "tcp:4500"],
                "session": "ike",
            },
        ),
        TraceRecord(
            0.0,
            "h1",
            "ike",
            "state_updated",
            {"attempt": 1, "event": "started", "transport": "udp", "port": 500, "session": "ike"},
        ),
        TraceRecord(
            0.0,
            "h1",
            "ike",
            "state_updated",
            {"sa": sa, "from": "IDLE", "to": "INIT_SENT", "input": "start", "transport": "udp"},
        ),
        TraceRecord(
            0.0,
            "h1",
            "ike",
            "segment_sent",
            {
                "sa": sa,
                "exchange": "IKE_SA_INIT",
                "message_id": 0,
                "response": False,
                "length": 260,
                "transport": "udp",
                "port": 500,
            },
        ),
        TraceRecord(0.001, "r1", "middlebox", "segment_dropped", drop),
        TraceRecord(
            0.5,
            "h1",
            "ike",
            "segment_sent",
            {
                "sa": sa,
                "exchange": "IKE_SA_INIT",
                "message_id": 0,
                "response": False,
                "length": 260,
                "transport": "udp",
                "port": 500,
                "retransmission": 1,
            },
        ),
        TraceRecord(0.501, "r1", "middlebox", "segment_dropped", drop),
        TraceRecord(
            2.0,
            "h1",
            "ike",
            "state_updated",
            {"attempt": 1, "event": "timeout", "transport": "udp", "port": 500, "after_s": 2.0, "session": "ike"},
        ),
        TraceRecord(
            2.0,
            "h1",
            "ike",
            "state_updated",
            {
                "sa": sa,
                "from": "INIT_SENT",
                "to": "FAILED",
                "input": "abandon",
                "transport": "udp",
                "detail": "timeout",
            },
        ),
        TraceRecord(
            2.0,
            "h1",
            "iketcp",
            "state_updated",
            {"conn": "ike/1", "event": "connecting", "remote": "10.0.2.2:4500", "session": "ike"},
        ),
        TraceRecord(2.04, "h1", "iketcp", "segment_sent", {"kind": "prefix", "length": 6, "conn": "ike/1"}),
        TraceRecord(
            2.04,
            "h1",
            "iketcp",
            "state_updated",
            {
                "conn": "ike/1",
                "event": "connected",
                "local": "10.0.1.1:40000",
                "remote": "10.0.2.2:4500",
                "after_s": 0.04,
                "session": "ike",
            },
        ),
        TraceRecord(
            2.04,
            "h1",
            "ike",
            "state_updated",
            {"sa": sa2, "from": "IDLE", "to": "INIT_SENT", "input": "start", "transport": "tcp"},
        ),
        TraceRecord(2.04, "h1", "iketcp", "segment_sent", {"kind": "ike", "length": 264, "conn": "ike/1"}),
        TraceRecord(
            2.1,
            "h1",
            "ike",
            "state_updated",
            {"sa": sa2, "from": "AUTH_SENT", "to": "ESTABLISHED", "input": "recv_auth_response", "transport": "tcp"},
        ),
        TraceRecord(
            2.1,
            "h1",
            "tcp",
            "state_updated",
            {"conn": "10.0.1.1:40000->10.0.2.2:4500", "from": "SYN-SENT", "to": "ESTABLISHED", "input": "RECV_SYNACK"},
        ),
        TraceRecord(
            2.4,
            "h1",
            "esp",
            "metrics_updated",
            {
                "transport": "tcp",
                "packets_sent": 33,
                "bytes_sent": 35144,
                "packets_received": 33,
                "bytes_received": 35144,
                "packets_dropped": 0,
            },
        ),
    ]


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    return tmp_path / "bundle"
