"""CLI subcommands contributed by exercises/ (entry point tcplab.commands).

Each value of COMMANDS takes the tcplab subparsers object and adds its
subcommands; handlers return an exit status and report bad input with
lab.cli.fail.

``tcplab exercise``::

    list [--json]                          the exercises, their topic and time
    show NAME                              the task (README) and the checks
    start NAME [--dir DIR] [--force]       copy the starter into a working directory (./workspace/NAME
                                           inside the repository, which ignores it; else ./NAME)
    check NAME [--dir DIR] [--json] [--junit FILE] [--backend sim|mininet] [--attendee NAME]
    collect NAME DEST DIR...               copy attendees' working directories into DEST/ATTENDEE/
    grade NAME SUBMISSIONS_DIR [--json] [--junit FILE] [--backend sim|mininet] [--jobs N] [--seed-salt N]
                                           the instructor's grade: every attendee, fresh seeds, signed
    report DIR [--csv FILE] [--checks-csv FILE] [--markdown FILE]   tables from signed grade results
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.cli import Parser, command, fail

MARKER = ".tcplab-exercise"  # names the exercise a working directory belongs to


def _load(name: str) -> Any:
    from exercises.grading import load_exercise

    try:
        return load_exercise(name)
    except KeyError as exc:
        raise _Usage(str(exc.args[0])) from None


class _Usage(Exception):
    pass


def cmd_list(args: Any) -> int:
    from exercises.grading import exercise_names, load_exercise

    rows = []
    for name in exercise_names():
        ex = load_exercise(name)
        rows.append({"name": name, "topic": ex.topic, "minutes": ex.minutes, "title": ex.title, "points": _points(ex)})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['name']:<22} {r['topic']:<6} {r['minutes']:>3} min  {r['title']}")
    return 0


def _points(ex: Any) -> int:
    return sum(c.points for c in ex.checks)


def cmd_show(args: Any) -> int:
    ex = _load(args.name)
    print((ex.package_dir / "README.md").read_text(encoding="utf-8").rstrip())
    print()
    print(f"Checks ({_points(ex)} points):")
    for c in ex.checks:
        print(f"  - {c.name} ({c.points})")
    print()
    print(f"Start with: {command('exercise', 'start', ex.name)}")
    return 0


def start_exercise(ex: Any, directory: Path, *, force: bool = False) -> list[Path]:
    """Copy what an attendee receives into ``directory``: README.md, the starter as solution.py,
    scenario.py, the exercise's extra files, and what ``prepare`` generates. Never the reference
    solution. Raises FileExistsError when ``directory`` already holds a solution.py (unless ``force``)."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "solution.py"
    if target.exists() and not force:
        raise FileExistsError(f"{target} exists (your work?): use --force to overwrite it, or another --dir")
    src = ex.package_dir
    written = []
    for name in ("README.md", "scenario.py", *ex.files):
        shutil.copyfile(src / name, directory / name)
        written.append(directory / name)
    shutil.copyfile(src / "starter.py", target)
    written.append(target)
    if ex.prepare is not None:
        before = set(directory.iterdir())
        ex.prepare(directory)
        written += sorted(set(directory.iterdir()) - before)
    (directory / MARKER).write_text(ex.name + "\n")
    return written


def workspace_root() -> Path:
    """Where ``start`` puts working copies: $TCPLAB_WORKSPACE; inside the repository its ignored
    ``workspace/`` folder; elsewhere the current directory."""
    from exercises.grading import PROJECT_ROOT

    if os.environ.get("TCPLAB_WORKSPACE"):
        return Path(os.environ["TCPLAB_WORKSPACE"])
    here = Path.cwd().resolve()
    if here == PROJECT_ROOT or PROJECT_ROOT in here.parents:
        return PROJECT_ROOT / "workspace"
    return Path.cwd()


def cmd_start(args: Any) -> int:
    ex = _load(args.name)
    directory = Path(args.dir) if args.dir else workspace_root() / ex.name
    try:
        written = start_exercise(ex, directory, force=args.force)
    except FileExistsError as exc:
        return fail(str(exc))
    print(f"{ex.name}: {ex.title}")
    for path in written:
        print(f"  {path}")
    print(f"\nYour working copy is {directory.resolve()}")
    print(f"Read {directory / 'README.md'}, edit {directory / 'solution.py'}, then:")
    dir_opt = () if directory.resolve() == _default_dir(ex.name).resolve() else ("--dir", str(directory))
    print(f"  {command('exercise', 'check', ex.name, *dir_opt)}")
    return 0


def _default_dir(name: str) -> Path:
    here = Path.cwd()
    marker = here / MARKER
    if not (here / name / "solution.py").exists() and marker.exists() and marker.read_text().strip() == name:
        return here
    if (here / name / "solution.py").exists():
        return here / name
    return workspace_root() / name


def cmd_check(args: Any) -> int:
    from exercises.grading import grade, mininet_refusal

    ex = _load(args.name)
    if args.backend == "mininet" and (why := mininet_refusal(ex)):
        return fail(why)
    if args.time_limit is not None and not 0 < args.time_limit <= 3600:
        return fail(f"--time-limit must be in (0, 3600] seconds, got {args.time_limit}")
    directory = Path(args.dir) if args.dir else _default_dir(ex.name)
    attendee = args.attendee if args.attendee is not None else _user()
    backend = args.backend if ex.needs_scenario else "none"
    _note_ignored_backend(ex, args.backend)
    report = grade(ex, directory, backend=backend, attendee=attendee, time_limit_s=args.time_limit)
    print(report.to_json() if args.json else report.to_text())
    if args.junit:
        try:
            Path(args.junit).write_text(report.to_junit(), encoding="utf-8")
        except OSError as exc:
            return fail(f"cannot write {args.junit}: {exc.strerror or exc}")
    return 0 if report.passed else 1


def _note_ignored_backend(ex: Any, backend: str) -> None:
    if backend == "mininet" and not ex.needs_scenario:
        print(f"note: --backend mininet ignored: {ex.name} runs no scenario", file=sys.stderr)


def cmd_collect(args: Any) -> int:
    from exercises import instructor

    ex = _load(args.name)
    try:
        copied = instructor.collect(ex.name, [Path(d) for d in args.dirs], Path(args.dest))
    except (FileNotFoundError, ValueError) as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot copy: {exc.strerror or exc}")
    for path in copied:
        print(f"  {path}")
    print(f"{len(copied)} hand-ins in {args.dest}; grade them with: tcplab exercise grade {ex.name} {args.dest}")
    return 0


def cmd_grade(args: Any) -> int:
    from exercises import instructor
    from exercises.grading import mininet_refusal

    ex = _load(args.name)
    if args.backend == "mininet" and (why := mininet_refusal(ex)):
        return fail(why)
    _note_ignored_backend(ex, args.backend)
    backend = args.backend if ex.needs_scenario else "none"
    jobs = args.jobs if args.jobs is not None else (1 if backend == "mininet" else os.cpu_count() or 1)
    if jobs < 1 or (backend == "mininet" and jobs != 1):
        return fail("--jobs must be at least 1 (and 1 with --backend mininet: one network at a time)")
    try:
        results = instructor.grade_all(ex.name, Path(args.submissions), backend=backend, salt=args.seed_salt, jobs=jobs)
    except FileNotFoundError as exc:
        return fail(str(exc))
    print(json.dumps(results, indent=2) if args.json else instructor.to_text(results))
    if args.junit:
        try:
            Path(args.junit).write_text(instructor.to_junit(results), encoding="utf-8")
        except OSError as exc:
            return fail(f"cannot write {args.junit}: {exc.strerror or exc}")
    return 0 if results and all(r["passed"] for r in results) else 1


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def cmd_report(args: Any) -> int:
    from exercises import report as rep

    try:
        gathered = rep.gather(Path(args.dir))
    except FileNotFoundError as exc:
        return fail(str(exc))
    markdown = rep.to_markdown(gathered)
    outputs: list[tuple[str | None, str]] = [
        (args.markdown, markdown),
        (args.csv, rep.to_csv(gathered)),
        (args.checks_csv, rep.checks_to_csv(gathered)),
    ]
    for path, text in outputs:
        if path:
            try:
                Path(path).write_text(text, encoding="utf-8")
            except OSError as exc:
                return fail(f"cannot write {path}: {exc.strerror or exc}")
    if not args.markdown:
        print(markdown, end="")
    for line in gathered.skipped:
        print(f"skipped {line}", file=sys.stderr)
    return 0


def _run(handler: Callable[[Any], int]) -> Callable[[Any], int]:
    def wrapped(args: Any) -> int:
        try:
            return handler(args)
        except _Usage as exc:
            return fail(str(exc))

    return wrapped


def add_exercise_commands(sub: Any) -> None:
    p = sub.add_parser("exercise", help="workshop exercises: list, show, start, check, collect, grade, report")
    esub = p.add_subparsers(dest="exercise_cmd", required=True, parser_class=Parser)

    s = esub.add_parser("list", help="list the exercises")
    s.add_argument("--json", action="store_true", help="print the list as JSON")
    s.set_defaults(fn=_run(cmd_list))

    s = esub.add_parser("show", help="an exercise's task and checks")
    s.add_argument("name", help="exercise name (see 'exercise list')")
    s.set_defaults(fn=_run(cmd_show))

    s = esub.add_parser("start", help="copy an exercise's starter into a working directory")
    s.add_argument("name", help="exercise name (see 'exercise list')")
    s.add_argument(
        "--dir", metavar="DIR", help="working directory (default: ./workspace/NAME in the repository, else ./NAME)"
    )
    s.add_argument("--force", action="store_true", help="overwrite an existing solution.py")
    s.set_defaults(fn=_run(cmd_start))

    s = esub.add_parser("check", help="grade a working directory; exit status 0 only when every check passed")
    s.add_argument("name", help="exercise name (see 'exercise list')")
    s.add_argument("--dir", metavar="DIR", help="the directory holding solution.py (default: where start put it)")
    s.add_argument("--json", action="store_true", help="print the result as JSON (for 'exercise report')")
    s.add_argument("--junit", metavar="FILE", help="also write JUnit XML")
    s.add_argument(
        "--backend", choices=("sim", "mininet"), default="sim", help="grade in the simulator, or on Mininet (root)"
    )
    s.add_argument("--attendee", metavar="NAME", help="name recorded in the result (default: the login name)")
    s.add_argument("--time-limit", type=float, metavar="S", help="seconds solution.py may run (default per exercise)")
    s.set_defaults(fn=_run(cmd_check))

    s = esub.add_parser("collect", help="copy attendees' working directories into a hand-in folder")
    s.add_argument("name", help="exercise name (see 'exercise list')")
    s.add_argument("dest", metavar="DEST", help="the hand-in folder (DEST/ATTENDEE/ per attendee)")
    s.add_argument("dirs", nargs="+", metavar="DIR", help="working directories (named after the attendee)")
    s.set_defaults(fn=_run(cmd_collect))

    s = esub.add_parser("grade", help="the instructor's grade: re-grade every attendee's hand-in in the sandbox")
    s.add_argument("name", help="exercise name (see 'exercise list')")
    s.add_argument("submissions", metavar="SUBMISSIONS_DIR", help="one subdirectory per attendee")
    s.add_argument("--json", action="store_true", help="print the signed results as JSON (for 'exercise report')")
    s.add_argument("--junit", metavar="FILE", help="also write JUnit XML")
    s.add_argument(
        "--backend", choices=("sim", "mininet"), default="sim", help="grade in the simulator, or on Mininet (root)"
    )
    s.add_argument("--jobs", type=int, metavar="N", help="attendees graded at once (default: one per CPU)")
    s.add_argument("--seed-salt", type=int, metavar="N", help="reuse a grade's seeds (default: fresh ones)")
    s.set_defaults(fn=_run(cmd_grade))

    s = esub.add_parser("report", help="gather signed 'exercise grade --json' results into one table")
    s.add_argument("dir", metavar="DIR", help="directory of signed 'exercise grade --json' results")
    s.add_argument("--markdown", metavar="FILE", help="write the Markdown report here instead of printing it")
    s.add_argument("--csv", metavar="FILE", help="write the attendee table as CSV")
    s.add_argument("--checks-csv", metavar="FILE", help="write per-check pass rates as CSV")
    s.set_defaults(fn=_run(cmd_report))


COMMANDS: dict[str, Callable[[Any], None]] = {"exercise": add_exercise_commands}
