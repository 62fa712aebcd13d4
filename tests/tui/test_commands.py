"""The tui, replay and serve subcommands: arguments, clear errors, a headless open."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab.cli import main
from lab.sim.liverun import SimRun

from .conftest import SMALL_TWO_PATHS

ROOT = Path(__file__).resolve().parents[2]


def test_subcommands_are_registered(capsys: pytest.CaptureFixture[str]) -> None:
    for cmd in ("tui", "replay", "serve"):
        with pytest.raises(SystemExit) as exc:
            main([cmd, "--help"])
        assert exc.value.code == 0
    assert "--backend" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["tui", "no-such-scenario", "--no-record"], "unknown scenario 'no-such-scenario'"),
        (["tui", "--speed", "0"], "speed must be a positive number or 'max'"),
        (["tui", "--speed", "fast"], "speed must be a positive number or 'max'"),
        (["replay", "/nonexistent/bundle"], "no run bundle at /nonexistent/bundle"),
        (["serve", "--port", "70000"], "port must be 1..65535"),
    ],
)
def test_bad_input_gets_one_clear_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        status = main(argv)
    except SystemExit as exc:  # argparse refusals
        status = exc.code
    err = capsys.readouterr().err
    assert status == 2
    assert message in err
    assert "Traceback" not in err


def test_mininet_tui_refuses_without_root(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert main(["tui", "two-paths", "--backend", "mininet", "--no-record"]) == 2
    err = capsys.readouterr().err
    assert "the Mininet backend needs root" in err and len(err.strip().splitlines()) == 1


def test_replay_of_a_directory_without_a_trace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["replay", str(tmp_path)]) == 2
    assert "has no trace.jsonl" in capsys.readouterr().err


def test_tui_and_replay_open_headless(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    SimRun(SMALL_TWO_PATHS, seed=1, speed=None, out_dir=bundle).run_to_end()
    out = subprocess.run(
        [sys.executable, "-m", "lab.cli", "replay", str(bundle), "--speed", "max", "--headless-check"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    views = json.loads(out.stdout)
    assert views["TopologyView"]["transfers"] == {"bulk": ["received", "sent"]}
    assert views["problems"] == []
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "lab.cli",
            "tui",
            "single-path",
            "--speed",
            "max",
            "--out",
            str(tmp_path / "live"),
            "--headless-check",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["TopologyView"]["links"] == {"h1-r1": True, "r1-h2": True}
    summary = json.loads((tmp_path / "live" / "summary.json").read_text())
    assert summary["ok"] and summary["recorded_by"] == "tui"


def test_tui_ingest_benchmark_is_registered(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "list"]) == 0
    assert "tui-ingest" in capsys.readouterr().out


def test_offered_records_keep_to_their_rate() -> None:
    import asyncio

    from lab.trace import TraceRecord
    from tui.bench import OfferedRecords

    records = [TraceRecord(i * 0.001, "h1", "app", "state_updated", {"i": i}) for i in range(10)]
    run = OfferedRecords(records, {"nodes": [], "links": [], "interfaces": []}, rate=2000, seconds=0.2)

    async def collect() -> list[int]:
        return [len(batch) async for batch in run.trace_batches()]

    sizes = asyncio.run(collect())
    assert sizes == [100, 100, 100, 100] and run.offered == 400 and run.status().finished
