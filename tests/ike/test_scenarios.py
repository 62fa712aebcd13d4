"""The IKE scenarios in the simulator (real TCP, real packets), their bundles, and tshark decrypting them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

from lab.bench.ike import BENCHMARKS
from lab.ike.keylog import key_tables
from lab.ike.keylog import main as keylog_main
from lab.ike.pcap import iketcp_to_udp
from lab.ike.tunnel import INNER_PORT
from lab.scenario import RunResult, run_scenario
from lab.trace import MemoryTracer, read_jsonl
from topologies.ike_scenarios import SCENARIOS

TSHARK = shutil.which("tshark")


@cache
def run(name: str) -> tuple[RunResult, list]:
    tracer_records: list = []
    result = run_scenario(SCENARIOS[name], seed=1)
    tracer = result.network.tracer
    assert isinstance(tracer, MemoryTracer)
    tracer_records = tracer.records
    return result, tracer_records


def ike_records(records: list, node: str | None = None, name: str | None = None, layer: str = "ike") -> list:
    return [
        r for r in records if r.layer == layer and (node is None or r.node == node) and (name is None or r.name == name)
    ]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_scenario_completes_byte_exact(name: str) -> None:
    result, records = run(name)
    assert result.ok, [t.to_dict() for t in result.transfers]
    assert all(t.extra.get("closed") for t in result.transfers if t.name.endswith("r->i"))  # Delete answered
    assert ike_records(records, name="state_updated")


def test_hotspot_falls_back_to_tcp_after_the_udp_timeout() -> None:
    result, records = run("hotspot")
    assert {t.extra["transport"] for t in result.transfers} == {"tcp"}
    timeline = [
        (round(r.t, 3), r.data["event"], r.data["transport"])
        for r in ike_records(records, "h1", "state_updated")
        if "attempt" in r.data
    ]
    assert timeline[:3] == [(0.0, "started", "udp"), (2.0, "timeout", "udp"), (2.0, "started", "tcp")]
    retransmissions = [
        r.data["retransmission"] for r in ike_records(records, "h1", "segment_sent") if "retransmission" in r.data
    ]
    assert retransmissions == [1, 2]
    dropped = [r for r in records if r.layer == "middlebox" and r.name == "segment_dropped"]
    assert len(dropped) == 3 and all(r.data["dport"] == 500 for r in dropped)
    frames = ike_records(records, "h1", "segment_sent", layer="iketcp")
    assert frames[0].data["kind"] == "prefix" and {f.data["kind"] for f in frames[1:]} == {"ike", "esp"}
    metrics = ike_records(records, "h1", "metrics_updated", layer="esp")
    assert metrics and metrics[-1].data["transport"] == "tcp" and metrics[-1].data["packets_received"] == 33


def test_nat_scenario_detects_the_nat_and_keeps_the_mapping_alive() -> None:
    result, records = run("nat")
    assert all(t.extra["nat_detected"] and t.extra["transport"] == "udp" for t in result.transfers)
    nat = [r.data for r in records if r.layer == "middlebox" and r.name == "state_updated" and "mapping" in r.data]
    assert [(m["protocol"], m["inside"]) for m in nat] == [("udp", "10.0.1.1:500"), ("udp", "10.0.1.1:4500")]
    detected = [r.data for r in ike_records(records, "h2", "state_updated") if "nat_detected_remote" in r.data]
    assert detected[0]["nat_detected_remote"] and not detected[0]["nat_detected_local"]
    assert any(r.data.get("kind") == "nat_keepalive" for r in ike_records(records, "h1", "segment_sent"))
    assert any(r.data.get("kind") == "nat_keepalive" for r in ike_records(records, "h2", "segment_received"))
    assert result.transfers[0].extra.get("rekeyed")  # the second half went over the rekeyed Child SA
    assert len(ike_records(records, "h1", "key_updated", layer="esp")) == 2


def test_port_443_after_tcp_4500_times_out() -> None:
    result, records = run("port-443")
    assert {t.extra["port"] for t in result.transfers} == {443}
    events = [
        (r.data["event"], r.data["transport"], r.data["port"])
        for r in ike_records(records, "h1", "state_updated")
        if "attempt" in r.data
    ]
    assert events == [
        ("started", "udp", 500),
        ("timeout", "udp", 500),
        ("started", "tcp", 4500),
        ("timeout", "tcp", 4500),
        ("started", "tcp", 443),
        ("won", "tcp", 443),
    ]


def test_race_scenario_racing_beats_sequential() -> None:
    result, _ = run("iketcp-race")
    at = {t.name.split()[0]: t.extra["ike_established_s"] for t in result.transfers}
    assert at["racing"] < 0.2 < 2.0 < at["sequential"] < 2.2


def test_cli_bundle_and_tshark_decrypts_ike_auth_and_esp(tmp_path: Path) -> None:
    """``tcplab run hotspot`` writes the bundle; our keys let tshark decrypt our IKE_AUTH and our ESP."""
    out = tmp_path / "bundle"
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("tcplab")), "run", "hotspot", "--out", str(out), "-q"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] and len(summary["transfers"]) == 2
    assert keylog_main([str(out)]) == 0
    tables = key_tables(read_jsonl(out / "trace.jsonl"))
    assert len(tables.ikev2) == 1 and len(tables.esp) == 2
    assert (out / "keys" / "ikev2_decryption_table").read_text().splitlines() == tables.ikev2
    if TSHARK is None:
        pytest.skip("tshark is not installed (apt install tshark)")
    udp_pcap = tmp_path / "udp.pcap"
    conversion = iketcp_to_udp(out / "pcaps" / "h1-eth0.pcap", udp_pcap)
    assert conversion.ike_frames == 8 and conversion.esp_frames == 66 and not conversion.broken
    fields = ["isakmp.exchangetype", "isakmp.typepayload", "esp.spi", "udp.dstport", "data.data"]
    proc = subprocess.run(
        [
            TSHARK,
            "-n",
            "-r",
            str(udp_pcap),
            *tables.tshark_options(),
            "-T",
            "fields",
            "-E",
            "separator=|",
            *(a for f in fields for a in ("-e", f)),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("|") for line in proc.stdout.splitlines()]
    auth = [row for row in rows if row[0] == "35"]
    assert len(auth) == 2
    assert {"46", "35", "36", "39", "33", "44", "45"} <= set(
        auth[0][1].split(",")
    )  # SK{IDi, IDr, AUTH, SA, TSi, TSr}, decrypted
    assert {"46", "36", "39", "33"} <= set(auth[1][1].split(","))
    esp = [row for row in rows if row[2]]
    assert len(esp) == 66
    inner = [row for row in esp if str(INNER_PORT) in row[3].split(",")]
    assert len(inner) == 66  # every ESP packet decrypted to an inner UDP datagram
    # the decrypted inner payloads are the tunnel's chunks: offset, total length, then the bytes sent
    data = bytes.fromhex(inner[0][4])
    assert int.from_bytes(data[4:8], "big") == 32 * 1024


def test_benchmark_contract() -> None:
    result = BENCHMARKS["sim-ike-fallback"].run()
    for key in ("bench", "metric", "value", "unit", "target", "passed", "sequential_rtts", "racing_rtts"):
        assert key in result
    json.dumps(result)
    assert result["passed"], result
    assert result["sequential_rtts"] == pytest.approx(result["sequential_expected_rtts"], abs=0.5)


def test_tshark_decrypts_udp_encapsulated_esp_behind_the_nat(tmp_path: Path) -> None:
    """The nat scenario's outside capture: ESP in UDP 4500 from the NAT's public address, before and after the rekey."""
    if TSHARK is None:
        pytest.skip("tshark is not installed (apt install tshark)")
    out = tmp_path / "nat"
    assert run_scenario(SCENARIOS["nat"], seed=1, out_dir=out).ok
    tables = key_tables(read_jsonl(out / "trace.jsonl"))
    assert len(tables.esp) == 4  # two Child SAs (the rekey), two directions each
    proc = subprocess.run(
        [
            TSHARK,
            "-n",
            "-r",
            str(out / "pcaps" / "r1-eth1.pcap"),
            *tables.tshark_options(),
            "-Y",
            "esp",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "esp.spi",
            "-e",
            "udp.dstport",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line.split("\t") for line in proc.stdout.splitlines()]
    assert len(rows) == 66
    assert {row[0].split(",")[0] for row in rows} == {"10.0.2.1", "10.0.2.2"}  # outside the NAT: the public address
    assert all(str(INNER_PORT) in row[2].split(",") for row in rows)  # every one decrypted to the inner datagram
    assert len({row[1] for row in rows}) == 3  # i->r on the old and the rekeyed SA, r->i after the rekey
