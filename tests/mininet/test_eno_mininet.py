"""TCP-ENO and tcpcrypt between two user-space endpoints on Mininet: real packets, real captures.

Each endpoint process builds only its own end (the client's extension on h1,
the server's on h2), so what one end must check about the other (outcome,
TEP, session ID) is compared here, over the merged summary and the trace.
The captures are read with a parser of this file's own (Ethernet, IPv4, TCP)
and by tshark.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lab.mininet.run import MininetRunResult, run_mininet_scenario
from lab.pcap import read_pcap_linktype
from lab.scenario import run_scenario
from lab.scenario.eno import verdict
from lab.stack.apps import TransferResult, bulk_payload
from lab.trace import read_jsonl
from tests.mininet.test_endpoint import clean_machine, tshark_problems  # noqa: F401 - a fixture
from topologies.eno_scenarios import SCENARIOS

INTERFACES = ("h1-eth0", "r1-eth0", "r1-eth1", "h2-eth0")
ENO_KINDS = {69, 253}  # RFC 8547 kind, and the experimental kind with ExID 0x454E
SLICE_BYTES = 24
SLICES = 256
SEED = 1


@dataclass(frozen=True)
class Segment:
    sport: int
    dport: int
    flags: int
    option_kinds: tuple[int, ...]
    payload: bytes

    @property
    def syn(self) -> bool:
        return bool(self.flags & 0x02)

    @property
    def ack(self) -> bool:
        return bool(self.flags & 0x10)


def option_kinds(options: bytes) -> tuple[int, ...]:
    kinds, i = [], 0
    while i < len(options):
        kind = options[i]
        kinds.append(kind)
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2:
            raise AssertionError(f"bad TCP option length at {i}: {options.hex()}")
        i += options[i + 1]
    return tuple(kinds)


def tcp_segments(pcap: Path) -> Iterator[Segment]:
    """The IPv4 TCP segments of an Ethernet capture."""
    linktype, frames = read_pcap_linktype(pcap)
    assert linktype == 1, f"{pcap}: link type {linktype}, not Ethernet"
    for _t, frame in frames:
        if frame[12:14] != b"\x08\x00":
            continue
        ip = frame[14:]
        if ip[9] != 6:
            continue
        ihl = (ip[0] & 0x0F) * 4
        (total,) = struct.unpack("!H", ip[2:4])
        tcp = ip[ihl:total]
        sport, dport = struct.unpack("!HH", tcp[:4])
        offset = (tcp[12] >> 4) * 4
        yield Segment(sport, dport, tcp[13], option_kinds(tcp[20:offset]), tcp[offset:])


def payload_of(result: MininetRunResult, index: int, size: int) -> bytes:
    """The known application bytes of transfer ``index`` (checked against its expected hash)."""
    data = bulk_payload(size, SEED * 1000003 + index)
    assert hashlib.sha256(data).hexdigest() == result.transfers[index].sha256_expected
    return data


def slices(data: bytes) -> list[bytes]:
    step = max(1, (len(data) - SLICE_BYTES) // SLICES)
    return [data[i : i + SLICE_BYTES] for i in range(0, len(data) - SLICE_BYTES, step)]


def wire_bytes(pcap: Path, port: int) -> bytes:
    """Every TCP payload byte to or from ``port`` in the capture, in capture order."""
    return b"".join(s.payload for s in tcp_segments(pcap) if port in (s.sport, s.dport))


def client_syns(pcap: Path, port: int) -> list[Segment]:
    return [s for s in tcp_segments(pcap) if s.syn and not s.ack and s.dport == port]


@pytest.mark.mininet
def test_eno_basic_on_mininet_encrypts_on_the_wire_and_both_ends_derive_one_session_id(
    tmp_path: Path,
    clean_machine: None,  # noqa: F811
) -> None:
    scenario = SCENARIOS["eno-basic"]
    result = run_mininet_scenario(scenario, seed=SEED, out_dir=tmp_path)
    assert result.ok, result.summary()
    (transfer,) = result.transfers
    extra = transfer.extra
    assert transfer.bytes_received == transfer.bytes_expected == 2 * 1024 * 1024
    # each end reported its own half; merged, they agree
    assert extra["client_outcome"] == extra["server_outcome"] == "encrypted"
    assert extra["tep"] == extra["server_tep"] == "0x23"  # X25519, h2's pick from h1's list
    assert extra["client_session_id"] and extra["client_session_id"] == extra["server_session_id"]
    assert extra["corrupted_bytes_delivered"] == 0 and verdict("encrypted", extra) is None

    # the session ID each end derived, from its own tcpcrypt key_updated record
    keys = [
        r
        for r in read_jsonl(tmp_path / "trace.jsonl")
        if r.layer == "tcpcrypt" and r.name == "key_updated" and r.data.get("generation") == 0
    ]
    by_node = {r.node: r.data for r in keys}
    assert len(keys) == 2 and set(by_node) == {"h1", "h2"}
    assert by_node["h1"]["session_id"] == by_node["h2"]["session_id"] == extra["client_session_id"]
    assert by_node["h1"]["role"] != by_node["h2"]["role"]  # one end plays A, the other B

    # the captures: ENO on the SYN, and no slice of the application data anywhere on the wire
    data = payload_of(result, 0, 2 * 1024 * 1024)
    probes = slices(data)
    assert len(probes) >= SLICES
    for name in INTERFACES:
        pcap = tmp_path / "pcaps" / f"{name}.pcap"
        (syn,) = client_syns(pcap, 5001)
        assert 69 in syn.option_kinds
        wire = wire_bytes(pcap, 5001)
        assert len(wire) > len(data)  # everything crossed, framed and tagged
        leaked = [p.hex() for p in probes if p in wire]
        assert not leaked, f"{name}: plaintext on the wire: {leaked[:3]}"
    problems = tshark_problems(tmp_path / "pcaps" / "h2-eth0.pcap")
    assert problems["malformed"] == problems["bad_checksums"] == problems["resets"] == 0, problems


@pytest.mark.mininet
def test_eno_stripped_on_mininet_falls_back_or_refuses_as_in_the_simulator(
    tmp_path: Path,
    clean_machine: None,  # noqa: F811
) -> None:
    scenario = SCENARIOS["eno-stripped"]
    live = run_mininet_scenario(scenario, seed=SEED, out_dir=tmp_path)
    sim = run_scenario(scenario, seed=SEED)
    assert live.ok, live.summary()
    assert sim.ok

    def outcome(t: TransferResult) -> dict[str, object]:
        keys = ("client_outcome", "server_outcome", "client_reason", "server_reason")
        return {"bytes": t.bytes_received, "ok": t.ok} | {k: t.extra[k] for k in keys}

    assert [outcome(t) for t in live.transfers] == [outcome(t) for t in sim.transfers]
    opportunistic, mandatory_client, mandatory_server = live.transfers
    for t in live.transfers:
        assert verdict(t.extra["expect"], t.extra) is None, t.to_dict()
    assert opportunistic.extra["client_outcome"] == opportunistic.extra["server_outcome"] == "fallback"
    assert opportunistic.extra["client_reason"] == "no_eno_option"
    assert mandatory_client.extra["client_outcome"] == "refused" and mandatory_client.bytes_received == 0
    assert mandatory_server.extra["server_outcome"] == "refused" and mandatory_server.bytes_received == 0

    pcaps = tmp_path / "pcaps"
    # h1 put ENO on its SYNs; r1 stripped it before they reached h2
    for port in (5001, 5002, 5003):
        (sent,) = client_syns(pcaps / "h1-eth0.pcap", port)
        (arrived,) = client_syns(pcaps / "h2-eth0.pcap", port)
        assert 69 in sent.option_kinds and not ENO_KINDS & set(arrived.option_kinds)
    # the fallback transfer crossed in the clear (what the search finds when data leaks) ...
    data = payload_of(live, 0, 256 * 1024)
    wire = wire_bytes(pcaps / "r1-eth1.pcap", 5001)
    assert all(p in wire for p in slices(data))
    # ... and the refused ones sent no byte at all
    for name in INTERFACES:
        assert wire_bytes(pcaps / f"{name}.pcap", 5002) == wire_bytes(pcaps / f"{name}.pcap", 5003) == b""
    problems = tshark_problems(pcaps / "h2-eth0.pcap", data_ports=(5001, 5002, 5003))
    assert problems["malformed"] == problems["bad_checksums"] == 0
    assert problems["resets"] == 2, problems  # h1 resets the bare SYN-ACK, h2 the bare SYN


@pytest.mark.mininet
def test_eno_simultaneous_open_on_mininet_uses_its_fixed_ports_behind_the_fence(
    tmp_path: Path,
    clean_machine: None,  # noqa: F811
) -> None:
    """Both ends connect() from fixed ports (6001, 6002): the fence must keep the
    kernel off those ports too, or it resets the crossing SYNs."""
    scenario = SCENARIOS["eno-simultaneous-open"]
    live = run_mininet_scenario(scenario, seed=SEED, out_dir=tmp_path)
    assert live.ok, live.summary()
    (transfer,) = live.transfers
    assert transfer.bytes_received == transfer.bytes_expected and transfer.sha256_received == transfer.sha256_expected
    extra = transfer.extra
    assert extra["client_outcome"] == extra["server_outcome"] == "encrypted"
    assert extra["client_session_id"] == extra["server_session_id"] and extra["client_session_id"]
    assert live.endpoints["h1"]["fence"]["tcp"][0] == [6001, 6001]
    assert live.endpoints["h2"]["fence"]["tcp"][0] == [6002, 6002]
    pcap = tmp_path / "pcaps" / "r1-eth0.pcap"
    syns = [s for s in tcp_segments(pcap) if s.syn and not s.ack]
    assert {(s.sport, s.dport) for s in syns} >= {(6001, 6002), (6002, 6001)}
    assert not [s for s in tcp_segments(pcap) if s.flags & 0x04], "a reset crossed r1"


# --- without root: the cross-end check and the back-to-back workload in the simulator


def test_verdict_compares_what_both_ends_reported() -> None:
    both = {"client_outcome": "encrypted", "server_outcome": "encrypted", "corrupted_bytes_delivered": 0}
    assert verdict("encrypted", both | {"client_session_id": "23ab", "server_session_id": "23ab"}) is None
    assert verdict("encrypted", both | {"client_session_id": "23ab", "server_session_id": "23cd"}) == (
        "session IDs differ"
    )
    half = {"client_outcome": "encrypted", "server_outcome": "fallback"}
    assert "expected encryption" in (verdict("encrypted", half) or "")
    assert "expected plain TCP" in (verdict("fallback", half) or "")
    assert verdict("refused", {"client_outcome": "reset", "server_outcome": "refused"}) is None
    assert verdict("refused", {"client_outcome": "reset", "server_outcome": "fallback"}) is not None
    corrupted = both | {"corrupted_bytes_delivered": 3}
    assert verdict("encrypted", corrupted) == "3 delivered bytes differ from what was sent"


def test_alternating_transfers_in_the_simulator_encrypt_every_other_one() -> None:
    from lab.errors import ConfigError
    from lab.scenario import Scenario
    from lab.scenario.eno import AlternatingTransfers

    scenario = Scenario(
        name="alternating",
        description="",
        topology="single-path",
        transfers=(AlternatingTransfers(size_bytes=64 * 1024, encrypted=(False, True, True), gap_s=0.1),),
    )
    result = run_scenario(scenario, seed=SEED)
    assert result.ok
    plain, first, second = result.transfers
    assert [t.name for t in result.transfers] == ["plain-1", "tcpcrypt-2", "tcpcrypt-3"]
    assert plain.extra["client_outcome"] == plain.extra["server_outcome"] == "plain"
    for t in (first, second):
        assert t.extra["client_outcome"] == t.extra["server_outcome"] == "encrypted"
        assert t.extra["client_session_id"] == t.extra["server_session_id"]
    assert first.extra["client_session_id"] != second.extra["client_session_id"]
    # back to back: each starts after the previous one's receiver had everything
    assert plain.completed_at < first.started_at and first.completed_at < second.started_at
    with pytest.raises(ConfigError, match="ports"):
        AlternatingTransfers(port=65535, encrypted=(True, True))
