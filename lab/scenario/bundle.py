"""Run bundles you can trust: a summary written first and finalised last, with digests.

A run bundle is a directory: ``summary.json``, ``topology.json``,
``trace.jsonl`` and ``pcaps/<interface>.pcap``. Every run that records one
goes through the same three steps:

* :func:`prepare` before anything runs: refuses a directory that already holds
  a bundle (unless ``force``, which removes that bundle first) and checks that
  the directory can be written;
* :func:`begin` when the run starts: ``summary.json`` says ``complete: false``,
  so a run killed outright (SIGKILL, power loss) leaves a bundle that says it
  is incomplete;
* :func:`finalise` at the end, also when the run was interrupted (SIGINT,
  SIGTERM): ``summary.json`` gets ``complete: true``, ``interrupted``, the
  SHA-256 of every other file of the bundle (``digests``) and the SHA-256 of
  its own content (``summary_sha256``).

:func:`verify` checks a bundle against its summary: every file that changed,
is missing, was added or is incomplete is named. This is integrity against
damage and editing, not authenticity: someone who rewrites a file and its
digests on purpose is not caught here.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import ConfigError, DecodeError

SUMMARY = "summary.json"
BUNDLE_VERSION = 1
BUNDLE_FILES = ("summary.json", "trace.jsonl", "topology.json")  # what marks a directory as a bundle
_CHUNK = 1 << 20


def prepare(out_dir: Path, *, force: bool = False) -> bool:
    """Make ``out_dir`` ready for a new bundle; returns whether it was created here
    (so a run that fails before it starts can remove it again).

    Raises ConfigError when ``out_dir`` already holds a run bundle and ``force``
    is false, or when it is a non-empty directory that is no bundle (never
    removed, even with ``force``); OSError when it cannot be written.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"{out_dir} exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if not is_bundle(out_dir):
            raise ConfigError(f"{out_dir} is not empty and holds no run bundle; choose another --out")
        if not force:
            raise ConfigError(
                f"{out_dir} already holds a run bundle; add --force to replace it, or choose another --out"
            )
        shutil.rmtree(out_dir)
    created = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    probe = out_dir / ".write-test"
    try:
        probe.write_text("")
        probe.unlink()
    except OSError:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return created


def is_bundle(path: Path) -> bool:
    return any((Path(path) / name).exists() for name in BUNDLE_FILES) or (Path(path) / "pcaps").is_dir()


def discard(out_dir: Path, *, created: bool = True) -> None:
    """Undo a bundle whose run never started: remove the directory when it was made
    for the run (``created``), else only the bundle's files in it."""
    out_dir = Path(out_dir)
    if created:
        shutil.rmtree(out_dir, ignore_errors=True)
        return
    for name in (*BUNDLE_FILES, SUMMARY + ".tmp"):
        (out_dir / name).unlink(missing_ok=True)
    shutil.rmtree(out_dir / "pcaps", ignore_errors=True)


def begin(out_dir: Path, summary: dict[str, Any]) -> None:
    """Write ``summary.json`` saying the run is under way (``complete: false``)."""
    _write_summary(Path(out_dir), {**summary, "bundle_version": BUNDLE_VERSION, "complete": False})


def finalise(out_dir: Path, summary: dict[str, Any], *, interrupted: bool = False) -> dict[str, Any]:
    """Write the final ``summary.json``: ``complete: true``, ``interrupted``, the SHA-256 of
    every other file of the bundle and of the summary itself. Returns what was written.
    Call it once every other file is closed. Raises OSError when the bundle cannot be read
    or written."""
    out_dir = Path(out_dir)
    final = {k: v for k, v in summary.items() if k not in ("digests", "summary_sha256")}
    final |= {"bundle_version": BUNDLE_VERSION, "complete": True, "interrupted": interrupted}
    final["digests"] = {name: file_sha256(out_dir / name) for name in bundle_files(out_dir)}
    final["summary_sha256"] = summary_digest(final)
    _write_summary(out_dir, final)
    return final


def bundle_files(out_dir: Path) -> list[str]:
    """Every file of the bundle but ``summary.json``, as sorted POSIX paths relative to it."""
    out_dir = Path(out_dir)
    out = []
    for path in _walk(out_dir):
        rel = path.relative_to(out_dir).as_posix()
        if rel != SUMMARY and not rel.endswith(".tmp"):
            out.append(rel)
    return sorted(out)


def _walk(directory: Path) -> Iterator[Path]:
    for entry in sorted(directory.iterdir()):
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk(entry)
        elif entry.is_file():
            yield entry


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def summary_digest(summary: dict[str, Any]) -> str:
    """SHA-256 of the summary's canonical JSON (sorted keys), without ``summary_sha256``."""
    body = {k: v for k, v in summary.items() if k != "summary_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _write_summary(out_dir: Path, summary: dict[str, Any]) -> None:
    tmp = out_dir / (SUMMARY + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(summary, indent=2))
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(out_dir / SUMMARY)


@dataclass
class Verdict:
    """What :func:`verify` found: ``ok`` for an intact, complete bundle; else ``problems``,
    one line each, naming the file."""

    path: Path
    problems: list[str] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def interrupted(self) -> bool:
        return bool(self.summary and self.summary.get("interrupted"))


def verify(path: Path) -> Verdict:
    """Check a bundle against its ``summary.json``. Never raises for a damaged bundle:
    each problem is a line of the verdict. Raises FileNotFoundError when ``path`` is
    not a directory."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(2, "no run bundle (a directory) here", str(path))
    verdict = Verdict(path)
    problems = verdict.problems
    present = set(bundle_files(path))
    try:
        summary = json.loads((path / SUMMARY).read_text(encoding="utf-8"))
    except FileNotFoundError:
        problems.append(f"{SUMMARY}: missing (the run was killed before it began its bundle, or it was deleted)")
        problems += _damaged_files(path, present)
        return verdict
    except (OSError, ValueError) as exc:
        problems.append(f"{SUMMARY}: unreadable ({type(exc).__name__}: {str(exc)[:80]})")
        problems += _damaged_files(path, present)
        return verdict
    if not isinstance(summary, dict):
        problems.append(f"{SUMMARY}: not a JSON object")
        return verdict
    verdict.summary = summary
    if not summary.get("complete"):
        problems.append(f"{SUMMARY}: incomplete (the run ended before it finalised its bundle: killed or crashed)")
        problems += _damaged_files(path, present)
        return verdict
    digests = summary.get("digests")
    if summary.get("summary_sha256") != summary_digest(summary):
        problems.append(f"{SUMMARY}: changed since the run finalised it (its SHA-256 does not match)")
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        problems.append(f"{SUMMARY}: has no file digests (written by an older tcplab, or edited)")
        return verdict
    for name in sorted(digests):
        if Path(name).is_absolute() or ".." in Path(name).parts:
            problems.append(f"{SUMMARY}: names {name!r}, which is outside the bundle")
        elif name not in present:
            problems.append(f"{name}: missing")
        elif file_sha256(path / name) != digests[name]:
            problems.append(f"{name}: changed (SHA-256 differs from the summary's)")
    for name in sorted(present - set(digests)):
        problems.append(f"{name}: not part of the bundle (added after the run)")
    verdict.files = len(digests) + 1
    return verdict


def _damaged_files(path: Path, present: set[str]) -> list[str]:
    """Files of an unfinalised bundle that are visibly incomplete."""
    from lab.pcap import read_pcap

    out = []
    for name in ("topology.json", "trace.jsonl"):
        if name not in present:
            out.append(f"{name}: missing")
    for name in sorted(present):
        if name.endswith(".pcap"):
            try:
                read_pcap(path / name)
            except DecodeError as exc:
                out.append(f"{name}: incomplete ({exc})")
            except OSError as exc:
                out.append(f"{name}: unreadable ({exc.strerror or exc})")
    trace = path / "trace.jsonl"
    if trace.is_file():
        with open(trace, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            if size:
                fh.seek(size - 1)
                if fh.read(1) != b"\n":
                    out.append("trace.jsonl: incomplete (ends in the middle of a record)")
    return out
