"""The report key of the TUI: which bundle a run shows, whether it is final, and writing its report.

A replay shows a recorded bundle, always final enough to report (``tcplab
report`` reads cut-off and damaged bundles too and says so on the page). A
live run reports its own bundle once that is finalised: the simulator
finalises it when the run finishes; a Mininet run keeps its network up until
the viewer quits, and finalises the bundle then.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ReportTarget:
    """The bundle to report (``bundle``), or why there is none yet (``reason``)."""

    bundle: Path | None
    reason: str = ""


def report_target(lab_run: Any) -> ReportTarget:
    """Which bundle ``lab_run`` shows and whether its report can be written now. Never raises."""
    from lab.cli import command

    recorded = getattr(lab_run, "bundle", None)  # a replay
    if isinstance(recorded, Path):
        return ReportTarget(recorded)
    out_dir = getattr(lab_run, "out_dir", None)
    if not isinstance(out_dir, Path):
        return ReportTarget(None, "run not recorded")
    try:
        finished = bool(lab_run.status().finished)
    except Exception:  # a run that cannot say is not finished
        finished = False
    if finished and _finalised(out_dir):
        return ReportTarget(out_dir)
    hint = command("report", short_path(out_dir))
    if getattr(lab_run, "backend", "") == "mininet":
        return ReportTarget(None, f"after you quit (the bundle is final then): {hint}")
    return ReportTarget(None, f"once the run has finished (or after you quit: {hint})")


def _finalised(out_dir: Path) -> bool:
    try:
        summary = json.loads((out_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and summary.get("complete") is True


def short_path(path: Path) -> str:
    """``path`` relative to the current directory when it lies below it (status lines are short)."""
    try:
        return os.path.relpath(path) if Path(path).resolve().is_relative_to(Path.cwd().resolve()) else str(path)
    except (OSError, ValueError):
        return str(path)


def write(bundle: Path) -> Path:
    """Write the report of ``bundle`` beside it; returns its path. Raises LabError or OSError."""
    from lab.report import write_report

    return write_report(bundle)
