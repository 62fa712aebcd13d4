"""TCP-ENO through the real firewall rules that broke it, on a Mininet router (r1 of single-path).

* ``iptables -t mangle ... -p tcp --tcp-flags SYN NONE -j TCPOPTSTRIP --strip-options 69,253``:
  ENO survives on the SYN and SYN/ACK only, so A negotiates and B falls back. Both ends
  must end alike or the connection be reset; B's application never gets A's tcpcrypt
  handshake as data (RFC 8547 §4.7).
* ``iptables ... -p tcp --tcp-flags SYN SYN -m tcp --tcp-option 69 -j DROP``: SYNs with ENO
  vanish. An opportunistic client retries without ENO after its configured SYN timeouts
  and completes in the clear; a mandatory one keeps sending ENO SYNs and never connects.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.eno.extension import EnoConfig
from lab.mininet.run import run_mininet_scenario
from lab.scenario import Scenario
from lab.scenario.eno import EncryptedTransfer
from lab.scenario.middlebox import DropTcpOption, StripTcpOptions
from lab.trace import read_jsonl
from lab.wire.eno import ENO_KIND, EXPERIMENTAL_KIND
from tests.mininet.test_endpoint import clean_machine  # noqa: F401 - a fixture
from tests.mininet.test_eno_mininet import ENO_KINDS, client_syns, tcp_segments

CAPTURE = ["h1-eth0", "r1-eth0", "r1-eth1", "h2-eth0"]
UNSHAPED = {"delay_ms": 2.0, "bw_mbps": 100.0}
INIT1_MAGIC = bytes.fromhex("15101a0e")  # RFC 8548 §4.3: INIT1_MAGIC opens A's first bytes


def _realised(out: Path) -> list[str]:
    return [
        r.data["realised_by"]
        for r in read_jsonl(out / "trace.jsonl")
        if r.layer == "middlebox" and r.name == "state_updated" and "realised_by" in r.data
    ]


@pytest.mark.mininet
def test_eno_stripped_from_non_syn_segments_never_delivers_the_tcpcrypt_handshake_as_data(
    tmp_path: Path,
    clean_machine: None,  # noqa: F811
) -> None:
    scenario = Scenario(
        name="eno-split-tcpoptstrip",
        description="r1: TCPOPTSTRIP of ENO on segments without SYN (--tcp-flags SYN NONE)",
        topology="single-path",
        topology_params=UNSHAPED,
        middleboxes=(("r1", lambda: StripTcpOptions([ENO_KIND, EXPERIMENTAL_KIND], when="after_handshake")),),
        transfers=tuple(
            EncryptedTransfer(name=f"split-{i}", port=5001 + i, size_bytes=64 * 1024, expect="any") for i in range(3)
        ),
        time_limit_s=30.0,
    )
    result = run_mininet_scenario(scenario, out_dir=tmp_path, pcap_interfaces=CAPTURE)
    assert result.errors == [] and not result.timed_out, result.summary()
    realised = _realised(tmp_path)
    assert any("TCPOPTSTRIP --strip-options 69,253 (--tcp-flags SYN NONE)" in r for r in realised), realised
    for t in result.transfers:
        facts = t.to_dict()
        client, server = facts["client_outcome"], facts["server_outcome"]
        assert facts["corrupted_bytes_delivered"] == 0, facts
        same = client == server or {client, server} <= {"fallback", "plain"}
        assert same or {client, server} & {"aborted", "reset", "refused"}, facts
        assert client != "encrypted" or server == "encrypted", facts  # never A encrypted without B
        if server == "fallback":
            assert t.bytes_received == 0 or facts["sha256_match"], facts  # nothing but the data itself
    outcomes = [(t.extra["client_outcome"], t.extra["server_outcome"], t.bytes_received) for t in result.transfers]
    print(f"\nENO stripped after the SYNs: (client, server, bytes delivered) = {outcomes}")
    records = list(read_jsonl(tmp_path / "trace.jsonl"))
    split = [r.data for r in records if r.node == "h2" and r.layer == "eno" and r.name == "error"]
    assert [e["reason"] for e in split] == ["split_decision"] * 3, split
    pcaps = tmp_path / "pcaps"
    for port in (5001, 5002, 5003):
        (sent,) = client_syns(pcaps / "h1-eth0.pcap", port)
        (arrived,) = client_syns(pcaps / "h2-eth0.pcap", port)
        assert 69 in sent.option_kinds and 69 in arrived.option_kinds  # the SYN keeps ENO
        later = [s for s in tcp_segments(pcaps / "h2-eth0.pcap") if s.dport == port and not s.syn]
        assert later and not any(ENO_KINDS & set(s.option_kinds) for s in later)  # stripped after it
        sent_later = [s for s in tcp_segments(pcaps / "h1-eth0.pcap") if s.dport == port and not s.syn]
        assert any(69 in s.option_kinds for s in sent_later)  # A did send ENO on its ACK
    # A's INIT1 crossed the router, and B reset instead of handing it up
    assert any(INIT1_MAGIC in s.payload for s in tcp_segments(pcaps / "h2-eth0.pcap"))
    resets = [s for s in tcp_segments(pcaps / "h2-eth0.pcap") if s.flags & 0x04 and s.sport in (5001, 5002, 5003)]
    assert len({s.sport for s in resets}) == 3, resets


SYN_TIMEOUTS = 2


@pytest.mark.mininet
def test_a_firewall_dropping_eno_syns_an_opportunistic_client_retries_without_eno_a_mandatory_one_never(
    tmp_path: Path,
    clean_machine: None,  # noqa: F811
) -> None:
    scenario = Scenario(
        name="eno-syn-dropped",
        description="r1: --tcp-option 69 -j DROP on SYNs",
        topology="single-path",
        topology_params=UNSHAPED,
        middleboxes=(("r1", lambda: DropTcpOption([ENO_KIND, EXPERIMENTAL_KIND], when="syn")),),
        transfers=(
            EncryptedTransfer(
                name="opportunistic",
                port=5001,
                size_bytes=64 * 1024,
                client=EnoConfig(syn_timeouts_before_fallback=SYN_TIMEOUTS),
                expect="fallback",
            ),
            EncryptedTransfer(
                name="mandatory", port=5002, size_bytes=4096, client=EnoConfig(policy="mandatory"), expect="refused"
            ),
        ),
        time_limit_s=8.0,  # SYNs at 0, 1, 3 and 7 s: the mandatory one never connects
    )
    result = run_mininet_scenario(scenario, out_dir=tmp_path, pcap_interfaces=CAPTURE)
    assert result.errors == [], result.summary()
    realised = _realised(tmp_path)
    assert any("--tcp-option 69 -j DROP" in r and "--tcp-flags SYN SYN" in r for r in realised), realised
    opportunistic, mandatory = result.transfers
    facts = opportunistic.to_dict()
    assert opportunistic.ok and facts["sha256_match"], facts
    assert facts["client_outcome"] == "fallback" and facts["client_reason"] == "syn_timeouts", facts
    assert mandatory.bytes_received == 0, mandatory.to_dict()
    records = list(read_jsonl(tmp_path / "trace.jsonl"))
    fallback = [r for r in records if r.node == "h1" and r.layer == "eno" and r.data.get("to") == "fallback"]
    assert [r.data["reason"] for r in fallback] == ["syn_timeouts"]  # the opportunistic one only
    pcaps = tmp_path / "pcaps"
    sent = client_syns(pcaps / "h1-eth0.pcap", 5001)
    with_eno = [s for s in sent if 69 in s.option_kinds]
    assert len(with_eno) == SYN_TIMEOUTS and not ENO_KINDS & set(sent[-1].option_kinds), [s.option_kinds for s in sent]
    arrived = client_syns(pcaps / "h2-eth0.pcap", 5001)
    assert len(arrived) == 1 and not ENO_KINDS & set(arrived[0].option_kinds)  # only the retry without ENO passed
    tried = client_syns(pcaps / "h1-eth0.pcap", 5002)
    assert len(tried) >= 3 and all(69 in s.option_kinds for s in tried), [s.option_kinds for s in tried]
    assert client_syns(pcaps / "h2-eth0.pcap", 5002) == []  # every one dropped at r1
    print(f"\nENO SYN dropped: opportunistic retried without ENO after {SYN_TIMEOUTS} timeouts "
          f"({len(sent)} SYNs); mandatory sent {len(tried)} SYNs, all with ENO, none passed")
