"""`tcplab exercise grade` and `collect`: every reference solution gets full marks with seeds nobody saw,
every untouched starter fails, the results are signed, the JUnit file has one suite per attendee."""

from __future__ import annotations

import json
import secrets
import shutil
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from exercises import instructor
from exercises.commands import start_exercise
from exercises.grading import exercise_names, load_exercise
from lab.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("name", exercise_names())
def test_grade_with_fresh_seeds_full_marks_for_the_reference_none_for_the_starter(name: str, tmp_path: Path) -> None:
    ex = load_exercise(name)
    subs = tmp_path / "subs"
    for attendee in ("ada", "bob"):
        start_exercise(ex, subs / attendee)
    shutil.copyfile(ex.package_dir / "solution" / "solution.py", subs / "ada" / "solution.py")
    salt = secrets.randbelow(1 << 62)
    results = {r["attendee"]: r for r in instructor.grade_all(name, subs, backend="sim", salt=salt, jobs=2)}
    ada, bob = results["ada"], results["bob"]
    assert ada["passed"] and ada["points"] == ada["max_points"], f"salt {salt}: " + json.dumps(ada, indent=1)
    assert not bob["passed"] and bob["checks"][0]["passed"], f"salt {salt}: " + json.dumps(bob, indent=1)
    assert ada["seeds"] == "fresh" and ada["seed_salt"] == salt
    assert instructor.copied_reference(ada) and not instructor.copied_reference(bob)  # a copy is flagged
    key = instructor.signing_key()
    assert all(instructor.verify(r, key) for r in results.values())
    assert not instructor.verify({**bob, "points": bob["max_points"]}, key)


def test_grade_command_text_json_junit_and_collect(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    ex = load_exercise("eno_tep")
    work = tmp_path / "home"
    for attendee in ("ada", "bob"):
        start_exercise(ex, work / attendee / "eno_tep")
    shutil.copyfile(ex.package_dir / "solution" / "solution.py", work / "ada" / "eno_tep" / "solution.py")
    subs = tmp_path / "handin"
    code, out, err = run(
        capsys,
        "exercise",
        "collect",
        "eno_tep",
        str(subs),
        str(work / "ada" / "eno_tep"),
        str(work / "bob" / "eno_tep"),
    )
    assert code == 0, err
    assert sorted(p.name for p in subs.iterdir()) == ["ada", "bob"]
    code, _, err = run(capsys, "exercise", "collect", "eno_tep", str(subs), str(work / "ada"))
    assert code == 2 and "has no solution.py" in err
    junit = tmp_path / "grade.xml"
    code, out, _ = run(capsys, "exercise", "grade", "eno_tep", str(subs), "--junit", str(junit), "--seed-salt", "5")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("ada") and "passed" in lines[0] and lines[1].startswith("bob")
    assert "100% the reference solution's code" in lines[0] and "reference" not in lines[1]
    assert "1 of 2 attendees passed eno_tep (seed salt 5)" in out
    suites = ET.parse(junit).getroot().findall("testsuite")
    assert [s.get("name") for s in suites] == ["eno_tep.ada", "eno_tep.bob"]
    assert suites[0].get("failures") == "0" and suites[1].get("failures") != "0"
    code, out, _ = run(capsys, "exercise", "grade", "eno_tep", str(subs), "--json", "--seed-salt", "5")
    graded = json.loads(out)
    assert {"attendee", "points", "max_points", "passed", "checks", "sandbox", "signature"} <= set(graded[0])
    code, _, err = run(capsys, "exercise", "grade", "eno_tep", str(tmp_path / "nope"))
    assert code == 2 and "is not a directory" in err
