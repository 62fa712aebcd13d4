"""Run bundles you can trust: digests in summary.json, ``tcplab verify``, killed runs, replay's verdict."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.cli import main
from lab.pcap import read_pcap
from lab.runs import ReplayRun
from lab.scenario import bundle, get_scenario
from lab.sim.liverun import SimRun
from tests.procs import sigint_as_in_a_terminal

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bundles") / "two-paths"
    assert main(["run", "two-paths", "--out", str(out), "--quiet"]) == 0
    return out


@pytest.fixture
def copy(pristine: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(pristine, tmp_path / "bundle"))


def verify(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    status = main(["verify", str(path)])
    return status, capsys.readouterr().out.strip().splitlines()


def test_a_finished_run_is_a_complete_bundle_with_a_digest_of_every_file(
    pristine: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = json.loads((pristine / "summary.json").read_text())
    assert summary["complete"] is True and summary["interrupted"] is False
    files = sorted(p.relative_to(pristine).as_posix() for p in pristine.rglob("*") if p.is_file())
    assert sorted(summary["digests"]) == [f for f in files if f != "summary.json"]
    assert len(summary["digests"]) == 10  # topology, trace, eight pcaps
    assert summary["summary_sha256"] == bundle.summary_digest(summary)
    status, lines = verify(pristine, capsys)
    assert status == 0 and lines == [f"{pristine}: intact, 11 files match their SHA-256"]


def test_verify_names_an_edited_record(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = copy / "trace.jsonl"
    lines = trace.read_text().splitlines(keepends=True)
    edited = [line.replace('"sha256_match": false', '"sha256_match": true') for line in lines]
    edited[10] = edited[10].replace('"t":', '"t": 0.0, "x":', 1)  # any change, even one that still parses
    trace.write_text("".join(edited))
    status, out = verify(copy, capsys)
    assert status == 1 and out == [f"{copy}: trace.jsonl: changed (SHA-256 differs from the summary's)"]


def test_verify_names_deleted_records_and_files(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    trace = copy / "trace.jsonl"
    lines = trace.read_text().splitlines(keepends=True)
    trace.write_text("".join(lines[:100] + lines[200:]))
    (copy / "pcaps" / "r2-eth1.pcap").unlink()
    (copy / "notes.txt").write_text("added later")
    status, out = verify(copy, capsys)
    assert status == 1
    assert out == [
        f"{copy}: pcaps/r2-eth1.pcap: missing",
        f"{copy}: trace.jsonl: changed (SHA-256 differs from the summary's)",
        f"{copy}: notes.txt: not part of the bundle (added after the run)",
    ]


def test_verify_names_a_doctored_summary(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = copy / "summary.json"
    summary = json.loads(path.read_text())
    summary["transfers"][0]["goodput_mbps"] = 99.0
    path.write_text(json.dumps(summary, indent=2))
    status, out = verify(copy, capsys)
    assert status == 1 and out == [
        f"{copy}: summary.json: changed since the run finalised it (its SHA-256 does not match)"
    ]
    summary["complete"] = False  # pretending the run never ended does not help either
    path.write_text(json.dumps(summary))
    status, out = verify(copy, capsys)
    assert status == 1 and "summary.json: incomplete" in out[0]


def test_verify_names_a_truncated_pcap(copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pcap = copy / "pcaps" / "h1-eth0.pcap"
    with open(pcap, "r+b") as fh:
        fh.truncate(pcap.stat().st_size - 7)
    status, out = verify(copy, capsys)
    assert status == 1 and out == [f"{copy}: pcaps/h1-eth0.pcap: changed (SHA-256 differs from the summary's)"]


def test_replay_shows_the_verdict_as_problems_and_in_the_status(copy: Path) -> None:
    intact = ReplayRun(copy)
    assert intact.verdict is not None and intact.verdict.ok
    assert not [r for r in intact.records if r.node == "replay"]
    assert intact.status().text.startswith("bundle verified — ")
    (copy / "topology.json").write_text(json.dumps({"nodes": 5}))
    damaged = ReplayRun(copy)
    problems = [r.data["reason"] for r in damaged.records if r.node == "replay" and r.name == "error"]
    assert problems == [
        "bundle not intact: topology.json: changed (SHA-256 differs from the summary's)",
        "topology.json: nodes is not a list; the topology is not shown",
    ]
    assert damaged.status().text.startswith("BUNDLE NOT INTACT (1 problems, see Events) — ")
    assert damaged.topology()["nodes"] == []


@pytest.mark.parametrize(
    "damage",
    [
        lambda b: (b / "topology.json").write_text('{"links": [{"name": 3}]}'),
        lambda b: (b / "topology.json").write_text('{"links": [{"name": "x", "a": "h1", "b": "h2", "delay_ms": "5"}]}'),
        lambda b: (b / "summary.json").write_text("[1, 2]"),
        lambda b: (b / "summary.json").write_bytes(b"\xff\xfe"),
        lambda b: (b / "trace.jsonl").write_bytes(b"\x00" * 100),
    ],
)
def test_a_bad_bundle_is_one_line_and_non_zero_never_a_traceback(copy: Path, damage) -> None:
    damage(copy)
    for args in (["verify", str(copy)], ["replay", str(copy), "--headless-check"]):
        proc = subprocess.run(
            [sys.executable, "-m", "lab.cli", *args], capture_output=True, text=True, timeout=120, cwd=ROOT, check=False
        )
        assert proc.returncode == 1, (args, proc.stdout[-500:], proc.stderr[-2000:])
        assert "Traceback" not in proc.stderr
        if args[0] == "replay":
            assert len(proc.stderr.strip().splitlines()) == 1 and "not an intact bundle" in proc.stderr


def test_verify_and_replay_of_what_is_no_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(tmp_path / "nothing")]) == 2
    assert main(["replay", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("tcplab: error: no run bundle at") for line in err)
    status, out = verify(tmp_path, capsys)
    assert status == 1 and "summary.json: missing" in out[0]


def _start_run(out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "lab.cli", "run", "two-paths", "--out", str(out), "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        preexec_fn=sigint_as_in_a_terminal,
    )


def _wait_until_under_way(run: subprocess.Popen[str], out: Path, *, timeout: float = 120.0) -> None:
    """Until the bundle is begun and the trace has grown past its first records (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.poll() is None, f"the run ended before it was killed: {run.stderr.read()[-1000:]}"
        trace = out / "trace.jsonl"
        if (out / "summary.json").exists() and trace.exists() and trace.stat().st_size > 1 << 20:
            return
        time.sleep(0.01)
    pytest.fail(f"the run did not get under way within {timeout:g} s")


def test_a_run_killed_outright_leaves_a_bundle_that_says_it_is_incomplete(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "killed"
    run = _start_run(out)
    try:
        _wait_until_under_way(run, out)
    finally:
        run.send_signal(signal.SIGKILL)
        run.communicate(timeout=60)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["scenario"] == "two-paths"
    for pcap in (out / "pcaps").glob("*.pcap"):
        assert pcap.stat().st_size >= 24  # the header, whatever else made it to the file
    status, lines = verify(out, capsys)
    assert status == 1
    assert lines[0] == (
        f"{out}: summary.json: incomplete (the run ended before it finalised its bundle: killed or crashed)"
    )
    replay = ReplayRun(out)
    reasons = [r.data["reason"] for r in replay.records if r.node == "replay"]
    assert reasons[0].startswith("bundle not intact: summary.json: incomplete")
    assert len(replay.records) > len(reasons)  # what was recorded still replays


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_terminated_run_finalises_its_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str], sig: int) -> None:
    out = tmp_path / "terminated"
    run = _start_run(out)
    try:
        _wait_until_under_way(run, out)
        run.send_signal(sig)
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 130, err[-2000:]
    assert "interrupted; the bundle so far" in err and "Traceback" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and summary["interrupted"] is True and summary["ok"] is False
    assert summary["transfers"][0]["error"] == "interrupted"
    for pcap in (out / "pcaps").glob("*.pcap"):
        read_pcap(pcap)  # whole records only
    status, lines = verify(out, capsys)
    assert status == 0 and lines[0].endswith("(the run was interrupted before it finished)")
    assert ReplayRun(out).status().text.startswith("bundle verified, run interrupted — ")


def test_a_run_that_fails_validation_creates_no_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "never"
    assert main(["run", "two-paths", "--out", str(out), "-p", "loss_pct=150"]) == 2
    assert "loss_pct" in capsys.readouterr().err
    assert not out.exists()
    assert main(["tui", "two-paths", "--out", str(out), "-p", "bw_mbps=5000"]) == 2
    assert not out.exists()
    with pytest.raises(Exception, match="loss_pct"):
        SimRun(get_scenario("two-paths").with_params(loss_pct=150), out_dir=out)
    assert not out.exists()


def test_out_refuses_an_existing_bundle_unless_forced(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b"
    assert main(["run", "single-path", "--out", str(out), "--quiet"]) == 0
    first = json.loads((out / "summary.json").read_text())
    capsys.readouterr()
    assert main(["run", "two-paths", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"tcplab: error: {out} already holds a run bundle; add --force to replace it, or choose another --out"
    assert json.loads((out / "summary.json").read_text()) == first
    assert main(["run", "two-paths", "--out", str(out), "--quiet", "--force"]) == 0
    second = json.loads((out / "summary.json").read_text())
    assert second["scenario"] == "two-paths"
    # nothing of the old bundle is left beside the new one: every file is the new run's
    assert sorted(p.name for p in (out / "pcaps").iterdir()) == sorted(Path(p).name for p in second["files"]["pcaps"])
    capsys.readouterr()
    assert main(["verify", str(out)]) == 0
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("precious")
    assert main(["run", "two-paths", "--out", str(other), "--force"]) == 2
    assert "not empty and holds no run bundle" in capsys.readouterr().err
    assert (other / "thesis.tex").read_text() == "precious"


def test_run_json_names_the_bundle_and_its_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "b"
    assert main(["run", "single-path", "--out", str(out), "--json", "--no-pcap"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["bundle"] == {"path": str(out), "files": ["summary.json", "topology.json", "trace.jsonl"]}
    assert all((out / name).is_file() for name in printed["bundle"]["files"])


def test_a_recorded_tui_run_is_a_verified_bundle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tui"
    run = SimRun(get_scenario("single-path"), speed=None, out_dir=out)
    assert json.loads((out / "summary.json").read_text())["complete"] is False
    run.run_to_end()
    run.close()
    assert main(["verify", str(out)]) == 0
    assert os.path.getsize(out / "trace.jsonl") > 0
