"""A DSS checksum failure between our MPTCP and Linux MPTCP (RFC 8684 §3.7), one path, checksums on.

r1 flips one payload byte of one data segment towards the server (the NFQUEUE
FlipPayloadBytes middlebox, TCP checksum fixed), so only the DSS checksum can
notice. Against our own stack the single-subflow case falls back to TCP
byte-exact (tests/mptcp/test_mpfail.py); against Linux it cannot, and our end
says why and resets rather than deliver or leave altered bytes:

* Linux client -> our server: we discard the failed mapping and send MP_FAIL.
  Linux answers with an MP_FAIL of its own and goes on as plain TCP from the
  bytes after the failed mapping, with no infinite mapping on the wire (it
  counts one, InfiniteMapTx) and never sends the discarded bytes again: our
  server resets, having delivered only what came before the failed mapping.
* our client -> Linux server: Linux's checksum fails (DataCsumErr), it sends
  MP_FAIL and still delivers the altered mapping, whose data it acknowledges
  at data level; our client falls back with its infinite mapping (Linux
  counts InfiniteMapRx), sees that Data ACK pass the MP_FAIL point and resets.

tshark checks the options on the wire independently.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab.mininet.run import MininetRunResult, run_mininet_scenario
from lab.mptcp.options import MP_FAIL_FALLBACK, MP_FAIL_NO_MAPPING
from lab.scenario import Scenario
from lab.scenario.middlebox import FlipPayloadBytes
from lab.scenario.mptcp import MptcpTransfer
from lab.trace import TraceRecord, read_jsonl
from tests.mininet.test_endpoint import clean_machine  # noqa: F401 - a fixture

PORT = 5001
SIZE = 2 * 1024 * 1024
NTH = 40  # the 40th data segment towards the server: after a few verified mappings
CLIENT, SERVER = "10.0.1.1", "10.0.2.2"
KEPT = "the peer acknowledged data of the mapping it failed: it kept bytes a middlebox altered"
SKIPPED = "the peer's infinite mapping resumes"  # + the number of bytes it skips


def _run(src_stack: str, dst_stack: str, out: Path) -> tuple[MininetRunResult, list[TraceRecord]]:
    scenario = Scenario(
        name=f"mpfail-{src_stack}-to-{dst_stack}",
        description="one flipped byte on a single path with DSS checksums, between our MPTCP and Linux",
        topology="single-path",
        topology_params={"delay_ms": 10.0, "bw_mbps": 20.0},
        middleboxes=(("r1", lambda: FlipPayloadBytes(dst_port=PORT, nth=NTH)),),
        transfers=(
            MptcpTransfer(
                size_bytes=SIZE,
                port=PORT,
                src_stack=src_stack,
                dst_stack=dst_stack,
                client={"checksum": True},
                server={"checksum": True},
            ),
        ),
        time_limit_s=60.0,
    )
    result = run_mininet_scenario(scenario, out_dir=out, pcap_interfaces=["h1-eth0", "h2-eth0"])
    assert result.errors == [] and not result.timed_out, result.summary()
    for host, info in result.endpoints.items():
        assert info["exit_status"] == 0, (host, info)
    return result, list(read_jsonl(out / "trace.jsonl"))


def _ours(records: list[TraceRecord], host: str) -> dict[str, Any]:
    mine = [r for r in records if r.node == host and r.layer == "mptcp"]
    keys = [r.data for r in mine if r.name == "key_updated" and r.data.get("remote_key")]
    return {
        "keys": keys[-1],
        "errors": [r.data for r in mine if r.name == "error"],
        "mp_fail": [(r.data["direction"], r.data["mp_fail"]) for r in mine if r.data.get("mp_fail") is not None],
        "infinite": [r.data for r in mine if r.data.get("infinite_mapping")],
        "fallback": [r.data["fallback"] for r in mine if "fallback" in r.data],
        "sent": [o for r in mine if r.name == "segment_sent" for o in r.data["mptcp"]],
        "terminated": [r.data for r in mine if "terminated" in r.data],
    }


def _wire(pcap: Path) -> list[dict[str, Any]]:
    """MP_FAIL options and DSS mappings in a capture, by tshark: source, subtypes, DSNs, lengths."""
    fields = [
        "frame.number",
        "ip.src",
        "tcp.len",
        "tcp.flags.reset",
        "tcp.options.mptcp.subtype",
        "tcp.options.mptcp.dseqnpresent.flag",
        "tcp.options.mptcp.rawdataseqno",
        "tcp.options.mptcp.datalvllen",
        "tcp.options.mptcp.checksum",
    ]
    argv = ["tshark", "-n", "-r", str(pcap), "-Y", f"tcp.port=={PORT}", "-d", f"tcp.port=={PORT},data", "-T", "fields"]
    for f in fields:
        argv += ["-e", f]
    proc = subprocess.run([*argv, "-E", "occurrence=a"], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-500:]
    rows = []
    for line in proc.stdout.splitlines():
        cols = line.split("\t")
        rows.append(
            {
                "frame": int(cols[0]),
                "src": cols[1],
                "len": int(cols[2] or 0),
                "rst": cols[3] in ("1", "True"),
                "subtypes": [int(x) for x in cols[4].split(",") if x],
                "mapping": "1" in cols[5].split(","),
                "dsn": [int(x) for x in cols[6].split(",") if x],
                "dll": [int(x) for x in cols[7].split(",") if x],
                "csum": [x for x in cols[8].split(",") if x],
            }
        )
    return rows


def _data_offset(dsn: int, idsn_hex: str) -> int:
    return (dsn - int(idsn_hex, 16) - 1) % (1 << 64)


@pytest.mark.mininet
def test_a_kernel_client_going_plain_after_our_mp_fail_is_reset_without_altered_bytes(
    tmp_path: Path,
    clean_machine: None,  # noqa: F811
) -> None:
    result, records = _run("kernel-mptcp", "user", tmp_path)
    (transfer,) = result.transfers
    ours = _ours(records, "h2")
    failed = [e for e in ours["errors"] if e["reason"] == "DSS checksum failed"]
    assert len(failed) == 1, ours["errors"]
    fail_dsn = failed[0]["data_seq"]
    assert ("sent", fail_dsn) in ours["mp_fail"]
    assert {"subtype": "MP_FAIL", "data_seq": fail_dsn, "reserved": 0} in ours["sent"]
    # nothing from the failed mapping on reached our application: only bytes whose DSS checksum held
    fail_off = _data_offset(fail_dsn, ours["keys"]["remote_idsn"])
    assert 0 < transfer.bytes_received <= fail_off, (transfer.bytes_received, fail_off)
    assert not transfer.ok and transfer.sha256_received is None
    # what the RFC leaves us when the sender never sends the discarded bytes again: reset, and say why
    reason = transfer.extra["server"]["closed"]
    assert reason == MP_FAIL_NO_MAPPING or reason.startswith(SKIPPED), reason
    assert transfer.extra["server"]["reset"] is True and transfer.extra["client"]["reset"] is True
    assert ours["fallback"] == []
    counters = result.endpoints["h1"]["stats"]["mptcp_counters"]
    assert counters.get("MPFailRx", 0) >= 1, counters  # Linux took our MP_FAIL
    # on the wire, seen by tshark: our MP_FAIL with the failed mapping's DSN, on an ACK (not a RST)
    wire = _wire(tmp_path / "pcaps" / "h2-eth0.pcap")
    ours_fail = [r for r in wire if r["src"] == SERVER and 6 in r["subtypes"] and not r["rst"]]
    assert ours_fail and fail_dsn in ours_fail[0]["dsn"], ours_fail[:1]
    if reason == MP_FAIL_NO_MAPPING:
        # Linux's data after our MP_FAIL: no infinite mapping, then segments without any MPTCP option
        after = [r for r in wire if r["src"] == CLIENT and r["frame"] > ours_fail[0]["frame"] and r["len"]]
        assert not [r for r in after if r["mapping"] and 0 in r["dll"]], after[:3]
        assert any(not r["subtypes"] for r in after), after[:3]


@pytest.mark.mininet
def test_our_client_resets_when_a_kernel_server_keeps_the_altered_mapping(
    tmp_path: Path,
    clean_machine: None,  # noqa: F811
) -> None:
    result, records = _run("user", "kernel-mptcp", tmp_path)
    (transfer,) = result.transfers
    ours = _ours(records, "h1")
    received = [dsn for direction, dsn in ours["mp_fail"] if direction == "received"]
    assert received, ours["mp_fail"]
    counters = result.endpoints["h2"]["stats"]["mptcp_counters"]
    assert counters.get("DataCsumErr", 0) >= 1 and counters.get("MPFailTx", 0) >= 1, counters
    # our answer: the infinite mapping from Linux's Data ACK (= its MP_FAIL DSN) on, checksum 0, then TCP
    assert [i["data_seq"] for i in ours["infinite"]] == [received[0]]
    assert ours["fallback"] == [MP_FAIL_FALLBACK]
    inf = [
        o for o in ours["sent"] if o["subtype"] == "DSS" and o["data_seq"] is not None and o["data_level_length"] == 0
    ]
    assert inf and inf[0]["data_seq"] == received[0] and inf[0]["checksum"] == 0
    wire = _wire(tmp_path / "pcaps" / "h1-eth0.pcap")
    on_wire = [r for r in wire if r["src"] == CLIENT and r["mapping"] and 0 in r["dll"] and r["len"]]
    assert on_wire and received[0] in on_wire[0]["dsn"], on_wire[:1]
    assert counters.get("InfiniteMapRx", 0) >= 1, counters  # Linux read it
    # Linux kept the altered bytes (its Data ACK passed its own MP_FAIL): no byte-exact stream is
    # possible there any more, so our end resets instead of going on
    assert KEPT in [e["reason"] for e in ours["errors"]]
    assert transfer.extra["client"]["closed"] == KEPT and transfer.extra["client"]["reset"] is True
    assert not transfer.ok
