"""`tcplab exercise ...`: list, show, start, check, report, through the real command line."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from exercises import report as rep
from exercises.grading import exercise_names, load_exercise
from lab.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code)
    out, err = capsys.readouterr()
    return code, out, err


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "exercise", "list", "--json")
    assert code == 0
    rows = json.loads(out)
    assert [r["name"] for r in rows] == exercise_names()
    assert all(r["points"] > 0 and r["minutes"] > 0 for r in rows)


def test_show(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "exercise", "show", "eno_tep")
    assert code == 0 and "RFC 8547" in out and "host B's order decides (2)" in out


def test_unknown_exercise_is_one_clear_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "exercise", "check", "no_such_exercise")
    assert code == 2 and not out
    assert err.startswith("tcplab: error: unknown exercise 'no_such_exercise'; known: ")
    assert len(err.strip().splitlines()) == 1


def test_start_then_check_in_the_working_directory(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "exercise", "start", "iketcp_decode")
    assert code == 0
    work = tmp_path / "iketcp_decode"
    assert f"Your working copy is {work.resolve()}" in out
    assert {"README.md", "solution.py", "scenario.py", "stream.txt", "stream.bin"} <= {p.name for p in work.iterdir()}
    # starting again would overwrite the attendee's work: refused
    code, _, err = run(capsys, "exercise", "start", "iketcp_decode")
    assert code == 2 and "--force" in err
    # check from the parent directory and from inside the working directory
    code, out, _ = run(capsys, "exercise", "check", "iketcp_decode")
    assert code == 1 and "[FAIL] the stream prefix" in out
    ex = load_exercise("iketcp_decode")
    shutil.copyfile(ex.package_dir / "solution" / "solution.py", work / "solution.py")
    monkeypatch.chdir(work)
    junit = tmp_path / "junit.xml"
    code, out, _ = run(
        capsys, "exercise", "check", "iketcp_decode", "--json", "--junit", str(junit), "--attendee", "ada"
    )
    assert code == 0
    result = json.loads(out)
    assert result["passed"] and result["attendee"] == "ada" and result["backend"] == "none"
    assert 'failures="0"' in junit.read_text()


def test_check_with_a_dir_and_bad_values(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "exercise", "check", "eno_tep", "--dir", str(tmp_path / "none"))
    assert code == 1 and "no solution.py" in out
    code, _, err = run(capsys, "exercise", "check", "eno_tep", "--time-limit", "-1")
    assert code == 2 and "--time-limit" in err
    code, _, err = run(capsys, "exercise", "check", "eno_tep", "--backend", "ns3")
    assert code == 2 and "invalid choice" in err


def test_mininet_backend_is_refused_clearly_where_it_cannot_grade(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "exercise", "check", "tcpcrypt_tamper", "--backend", "mininet")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "tcpcrypt_tamper cannot be graded on Mininet" in err and "--backend sim" in err
    code, _, err = run(
        capsys, "exercise", "check", "mptcp_path_failure", "--backend", "mininet", "--dir", "/nonexistent"
    )
    if os.geteuid():
        assert code == 2 and "needs root" in err and len(err.strip().splitlines()) == 1
    else:  # root: it grades (here: nothing to grade) instead of refusing
        assert code == 1 and "needs root" not in err


def _report(directory: Path, attendee: str, exercise: str, checks: list[tuple[str, bool, int]]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "exercise": exercise,
        "attendee": attendee,
        "passed": all(p for _, p, _ in checks),
        "points": sum(pts for _, p, pts in checks if p),
        "max_points": sum(pts for _, _, pts in checks),
        "checks": [{"name": n, "passed": p, "points": pts if p else 0, "max_points": pts} for n, p, pts in checks],
    }
    from exercises.instructor import sign, signing_key

    (directory / f"{attendee}-{exercise}.json").write_text(json.dumps(sign(data, signing_key(create=True))))


def test_report_gathers_a_table_with_pass_rates(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    results = tmp_path / "results"
    _report(results, "ada", "eno_tep", [("a", True, 1), ("b", True, 2)])
    _report(results, "bob", "eno_tep", [("a", True, 1), ("b", False, 2)])
    _report(results, "bob", "mptcp_token", [("t", False, 2)])
    (results / "notes.json").write_text('{"not": "a report"}')
    (results / "broken.json").write_text("{")
    forged = json.loads((results / "bob-mptcp_token.json").read_text())
    forged["points"] = 999
    (results / "forged.json").write_text(json.dumps(forged))
    unsigned = {k: v for k, v in forged.items() if k != "signature"}
    (results / "unsigned.json").write_text(json.dumps(unsigned))
    md, table, checks = tmp_path / "r.md", tmp_path / "r.csv", tmp_path / "c.csv"
    code, out, err = run(
        capsys,
        "exercise",
        "report",
        str(results),
        "--markdown",
        str(md),
        "--csv",
        str(table),
        "--checks-csv",
        str(checks),
    )
    assert code == 0 and not out
    assert "skipped" in err and "notes.json" in err and "broken.json" in err
    assert "forged.json: not signed" in err and "unsigned.json: not signed" in err
    text = md.read_text()
    assert "| ada | 3/3 ✓ | - | 3/3 | 1 |" in text
    assert "| bob | 1/3 | 0/2 | 1/5 | 0 |" in text
    assert "| eno_tep | b | 1/2 | 50 % |" in text
    rows = list(csv.DictReader(io.StringIO(table.read_text())))
    assert rows[1] == {
        "attendee": "bob",
        "eno_tep": "1",
        "mptcp_token": "0",
        "points": "1",
        "max_points": "5",
        "exercises_passed": "0",
    }
    assert rows[0]["mptcp_token"] == ""
    rates = list(csv.DictReader(io.StringIO(checks.read_text())))
    assert {"exercise": "eno_tep", "check": "b", "passed": "1", "graded": "2", "pass_rate": "0.500"} in rates


def test_report_of_real_grade_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """`grade --json` output is what `report` reads; `check --json` output and edited results are refused."""
    from tests.exercises.conftest import workdir

    subs = tmp_path / "subs"
    for attendee, reference in (("ada", True), ("bob", False)):
        _ex, directory = workdir("eno_tep", tmp_path / "work" / attendee, reference=reference)
        shutil.copytree(directory, subs / attendee)
    code, out, _ = run(capsys, "exercise", "grade", "eno_tep", str(subs), "--json", "--jobs", "1")
    assert code == 1  # bob fails
    graded = json.loads(out)
    assert [(r["attendee"], r["passed"], r["seeds"]) for r in graded] == [
        ("ada", True, "fresh"),
        ("bob", False, "fresh"),
    ]
    results = tmp_path / "results"
    results.mkdir()
    (results / "eno_tep.json").write_text(out)
    code, out, _ = run(capsys, "exercise", "check", "eno_tep", "--dir", str(subs / "bob"), "--json")
    mine = json.loads(out)
    mine.update(points=mine["max_points"], passed=True)
    (results / "bob-check.json").write_text(json.dumps(mine))
    edited = json.loads((results / "eno_tep.json").read_text())
    edited[1]["points"] = 10
    (results / "edited.json").write_text(json.dumps(edited))
    g = rep.gather(results)
    assert g.attendees == ["ada", "bob"]
    assert g.results[("ada", "eno_tep")].passed and not g.results[("bob", "eno_tep")].passed
    assert g.results[("bob", "eno_tep")].path.name == "eno_tep.json"
    assert any("bob-check.json: not signed" in s for s in g.skipped)
    assert any("edited.json[1]: not signed" in s for s in g.skipped)
    code, out, _ = run(capsys, "exercise", "report", str(results))
    assert code == 0 and "| eno_tep | host B's order decides | 1/2 | 50 % |" in out


def test_report_of_a_missing_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "exercise", "report", str(tmp_path / "nope"))
    assert code == 2 and "is not a directory" in err


def test_start_inside_the_repository_uses_the_ignored_workspace(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import subprocess

    from exercises.grading import PROJECT_ROOT

    monkeypatch.chdir(PROJECT_ROOT / "lab")
    monkeypatch.setattr("exercises.grading.PROJECT_ROOT", PROJECT_ROOT)
    target = PROJECT_ROOT / "workspace" / "eno_tep"
    if target.exists():
        pytest.skip(f"{target} holds someone's work")
    try:
        code, out, _ = run(capsys, "exercise", "start", "eno_tep")
        assert code == 0 and f"Your working copy is {target}" in out
        ignored = subprocess.run(
            ["git", "check-ignore", "-q", str(target / "solution.py")], cwd=PROJECT_ROOT, check=False
        )
        assert ignored.returncode == 0, "the workspace is not ignored by git"
        code, out, _ = run(capsys, "exercise", "check", "eno_tep")  # finds it again
        assert code == 1 and "[FAIL]" in out
    finally:
        shutil.rmtree(target, ignore_errors=True)


def test_mininet_backend_on_an_exercise_without_a_scenario_is_said_to_be_ignored(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, _, err = run(
        capsys, "exercise", "check", "iketcp_decode", "--backend", "mininet", "--dir", str(tmp_path / "none")
    )
    assert "--backend mininet ignored: iketcp_decode runs no scenario" in err
