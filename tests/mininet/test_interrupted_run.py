"""An interrupted Mininet run (Ctrl-C or SIGTERM) still leaves a finalised bundle that replays and verifies,
and a run that cannot start leaves none."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.cli import main
from lab.mininet.backend import STATE_DIR
from lab.pcap import read_pcap_linktype
from lab.runs import ReplayRun
from lab.scenario.bundle import verify
from tests.mininet.conftest import ROOT
from tests.procs import sigint_as_in_a_terminal

pytestmark = pytest.mark.mininet


def _under_way(run: subprocess.Popen[str], out: Path, *, timeout: float = 120.0) -> None:
    """Until the run's captures show the transfer going (bounded)."""
    pcap = out / "pcaps" / "h1-eth0.pcap"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if run.poll() is not None:
            pytest.fail(f"the run ended before it was interrupted: {run.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        if pcap.exists() and pcap.stat().st_size > 256 << 10:
            return
        time.sleep(0.02)
    pytest.fail(f"the run did not get under way within {timeout:g} s")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_an_interrupted_mininet_run_leaves_a_bundle_that_replays(tmp_path: Path, sig: int) -> None:
    out = tmp_path / "bundle"
    run = subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "run", "two-paths", "--backend", "mininet", "--out", str(out), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=sigint_as_in_a_terminal,
    )
    try:
        _under_way(run, out)
        run.send_signal(sig)
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "interrupted; the bundle so far" in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backend"] == "mininet"
    assert summary["complete"] is True and summary["interrupted"] is True and summary["ok"] is False
    assert summary["transfers"][0]["error"] == "interrupted"
    verdict = verify(out)
    assert verdict.ok and verdict.interrupted, verdict.problems
    replay = ReplayRun(out)
    assert replay.topology()["nodes"]
    assert any(r.layer == "mptcp" for r in replay.records)  # the endpoints' records were merged in
    assert [r.data["reason"] for r in replay.records if r.node == "replay"] == [
        "bundle intact, but the run was interrupted before it finished"
    ]
    for pcap in (out / "pcaps").glob("*.pcap"):
        read_pcap_linktype(pcap)  # each one whole, header and records
    # the run stopped what it started: its state file (named after its PID) is gone
    assert list(STATE_DIR.glob(f"{run.pid}-*")) == []


def test_a_mininet_run_that_fails_validation_creates_no_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "never"
    assert main(["run", "two-paths", "--backend", "mininet", "--out", str(out), "-p", "delay_ms=(1,2,3)"]) == 2
    assert "delay_ms takes one number" in capsys.readouterr().err
    assert not out.exists()
