"""The instructor's authoritative grading: every attendee's hand-in re-graded from source.

``tcplab exercise grade NAME SUBMISSIONS_DIR`` grades each subdirectory of
SUBMISSIONS_DIR (one per attendee, named after the attendee, holding the
``solution.py`` of that exercise and whatever else it asks for) in the
sandbox, with seeds derived from a fresh random salt (the attendee never
saw them; the salt is printed so a grade can be reproduced). Results are
signed with the instructor's key (HMAC-SHA256, :func:`signing_key`) so that
``tcplab exercise report`` accepts them and nothing else: a hand-edited or
attendee-made result JSON is refused.

Hand-in layout (``collect`` makes it from attendees' working directories)::

    SUBMISSIONS_DIR/
        alice/solution.py       (+ the files the exercise's README asks for)
        bob/solution.py
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

KEY_ENV = "TCPLAB_GRADING_KEY"  # a file holding the key, instead of the default place
SIGNATURE = "signature"
HANDIN_SKIP = {".git", "__pycache__", ".venv", ".mypy_cache", ".pytest_cache"}
HANDIN_LIMIT_BYTES = 16 << 20


def key_path() -> Path:
    if os.environ.get(KEY_ENV):
        return Path(os.environ[KEY_ENV])
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "tcplab" / "grading.key"


def signing_key(*, create: bool = False) -> bytes | None:
    """The instructor's key (made, readable by its owner only, when ``create`` and missing)."""
    path = key_path()
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        if not create:
            return None
    except ValueError:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key.hex() + "\n")
    return key


def _canonical(result: dict[str, Any]) -> bytes:
    body = {k: v for k, v in result.items() if k != SIGNATURE}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(result: dict[str, Any], key: bytes) -> dict[str, Any]:
    return {**result, SIGNATURE: hmac.new(key, _canonical(result), hashlib.sha256).hexdigest()}


def verify(result: dict[str, Any], key: bytes | None) -> bool:
    sig = result.get(SIGNATURE)
    if key is None or not isinstance(sig, str):
        return False
    return hmac.compare_digest(sig, hmac.new(key, _canonical(result), hashlib.sha256).hexdigest())


def attendee_dirs(submissions: Path) -> list[Path]:
    """The attendees' directories in ``submissions`` (not hidden ones), sorted by name.
    Raises FileNotFoundError when ``submissions`` is not a directory."""
    root = Path(submissions)
    if not root.is_dir():
        raise FileNotFoundError(f"{root} is not a directory")
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _tokens(source: str) -> list[str]:
    """The code's tokens without comments, docstrings' layout or blank lines (what a copy keeps)."""
    import io
    import tokenize

    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING}
    try:
        return [t.string for t in tokenize.generate_tokens(io.StringIO(source).readline) if t.type not in skip]
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return source.split()


def similarity(original: Path, submission: Path) -> float | None:
    """How much of the submission's solution.py is ``original``'s code (0..1, token sequence
    match), or None when either is missing (an installed package has no reference solution)."""
    import difflib

    mine = submission / "solution.py"
    if not original.is_file() or not mine.is_file() or mine.stat().st_size > 1 << 20:
        return None
    a = _tokens(original.read_text(encoding="utf-8", errors="replace"))
    b = _tokens(mine.read_text(encoding="utf-8", errors="replace"))
    return round(difflib.SequenceMatcher(None, a, b, autojunk=False).ratio(), 3)


SIMILAR = 0.98  # a hand-in this close to the reference solution (and closer than to the starter) is flagged


def copied_reference(result: dict[str, Any]) -> bool:
    """Whether the hand-in looks like a copy of the reference solution (a hint for a look, not a verdict)."""
    ref, starter = result.get("reference_similarity"), result.get("starter_similarity")
    return ref is not None and ref >= SIMILAR and (starter is None or ref > starter)


def _grade_one(args: tuple[str, str, str, int, str]) -> dict[str, Any]:
    from exercises.grading import grade, load_exercise

    name, directory, attendee, salt, backend = args
    ex = load_exercise(name)
    report = grade(ex, Path(directory), backend=backend, attendee=attendee, seed_salt=salt)
    result = report.to_dict()
    result["seed_salt"] = salt
    result["reference_similarity"] = similarity(ex.package_dir / "solution" / "solution.py", Path(directory))
    result["starter_similarity"] = similarity(ex.package_dir / "starter.py", Path(directory))
    return result


def grade_all(
    name: str, submissions: Path, *, backend: str, salt: int | None = None, jobs: int = 1
) -> list[dict[str, Any]]:
    """Every attendee's result (``GradeReport.to_dict()`` plus ``seed_salt``), signed, in name order.
    Raises FileNotFoundError for a missing SUBMISSIONS_DIR."""
    salt = secrets.randbelow(1 << 62) if salt is None else salt
    dirs = attendee_dirs(submissions)
    work = [(name, str(d), d.name, salt, backend) for d in dirs]
    if jobs > 1 and len(work) > 1:
        with ProcessPoolExecutor(min(jobs, len(work))) as pool:
            results = list(pool.map(_grade_one, work))
    else:
        results = [_grade_one(w) for w in work]
    key = signing_key(create=True)
    assert key is not None
    return [sign(r, key) for r in results]


def to_text(results: list[dict[str, Any]]) -> str:
    if not results:
        return "no attendee directories found"
    width = max(len(r["attendee"]) for r in results)
    lines = []
    for r in results:
        mark = "passed" if r["passed"] else ("error: " + r["error"] if r.get("error") else "")
        if copied_reference(r):
            mark += f" (solution.py is {r['reference_similarity']:.0%} the reference solution's code: have a look)"
        lines.append(f"{r['attendee']:<{width}}  {r['points']:>3}/{r['max_points']:<3} {mark}".rstrip())
    passed = sum(1 for r in results if r["passed"])
    lines.append(
        f"{passed} of {len(results)} attendees passed {results[0]['exercise']} (seed salt {results[0]['seed_salt']})"
    )
    off = sorted({o for r in results for o in ((r.get("sandbox") or {}).get("off") or [])})
    if off:
        lines.append("sandbox protections off here: " + "; ".join(off))
    return "\n".join(lines)


def to_junit(results: list[dict[str, Any]]) -> str:
    """JUnit XML: one testsuite per attendee, one testcase per check."""
    root = ET.Element("testsuites")
    for r in results:
        checks = r["checks"]
        suite = ET.SubElement(
            root,
            "testsuite",
            name=f"{r['exercise']}.{r['attendee']}",
            tests=str(len(checks)),
            failures=str(sum(1 for c in checks if not c["passed"])),
            errors="0",
            time=f"{r.get('wall_time_s', 0):.3f}",
        )
        for c in checks:
            case = ET.SubElement(suite, "testcase", classname=f"{r['exercise']}.{r['attendee']}", name=c["name"])
            if not c["passed"]:
                fail = ET.SubElement(case, "failure", message=c["feedback"] or "failed", type="CheckFailed")
                fail.text = "\n".join(p for p in (c["feedback"], c["detail"]) if p)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def collect(name: str, sources: list[Path], dest: Path) -> list[Path]:
    """Copy each attendee's working directory of exercise ``name`` into ``dest/ATTENDEE/``
    (ATTENDEE: the source directory's name, or its parent's when it is named after the
    exercise). Raises FileNotFoundError for a source without solution.py, ValueError for
    two sources with the same attendee name or a directory over HANDIN_LIMIT_BYTES."""
    out = []
    seen: set[str] = set()
    for src in sources:
        src = Path(src)
        if not (src / "solution.py").is_file():
            raise FileNotFoundError(f"{src} has no solution.py")
        attendee = src.resolve().parent.name if src.resolve().name == name else src.resolve().name
        if attendee in seen:
            raise ValueError(f"two hand-ins for {attendee!r}; rename one directory")
        seen.add(attendee)
        size = sum(p.stat().st_size for p in src.rglob("*") if p.is_file() and not p.is_symlink())
        if size > HANDIN_LIMIT_BYTES:
            raise ValueError(f"{src} holds more than {HANDIN_LIMIT_BYTES >> 20} MiB")
        target = Path(dest) / attendee
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(src, target, symlinks=True, ignore=shutil.ignore_patterns(*HANDIN_SKIP))
        out.append(target)
    return out
