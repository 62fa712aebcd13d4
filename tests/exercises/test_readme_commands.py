"""The report and dissector commands an exercise's README gives work as typed, in a working copy
made as `tcplab exercise start` makes it: each `tcplab run/report/dissectors` and `tshark` line runs
in order (``tcplab`` the lab's own command line, DIR the working copy), and every tshark line loads
the dissectors without a Lua error, shows packets, and finds nothing malformed."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import workdir

ROOT = Path(__file__).resolve().parents[2]
COMMAND = re.compile(r"`((?:tcplab (?:run|report|dissectors)|(?:eval )?tshark) [^`]*|tcplab dissectors)`")
MALFORMED = "_ws.malformed || _ws.expert.severity >= error || eno.malformed || tcpcrypt.malformed || iketcp.malformed"
# the exercises whose README reads a capture or a trace with the lab's report and dissectors
EXERCISES = (
    "tcpcrypt_tamper",
    "tcp_trace_questions",
    "ike_fallback_timeline",
    "iketcp_decode",
    "ike_race",
    "eno_session_id",
    "eno_tep",
)


def readme_commands(readme: str) -> list[str]:
    """The command lines in backticks, in order, with line breaks inside them joined."""
    return [" ".join(c.split()) for c in COMMAND.findall(readme.replace("\n", " "))]


def test_every_listed_exercise_names_the_report_and_the_dissectors() -> None:
    for name in EXERCISES:
        commands = readme_commands((ROOT / "exercises" / name / "README.md").read_text(encoding="utf-8"))
        if name != "tcp_trace_questions":  # a trace, no capture
            assert any(c.removeprefix("eval ").startswith("tshark $(tcplab dissectors --args)") for c in commands), name
            assert any(c.startswith("tcplab dissectors") for c in commands), name
        if name != "ike_fallback_timeline":  # a libreswan capture, no bundle to report
            assert any(c.startswith("tcplab report ") for c in commands), name


@pytest.mark.parametrize("name", EXERCISES)
def test_readme_commands_work_as_typed(name: str, tmp_path: Path) -> None:
    if shutil.which("tshark") is None:
        pytest.skip("tshark is not installed (Debian: apt install tshark)")
    _ex, directory = workdir(name, tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program, argv in (("tcplab", f"{sys.executable} -m lab.cli"), ("python", sys.executable)):
        wrapper = bin_dir / program
        wrapper.write_text(f'#!/bin/sh\nexec {argv} "$@"\n')
        wrapper.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    commands = readme_commands((directory / "README.md").read_text(encoding="utf-8"))
    assert commands
    for line in commands:
        line = line.replace("DIR", str(directory))
        if line.startswith("tcplab run ") and "--out " not in line:
            continue  # the README names a run without making one here
        done = subprocess.run(
            ["bash", "-c", line], cwd=directory, env=env, capture_output=True, text=True, timeout=600, check=False
        )
        if line.startswith("tcplab run "):
            assert done.returncode in (0, 1), (line, done.stderr)  # 1: tcpcrypt-tamper's transfer aborts, as meant
            assert (directory / line.split("--out ")[1].split()[0] / "summary.json").is_file(), line
            continue
        assert done.returncode == 0, (line, done.stderr)
        assert "Lua: Error" not in done.stderr and "rror" not in done.stderr.replace("Running as user", ""), (
            line,
            done.stderr,
        )
        if "tshark $(tcplab dissectors --args)" in line:
            assert done.stdout.strip(), line  # the filter shows packets
            capture = line.split(" -r ")[1].split()[0]
            base = line.split(" -r ")[0]
            check = subprocess.run(
                [
                    "bash",
                    "-c",
                    f"{base} -r {capture} -Y "
                    + (f"\"'{MALFORMED}'\"" if base.startswith("eval ") else f"'{MALFORMED}'"),
                ],
                cwd=directory,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
                check=False,
            )
            assert check.returncode == 0, check.stderr
            if name != "ike_fallback_timeline":  # its capture lacks RFC 9329's Length on purpose
                assert check.stdout.strip() == "", (line, check.stdout)
        if line.startswith("tcplab report "):
            report = Path(line.split()[2].rstrip("/")).name
            assert (directory / f"{report}.html").is_file() or (tmp_path / f"{name}.html").is_file(), line
