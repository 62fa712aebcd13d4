"""The report key: ``r`` writes the report of the bundle on screen and says where; a live run
first has to finish (its bundle final); a run recorded nowhere says so. In a real terminal the
status line keeps the path, and quitting prints the report command, which works as typed."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from lab.report import default_out
from lab.runs import ReplayRun
from lab.scenario import bundle
from lab.sim.liverun import SimRun
from tui.app import LabApp

from .conftest import SMALL_TWO_PATHS, eventually, until_finished

ROOT = Path(__file__).resolve().parents[2]


def _status(app: LabApp) -> str:
    return app._status_bar._shown  # what the status line shows, as plain text


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report-key") / "two-paths-small"
    SimRun(SMALL_TWO_PATHS, seed=1, speed=None, out_dir=out).run_to_end()
    assert bundle.verify(out).ok
    return out


@pytest.mark.asyncio
async def test_replay_writes_the_report_beside_the_bundle(recorded: Path) -> None:
    default_out(recorded).unlink(missing_ok=True)
    app = LabApp(ReplayRun(recorded, speed=None))
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("r")
        await eventually(pilot, lambda: app.last_report is not None, limit_s=60)
        assert app.last_report == default_out(recorded)
        page = app.last_report.read_text(encoding="utf-8")
        assert "two-paths-small" in page and "<svg" in page
        await eventually(pilot, lambda: "report:" in _status(app))
        assert str(default_out(recorded).name) in _status(app)
    assert bundle.verify(recorded).ok  # nothing landed inside the bundle


@pytest.mark.asyncio
async def test_live_run_reports_once_its_bundle_is_final(tmp_path: Path) -> None:
    out = tmp_path / "live"
    run = SimRun(SMALL_TWO_PATHS, seed=1, speed=0.05, out_dir=out)  # slow: it is still running at the first key
    app = LabApp(run)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        assert not run.status().finished
        await pilot.press("r")
        await pilot.pause()
        assert "no report" in app.notices[-1] and "once the run has finished" in app.notices[-1]
        assert app.last_report is None and not default_out(out).exists()
        run.set_speed(None)
        await until_finished(app, pilot)
        await eventually(pilot, lambda: bundle.verify(out).ok)
        await pilot.press("r")
        await eventually(pilot, lambda: app.last_report is not None, limit_s=60)
        assert app.last_report == default_out(out) and app.last_report.is_file()
        await eventually(pilot, lambda: "report:" in _status(app))


@pytest.mark.asyncio
async def test_a_run_recorded_nowhere_has_no_report() -> None:
    app = LabApp(SimRun(SMALL_TWO_PATHS, seed=1, speed=None))
    async with app.run_test(size=(80, 24)) as pilot:
        await until_finished(app, pilot)
        await pilot.press("r")
        await pilot.pause()
        assert "not recorded" in app.notices[-1]
        assert "not recorded" in _status(app)


@pytest.mark.asyncio
async def test_a_report_that_cannot_be_written_is_said_not_raised(recorded: Path) -> None:
    blocker = default_out(recorded)
    blocker.unlink(missing_ok=True)
    blocker.mkdir()  # a directory where the report would go: the write fails
    try:
        app = LabApp(ReplayRun(recorded, speed=None))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("r")
            await eventually(pilot, lambda: "report not written" in " ".join(app.notices), limit_s=60)
            assert app.last_report is None
            assert "report not written" in _status(app)
            await pilot.press("r")  # and the key works again
            await eventually(pilot, lambda: " ".join(app.notices).count("report not written") == 2, limit_s=60)
    finally:
        blocker.rmdir()


def test_help_and_palette_name_the_report_key() -> None:
    assert any(key == "r" and "report" in text for key, text in LabApp.HELP_KEYS)
    assert any(b.key == "r" and b.action == "report" for b in LabApp.BINDINGS)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux to drive a real terminal")
def test_in_a_terminal_at_80x24_the_key_and_the_end_message(tmp_path: Path) -> None:
    out = tmp_path / "bundle"
    session = f"tcplab-test-{uuid.uuid4().hex[:8]}"
    done = tmp_path / "ended.txt"
    command = (
        f"{shlex.quote(sys.executable)} -m lab.cli tui single-path --out {shlex.quote(str(out))} "
        f"--no-auto-pause --speed max > {shlex.quote(str(done))}; sleep 600"
    )
    env = {**os.environ, "TERM": "xterm-256color", "PYTHONPATH": str(ROOT)}
    tmux = ["tmux", "-L", session]
    subprocess.run(
        [*tmux, "new-session", "-d", "-s", session, "-x", "80", "-y", "24", "-c", str(ROOT), command],
        check=True,
        env=env,
    )

    def screen() -> str:
        return subprocess.run(
            [*tmux, "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=False
        ).stdout

    def wait_for(predicate, limit_s: float = 120) -> str:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            text = screen()
            if predicate(text):
                return text
            time.sleep(0.2)
        raise AssertionError(screen())

    try:
        wait_for(lambda s: "finished" in s.split("\n", 1)[0])
        subprocess.run([*tmux, "send-keys", "-t", session, "r"], check=True)
        shown = wait_for(lambda s: "report:" in s.split("\n", 1)[0])
        lines = shown.rstrip("\n").split("\n")
        assert "bundle.html" in lines[0] and len(lines[0]) <= 80, lines[0]
        assert "q Quit" in lines[-1] and all(len(line) <= 80 for line in lines)
        assert default_out(out).is_file()
        default_out(out).unlink()
        subprocess.run([*tmux, "send-keys", "-t", session, "q"], check=True)
        deadline = time.monotonic() + 60
        while "report:" not in (done.read_text() if done.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        subprocess.run([*tmux, "kill-server"], check=False)
    hint = next(line for line in done.read_text().splitlines() if line.startswith("report: "))
    typed = hint.removeprefix("report: ")
    ran = subprocess.run(typed, shell=True, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert ran.returncode == 0, ran.stderr
    assert default_out(out).is_file() and str(default_out(out)) in ran.stdout
