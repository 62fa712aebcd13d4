"""A wheel of the project carries what the exercises and the TUI read at run time, not only modules:
READMEs, captures, JSON exchanges and starters, and the TUI's stylesheet; never the reference
solutions (they stay in the source tree, where the graders' tests find them)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ("lab", "topologies", "tui", "exercises")
DATA_TREES = ("exercises", "tui")  # every file in these trees belongs in the wheel


def _source_files(tree: str) -> set[str]:
    return {
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / tree).rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    }


def test_wheel_holds_exercise_data_and_tui_stylesheet(tmp_path: Path) -> None:
    # build from a copy: building in place would leave build/ and *.egg-info in the working tree
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copyfile(ROOT / name, src / name)
    for tree in PACKAGED:
        shutil.copytree(ROOT / tree, src / tree, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    dist = tmp_path / "dist"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(src)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    wheels = list(dist.glob("tcplab-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as whl:
        names = set(whl.namelist())
    expected = set().union(*(_source_files(tree) for tree in DATA_TREES))
    assert "tui/lab.tcss" in expected and "exercises/mptcp_token/capture.pcap" in expected
    assert "exercises/iketcp_decode/libreswan_exchange.json" in expected
    solutions = {n for n in expected if "/solution/" in n}
    assert "exercises/mptcp_scheduler/solution/solution.py" in solutions
    missing = sorted(expected - solutions - names)
    assert not missing, f"not in the wheel: {missing}"
    shipped = sorted(n for n in names if "/solution/" in n)
    assert not shipped, f"reference solutions in the wheel: {shipped}"
