"""Instructor report: the results of ``tcplab exercise grade --json`` in one table.

``gather(directory)`` reads every ``*.json`` below ``directory`` (a list of
results, as ``grade --json`` prints, or one result) and keeps only results
signed with the instructor's key (:mod:`exercises.instructor`): a result an
attendee made with ``exercise check --json``, or any result edited after
``grade`` signed it, is refused and listed in ``skipped``. When one attendee
has several results for the same exercise the most recent file counts.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Result:
    attendee: str
    exercise: str
    points: int
    max_points: int
    passed: bool
    checks: list[dict[str, Any]]
    path: Path
    mtime: float


@dataclass
class Gathered:
    results: dict[tuple[str, str], Result] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # files that are not grade reports, with why

    @property
    def attendees(self) -> list[str]:
        return sorted({a for a, _ in self.results})

    @property
    def exercises(self) -> list[str]:
        return sorted({e for _, e in self.results})


def _attendee(report: dict[str, Any], path: Path, root: Path) -> str:
    name = str(report.get("attendee") or "").strip()
    if name:
        return name
    if path.parent != root:
        return path.parent.name
    return path.stem


def gather(directory: Path, *, key: bytes | None | bool = True) -> Gathered:
    """Raises FileNotFoundError when ``directory`` does not exist or is not a directory.
    ``key``: the signing key (default: the instructor's, ``instructor.signing_key()``)."""
    from exercises.instructor import signing_key, verify

    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    if key is True:
        key = signing_key()
    out = Gathered()
    for path in sorted(root.rglob("*.json")):
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            out.skipped.append(f"{path}: not JSON ({exc})")
            continue
        for index, report in enumerate(loaded if isinstance(loaded, list) else [loaded]):
            where = f"{path}[{index}]" if isinstance(loaded, list) else str(path)
            if not isinstance(report, dict) or "exercise" not in report or not isinstance(report.get("checks"), list):
                out.skipped.append(f"{where}: not a grade report")
                continue
            if not verify(report, key or None):
                out.skipped.append(
                    f"{where}: not signed by this instructor's 'tcplab exercise grade' (or edited since): refused"
                )
                continue
            _add(out, report, path, root)
    return out


def _add(out: Gathered, report: dict[str, Any], path: Path, root: Path) -> None:
    try:
        result = Result(
            attendee=_attendee(report, path, root),
            exercise=str(report["exercise"]),
            points=int(report.get("points", 0)),
            max_points=int(report.get("max_points", 0)),
            passed=bool(report.get("passed", False)),
            checks=[c for c in report["checks"] if isinstance(c, dict) and "name" in c],
            path=path,
            mtime=path.stat().st_mtime,
        )
    except (TypeError, ValueError) as exc:
        out.skipped.append(f"{path}: malformed grade report ({exc})")
        return
    key = (result.attendee, result.exercise)
    old = out.results.get(key)
    if old is None or result.mtime >= old.mtime:
        out.results[key] = result


def check_rates(g: Gathered) -> list[tuple[str, str, int, int]]:
    """(exercise, check, attendees who passed it, attendees graded), in the reports' check order."""
    rates: dict[tuple[str, str], list[int]] = {}
    for (_, exercise), result in sorted(g.results.items()):
        for c in result.checks:
            cell = rates.setdefault((exercise, str(c["name"])), [0, 0])
            cell[0] += 1 if c.get("passed") else 0
            cell[1] += 1
    return [(e, c, p, n) for (e, c), (p, n) in rates.items()]


def _cell(g: Gathered, attendee: str, exercise: str) -> str:
    r = g.results.get((attendee, exercise))
    if r is None:
        return "-"
    return f"{r.points}/{r.max_points}" + (" ✓" if r.passed else "")


def _totals(g: Gathered, attendee: str) -> tuple[int, int, int]:
    rs = [r for (a, _), r in g.results.items() if a == attendee]
    return sum(r.points for r in rs), sum(r.max_points for r in rs), sum(1 for r in rs if r.passed)


def to_markdown(g: Gathered) -> str:
    if not g.results:
        return "No grade reports found.\n"
    exercises = g.exercises
    lines = ["## Attendees", ""]
    lines.append("| attendee | " + " | ".join(exercises) + " | total | exercises passed |")
    lines.append("|---" * (len(exercises) + 3) + "|")
    for a in g.attendees:
        pts, mx, passed = _totals(g, a)
        cells = [_cell(g, a, e) for e in exercises]
        lines.append(f"| {a} | " + " | ".join(cells) + f" | {pts}/{mx} | {passed} |")
    lines += ["", "## Checks", "", "| exercise | check | passed | rate |", "|---|---|---|---|"]
    for exercise, check, passed, n in check_rates(g):
        lines.append(f"| {exercise} | {check} | {passed}/{n} | {100 * passed / n:.0f} % |")
    lines.append("")
    return "\n".join(lines)


def to_csv(g: Gathered) -> str:
    """One row per attendee: points per exercise (empty when not submitted), total, exercises passed."""
    buf = io.StringIO()
    w = csv.writer(buf)
    exercises = g.exercises
    w.writerow(["attendee", *exercises, "points", "max_points", "exercises_passed"])
    for a in g.attendees:
        pts, mx, passed = _totals(g, a)
        row = []
        for e in exercises:
            r = g.results.get((a, e))
            row.append("" if r is None else r.points)
        w.writerow([a, *row, pts, mx, passed])
    return buf.getvalue()


def checks_to_csv(g: Gathered) -> str:
    """One row per (exercise, check): how many attendees passed it, of how many graded."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["exercise", "check", "passed", "graded", "pass_rate"])
    for exercise, check, passed, n in check_rates(g):
        w.writerow([exercise, check, passed, n, f"{passed / n:.3f}"])
    return buf.getvalue()
