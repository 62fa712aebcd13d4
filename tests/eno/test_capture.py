"""`tcplab run` for the ENO scenarios, and their captures read back by tshark as an independent check."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from lab.cli import main


def tshark(pcap: Path, *args: str) -> str:
    proc = subprocess.run(["tshark", "-r", str(pcap), *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_tcplab_run_eno_basic_writes_the_bundle(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    assert main(["run", "eno-basic", "--out", str(out), "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ok"] and summary["transfers"][0]["client_outcome"] == "encrypted"
    assert (out / "trace.jsonl").stat().st_size > 0 and (out / "topology.json").exists()
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed: the capture cross-check needs it")
    pcap = out / "pcaps" / "h2-eth0.pcap"
    assert tshark(pcap, "-o", "tcp.check_checksum:TRUE", "-Y", "_ws.malformed || tcp.checksum.status == 0") == ""
    # tshark has no ENO dissector: kind 69 shows as an option kind; the SYN and SYN-ACK carry it
    kinds = tshark(pcap, "-Y", "tcp.flags.syn == 1", "-T", "fields", "-e", "tcp.flags.ack", "-e", "tcp.option_kind")
    rows = [line.split("\t") for line in kinds.strip().splitlines()]
    assert rows and all("69" in row[1].split(",") for row in rows)
    # the payload starts with Init1 on h1's side and Init2 on h2's (RFC 8548 §4.1 magics)
    payloads = tshark(pcap, "-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.srcport", "-e", "tcp.payload")
    first = {}
    for line in payloads.strip().splitlines():
        port, data = line.split("\t")
        first.setdefault(port, data)
    assert first["5001"].startswith("097105e0") and any(
        v.startswith("15101a0e") for p, v in first.items() if p != "5001"
    )


def test_tcplab_run_experimental_encoding_is_seen_as_exid_0x454e(tmp_path: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark not installed")
    from lab.eno.extension import EnoConfig
    from lab.scenario import Scenario, run_scenario
    from lab.scenario.eno import EncryptedTransfer

    scenario = Scenario(
        name="eno-experimental",
        description="",
        topology="single-path",
        transfers=(EncryptedTransfer(size_bytes=64 * 1024, client=EnoConfig(experimental_encoding=True)),),
    )
    result = run_scenario(scenario, seed=1, out_dir=tmp_path)
    assert result.ok
    exids = tshark(
        tmp_path / "pcaps" / "h1-eth0.pcap",
        "-Y",
        "tcp.flags.syn == 1",
        "-T",
        "fields",
        "-e",
        "tcp.options.experimental.exid",
    )
    values = [v for v in exids.split() if v]
    assert values and all(v.lower() in ("0x454e", "454e") for v in values)


@pytest.mark.parametrize("name", ["eno-mismatch", "eno-stripped", "eno-simultaneous-open"])
def test_other_scenarios_run_clean(tmp_path: Path, name: str) -> None:
    assert main(["run", name, "--out", str(tmp_path / name), "--quiet", "--no-pcap"]) == 0


def test_tamper_scenario_reports_the_abort(tmp_path: Path) -> None:
    assert main(["run", "tcpcrypt-tamper", "--out", str(tmp_path / "t"), "--quiet", "--no-pcap"]) == 1
    summary = json.loads((tmp_path / "t" / "summary.json").read_text())
    [t] = summary["transfers"]
    assert "authentication_failed" in t["error"] and t["corrupted_bytes_delivered"] == 0
