"""The tcplab command line: run bundles, benchmarks, and one-line errors for bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.cli import main
from lab.pcap import read_pcap
from lab.trace import read_jsonl
from lab.wire.checksum import pack_address
from lab.wire.ip import decode_ip
from lab.wire.tcp import decode_segment


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=300)


def test_run_two_paths_writes_a_byte_exact_bundle(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    proc = run_cli("run", "two-paths", "--out", str(out), "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] is True
    (transfer,) = summary["transfers"]
    assert transfer["bytes_received"] == transfer["bytes_expected"] == 4 * 1024 * 1024
    assert transfer["sha256_match"] is True
    assert transfer["sha256_received"] == transfer["sha256_expected"]
    # MPTCP over both paths: more than path A alone (10 Mbit/s), at most both (15 Mbit/s)
    assert 10.0 < transfer["goodput_mbps"] <= 15.0
    topo = json.loads((out / "topology.json").read_text())
    assert {n["name"] for n in topo["nodes"]} == {"h1", "h2", "r1", "r2"}
    records = list(read_jsonl(out / "trace.jsonl"))
    assert any(r.layer == "app" and r.data.get("event") == "received" and r.data["sha256_match"] for r in records)
    assert any(r.name == "metrics_updated" for r in records)
    established = {r.data["subflow"] for r in records if r.layer == "mptcp" and r.node == "h1" and r.data.get("to") == "ESTABLISHED"}
    assert {s.split(":")[0] for s in established} == {"10.0.1.1", "10.0.3.1"}  # a subflow on each path
    assert [r.t for r in records] == sorted(r.t for r in records)
    pcaps = summary["files"]["pcaps"]
    assert len(pcaps) == 8  # one per interface
    packets = read_pcap(out / "pcaps" / "h1-eth0.pcap")
    assert len(packets) > 2000
    # every captured packet decodes in our codecs with valid checksums
    for _, raw in packets[:500]:
        ip = decode_ip(raw)
        decode_segment(ip.payload, pack_address(ip.src), pack_address(ip.dst))


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (./run-tests installs it as root)")
def test_bundle_pcaps_open_in_tshark_without_malformed_packets(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    assert main(["run", "two-paths", "--out", str(out), "--quiet"]) == 0
    for pcap in sorted((out / "pcaps").glob("*.pcap")):
        proc = subprocess.run(
            [
                "tshark",
                "-r",
                str(pcap),
                "-o",
                "tcp.check_checksum:TRUE",
                "-o",
                "ip.check_checksum:TRUE",
                "-Y",
                "_ws.malformed || _ws.expert.severity >= error || tcp.checksum.status == 0 || ip.checksum.status == 0",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == "", f"{pcap.name}: {proc.stdout[:500]}"
    count = subprocess.run(
        ["tshark", "-r", str(out / "pcaps" / "h2-eth0.pcap"), "-T", "fields", "-e", "tcp.dstport"],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.split()
    assert "5001" in count and len(count) > 2000


def test_same_seed_same_bundle_trace(tmp_path: Path) -> None:
    for name in ("a", "b"):
        assert main(["run", "lossy-path", "--out", str(tmp_path / name), "--seed", "5", "--quiet", "--no-pcap"]) == 0
    assert (tmp_path / "a" / "trace.jsonl").read_bytes() == (tmp_path / "b" / "trace.jsonl").read_bytes()
    assert main(["run", "lossy-path", "--out", str(tmp_path / "c"), "--seed", "6", "--quiet", "--no-pcap"]) == 0
    assert (tmp_path / "a" / "trace.jsonl").read_bytes() != (tmp_path / "c" / "trace.jsonl").read_bytes()


def test_tampered_payload_is_reported_as_a_sha_mismatch(tmp_path: Path) -> None:
    assert main(["run", "payload-tamper", "--out", str(tmp_path / "t"), "--quiet", "--no-pcap"]) == 1
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    (transfer,) = summary["transfers"]
    assert transfer["bytes_received"] == transfer["bytes_expected"]
    assert transfer["sha256_match"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no-such-scenario"], "unknown scenario 'no-such-scenario'"),
        (["run", "single-path", "-p", "bw_mbps=0"], "bw_mbps must be in (0, 1000]"),
        (["run", "single-path", "-p", "loss_pct=101"], "loss_pct must be in [0, 100]"),
        (["run", "single-path", "-p", "delay_ms=-5"], "delay_ms"),
        (["run", "single-path", "-p", "queue_packets=0"], "queue_packets"),
        (["run", "single-path", "-p", "colour=1"], "unknown parameter(s) colour"),
        (["run", "single-path", "-p", "bw_mbps"], "is not NAME=VALUE"),
        (["run", "single-path", "--seed", "x"], "invalid int value"),
        (["run", "single-path", "--out", "/proc/forbidden/bundle"], "cannot write the run bundle"),
        (["topo", "nowhere"], "unknown topology 'nowhere'"),
        (["bench", "run", "nothing"], "unknown benchmark 'nothing'"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_gets_one_line_and_exit_2(args: list[str], message: str) -> None:
    proc = run_cli(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("tcplab: error:")
    assert message in lines[0]


def test_scenarios_topo_and_bench_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios"]) == 0
    out = capsys.readouterr().out
    assert "two-paths" in out and "single-path" in out
    assert main(["topo", "two-paths"]) == 0
    out = capsys.readouterr().out
    assert "h1 ─── r1 ─── h2" in out and "10.0.1.1" in out and "fd00:0:0:1::1" in out
    assert main(["topo", "single-path", "-p", "delay_ms=10", "--json"]) == 0
    spec = json.loads(capsys.readouterr().out)
    assert sum(link["delay_ms"] for link in spec["links"]) == 10
    assert main(["bench", "list"]) == 0
    out = capsys.readouterr().out
    new = ("sim-mptcp-speed", "sim-scenarios-traced", "sim-dumbbell")
    for name in ("sim-tcp-goodput", "sim-tcp-loss", "sim-speed", *new):
        assert name in out


def test_bench_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "run", "sim-tcp-goodput", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    for key in ("bench", "metric", "value", "unit", "target", "passed", "goodput_mbps", "link_mbps", "sha256_match"):
        assert key in result
    assert result["bench"] == "sim-tcp-goodput"
    assert result["unit"] == "ratio"
    assert result["sha256_match"] is True
    assert result["value"] == pytest.approx(result["goodput_mbps"] / result["link_mbps"], abs=1e-3)
    machine = result["machine"]  # what the figure was taken on: absolute figures scale with it
    assert machine["python_reference_s"] > 0 and machine["cpus"] >= 1
    assert machine["load_1min"] >= 0 and machine["load_1min_after"] >= 0


def test_clean_reports_and_exits_zero_or_needs_root() -> None:
    import os

    proc = run_cli("clean")
    if os.geteuid() == 0:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip()  # "nothing to clean" or what it removed
    else:
        assert proc.returncode == 2
        assert "needs root" in proc.stderr
    assert "Traceback" not in proc.stderr
