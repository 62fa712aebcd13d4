"""Grading machinery: checks on evidence, attendee code in a time-limited subprocess, JSON and JUnit output.

An exercise is a package ``exercises/<name>/`` whose ``grade.py`` defines
``EXERCISE`` (an :class:`Exercise`). Grading a submission directory (the one
``tcplab exercise start`` made, holding the attendee's ``solution.py``) goes:

1. ``Exercise.collect(submission)`` gathers the evidence. It runs the
   attendee's functions through :meth:`Submission.call` (a separate Python
   process with a time limit, never the grader's own) and, for exercises with
   a scenario, replays that scenario in the simulator with the exercise's own
   fixed seed and topology (the copy in the submission directory is for
   reading only). Evidence is typically a :class:`TraceQuery` over the run's
   trace records or an :class:`Answers` of values the attendee's code returned.
2. Every :class:`Check` is evaluated on that evidence. A check that raises
   fails with the error shown; nothing an attendee submits crashes the grader.
3. The :class:`GradeReport` prints what passed and what failed with feedback,
   or JSON (``to_json``) and JUnit XML (``to_junit``). The exit status is 0
   only when every check passed.

Printed output of attendee code is captured and shown when it fails, but no
check ever reads it: checks read trace records and returned values only.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from lab.pcap import ip_packets, live_ip_packets
from lab.scenario.backend import RunContext
from lab.trace import TraceRecord

SOLUTION_FILE = "solution.py"
DEFAULT_TIME_LIMIT_S = 20.0
MEMORY_LIMIT_BYTES = 4 << 30
OUTPUT_LIMIT_BYTES = 64 << 20  # a file the submission writes (its printed output too) stops there
OUTPUT_TAIL_CHARS = 2000
RESULT_LIMIT_BYTES = 16 << 20  # a result file larger than this is not read
PROJECT_ROOT = Path(__file__).resolve().parents[1]
RUNS_CHECK = "solution.py runs"
BACKENDS = ("sim", "mininet", "none")  # "none": the exercise runs no scenario


class SubmissionError(Exception):
    """The attendee's code could not give an answer: syntax error, exception, time limit, bad return value.

    ``kind`` is one of ``missing``, ``syntax``, ``import``, ``missing_package``, ``exception``,
    ``timeout``, ``crash``, ``bad_result``; ``detail`` carries the traceback
    or captured output to show.
    """

    def __init__(self, kind: str, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.detail = detail


# --- checks ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One named, scored property of the evidence.

    ``passed(evidence)`` returns a bool, or ``(bool, detail)`` where
    ``detail`` says what was seen (per-field feedback). ``feedback`` is shown
    when the check fails and points to what to look at next.
    """

    name: str
    passed: Callable[[Any], bool | tuple[bool, str]]
    feedback: str
    points: int = 1


@dataclass
class CheckResult:
    name: str
    passed: bool
    points: int
    max_points: int
    feedback: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "points": self.points,
            "max_points": self.max_points,
            "feedback": self.feedback,
            "detail": self.detail,
        }


@dataclass
class GradeReport:
    exercise: str
    submission: str
    backend: str
    checks: list[CheckResult]
    attendee: str = ""
    error: str | None = None
    wall_time_s: float = 0.0
    sandbox: dict[str, Any] | None = None  # exercises.sandbox.Protections.to_dict() (None: no code ran)
    seeds: str = "published"  # "published" (the scenario's own seeds) or "fresh" (the instructor's grade)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def points(self) -> int:
        return sum(c.points for c in self.checks)

    @property
    def max_points(self) -> int:
        return sum(c.max_points for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {
            "exercise": self.exercise,
            "attendee": self.attendee,
            "submission": self.submission,
            "backend": self.backend,
            "passed": self.passed,
            "points": self.points,
            "max_points": self.max_points,
            "error": self.error,
            "wall_time_s": round(self.wall_time_s, 3),
            "seeds": self.seeds,
            "sandbox": self.sandbox,
            "checks": [c.to_dict() for c in self.checks],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def to_junit(self) -> str:
        """JUnit XML: one testsuite (the exercise), one testcase per check."""
        failures = sum(1 for c in self.checks if not c.passed)
        suite = ET.Element(
            "testsuite",
            name=f"tcplab.exercises.{self.exercise}",
            tests=str(len(self.checks)),
            failures=str(failures),
            errors="0",
            time=f"{self.wall_time_s:.3f}",
        )
        for c in self.checks:
            case = ET.SubElement(suite, "testcase", classname=f"exercises.{self.exercise}", name=c.name)
            if not c.passed:
                fail = ET.SubElement(case, "failure", message=c.feedback or "failed", type="CheckFailed")
                fail.text = "\n".join(part for part in (c.feedback, c.detail) if part)
        root = ET.Element("testsuites")
        root.append(suite)
        ET.indent(root)
        return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"

    def to_text(self) -> str:
        lines = [f"{self.exercise}: {self.points}/{self.max_points} points ({self.backend})"]
        for c in self.checks:
            mark = "PASS" if c.passed else "FAIL"
            lines.append(f"  [{mark}] {c.name} ({c.points}/{c.max_points})")
            if not c.passed:
                if c.feedback:
                    lines.extend(f"         {line}" for line in c.feedback.splitlines())
                if c.detail:
                    lines.extend(f"         | {line}" for line in c.detail.splitlines())
        lines.append("all checks passed" if self.passed else "some checks failed: read the feedback above")
        if self.sandbox and self.sandbox.get("off"):
            lines.append("sandbox protections off here: " + "; ".join(self.sandbox["off"]))
        return "\n".join(lines)


# --- evidence -------------------------------------------------------------------------------


class TraceQuery:
    """Questions over trace records (``lab.trace.read_jsonl`` or ``MemoryTracer.records``).

    ``select`` matches on record keys and on ``data`` fields given as keyword
    arguments (``select(layer="tcp", name="segment_sent", node="h1", flags="A")``);
    a callable value is a predicate on that field.
    """

    def __init__(self, records: Iterable[TraceRecord], *, extra: dict[str, Any] | None = None) -> None:
        self.records = list(records)
        self.extra = dict(extra or {})

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[TraceRecord]:
        return iter(self.records)

    def select(
        self,
        *,
        layer: str | None = None,
        name: str | None = None,
        node: str | None = None,
        after: float | None = None,
        before: float | None = None,
        **data: Any,
    ) -> list[TraceRecord]:
        out = []
        for r in self.records:
            if (layer is not None and r.layer != layer) or (name is not None and r.name != name):
                continue
            if node is not None and r.node != node:
                continue
            if (after is not None and r.t < after) or (before is not None and r.t > before):
                continue
            if data and not all(_field_matches(r.data, k, v) for k, v in data.items()):
                continue
            out.append(r)
        return out

    def first(self, **kw: Any) -> TraceRecord | None:
        found = self.select(**kw)
        return found[0] if found else None

    def last(self, **kw: Any) -> TraceRecord | None:
        found = self.select(**kw)
        return found[-1] if found else None

    def count(self, **kw: Any) -> int:
        return len(self.select(**kw))

    def segments(self, node: str, *, sent: bool = True, **kw: Any) -> list[TraceRecord]:
        """The tcp segments ``node`` sent (or received)."""
        return self.select(layer="tcp", name="segment_sent" if sent else "segment_received", node=node, **kw)

    def bytes_sent(self, node: str, *, layer: str = "tcp", **kw: Any) -> int:
        """Payload bytes of the segments ``node`` sent on ``layer`` (retransmissions included)."""
        return sum(int(r.data.get("len", 0)) for r in self.select(layer=layer, name="segment_sent", node=node, **kw))

    def last_metrics(self, node: str, *, layer: str = "tcp", **kw: Any) -> dict[str, Any]:
        """The last ``metrics_updated`` data of ``node`` ({} if none)."""
        rec = self.last(layer=layer, name="metrics_updated", node=node, **kw)
        return dict(rec.data) if rec else {}

    def transfers(self) -> dict[str, dict[str, Any]]:
        """App-layer transfer outcomes by name: the ``received`` record's data, or the ``sent`` one."""
        out: dict[str, dict[str, Any]] = {}
        for r in self.select(layer="app", name="state_updated"):
            name = r.data.get("transfer")
            if name is None:
                continue
            if r.data.get("event") == "received" or name not in out:
                out[name] = dict(r.data)
        return out

    def state_changes(self, node: str, *, layer: str = "tcp", **kw: Any) -> list[TraceRecord]:
        return self.select(layer=layer, name="state_updated", node=node, **kw)


def _field_matches(data: dict[str, Any], key: str, want: Any) -> bool:
    if key not in data:
        return False
    have = data[key]
    if callable(want):
        try:
            return bool(want(have))
        except Exception:  # noqa: BLE001 - a predicate that cannot judge a field does not match it
            return False
    return have == want


class Answers:
    """Values the attendee's code returned, by name, next to what the grader computed itself.

    ``answer(key)`` raises SubmissionError for a call that failed, so the
    check that needs it fails with the attendee's error while others still run.
    """

    def __init__(
        self,
        answers: dict[str, Any],
        truth: dict[str, Any] | None = None,
        errors: dict[str, SubmissionError] | None = None,
    ) -> None:
        self.answers = answers
        self.truth = dict(truth or {})
        self.errors = dict(errors or {})

    def answer(self, key: str) -> Any:
        if key in self.errors:
            raise self.errors[key]
        return self.answers.get(key)


def compare_field(
    answers: Answers,
    key: str,
    *,
    tolerance: float = 0.0,
    hints: dict[Any, str] | None = None,
) -> tuple[bool, str]:
    """Per-field feedback: ``(ok, detail)`` for answer ``key`` against ``answers.truth[key]``.

    Numbers compare within ``tolerance`` (absolute); ``hints`` maps a common
    wrong answer to a sentence about it.
    """
    got = answers.answer(key)
    want = answers.truth[key]
    if got is None:
        return False, f"{key}: no answer yet"
    ok = _equal(got, want, tolerance)
    if ok:
        return True, f"{key} = {got!r}"
    for wrong, hint in (hints or {}).items():
        if _equal(got, wrong, tolerance):
            return False, f"{key}: you answered {got!r}. {hint}"
    return False, f"{key}: you answered {got!r}, which is not it"


def _equal(got: Any, want: Any, tolerance: float) -> bool:
    if isinstance(want, bool) or isinstance(got, bool):
        return type(got) is type(want) and got == want
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return abs(got - want) <= tolerance
    if isinstance(want, str) and isinstance(got, str):
        return got.strip().lower() == want.strip().lower()
    return got == want


class Replay:
    """A grader's run of a scenario on a backend (``lab.scenario.backend.Backend.replay``) with a
    fixed seed; :meth:`finish` returns the :class:`TraceQuery` the checks read.

    ``run_until(t)`` advances to ``t`` (the simulator stands still there; a real network cannot
    and raises ConfigError), ``at(t, fn)`` calls ``fn(ctx)`` (a :class:`RunContext`) at run time
    ``t`` on either backend. Building it raises ConfigError for a scenario that does not fit.
    """

    backend_name = "sim"

    def __init__(self, scenario: Any, *, seed: int, pcap_dir: Path | None = None) -> None:
        from lab.scenario.backend import get_backend

        self.scenario = scenario
        self.seed = seed
        self._replay = get_backend(self.backend_name).replay(scenario, seed=seed, pcap_dir=pcap_dir)
        self.backend = self.backend_name

    def __getattr__(self, name: str) -> Any:  # the backend's own view (net, injected...)
        return getattr(self.__dict__["_replay"], name)

    def at(self, t: float, fn: Callable[[RunContext], None]) -> None:
        self._replay.at(t, fn)

    def run_until(self, t: float) -> None:
        self._replay.run_until(t)

    def finish(self) -> TraceQuery:
        result = self._replay.finish()
        return TraceQuery(result.records, extra=result.extra)


class SimReplay(Replay):
    """The scenario in the simulator: virtual time, exact timings."""

    backend_name = "sim"


class MininetReplay(Replay):
    """The scenario on Mininet (root only): our endpoints on real packets, wall-clock timings
    (checks on them need slack, see ``timing_slack_s``)."""

    backend_name = "mininet"


def replay_on(backend: str, scenario: Any, *, seed: int, pcap_dir: Path | None = None) -> Replay:
    """A Replay of ``scenario`` on the backend called ``backend``."""
    cls = next((c for c in Replay.__subclasses__() if c.backend_name == backend), None)
    if cls is None:
        cls = type(f"{backend.title()}Replay", (Replay,), {"backend_name": backend})
    return cls(scenario, seed=seed, pcap_dir=pcap_dir)


CAPTURE_WAIT_S = 6.0  # how long past its time a Mininet action waits for the packets it needs
CAPTURE_POLL_S = 0.05


def captured_when(
    replay: Any,
    ctx: RunContext,
    interface: str,
    ready: Callable[[list[bytes]], bool],
    again: Callable[[RunContext], None],
    *,
    since: float,
    bound_s: float = CAPTURE_WAIT_S,
) -> list[bytes] | None:
    """The IP packets captured on ``interface`` (IPv4 only on Mininet: the kernels' own IPv6
    chatter is not the lab's), once ``ready(packets)`` holds. In the simulator they are what
    they are. On Mininet a loaded machine may not have sent (or tcpdump not written) them yet
    at the action's time: then ``again`` is scheduled ``CAPTURE_POLL_S`` later and None
    returned, until ``since + bound_s``, after which the packets are returned as they are."""
    packets = ctx.captured(interface)
    if not ctx.wall_clock:
        return packets
    packets = [p for p in packets if p[0] >> 4 == 4]
    if ready(packets) or ctx.now >= since + bound_s:
        return packets
    replay.at(ctx.now + CAPTURE_POLL_S, again)
    return None


def tcp_segment(packet: bytes) -> tuple[int, bytes, int] | None:
    """(TCP flags, options, payload length) of an IPv4 TCP packet, or None for anything else."""
    if len(packet) < 20 or packet[0] >> 4 != 4 or packet[9] != 6:
        return None
    ihl = (packet[0] & 0x0F) * 4
    tcp = packet[ihl:]
    if len(tcp) < 20:
        return None
    offset = (tcp[12] >> 4) * 4
    return tcp[13], tcp[20:offset], len(tcp) - offset


MININET_SLACK_S = 0.25  # what checks on wall-clock timings allow on Mininet on top of a simulator bound


def timing_slack_s(q: TraceQuery) -> float:
    """Seconds a timing check adds to its bound for this run: 0 in the simulator (virtual time,
    exact), ``MININET_SLACK_S`` on Mininet (real processes: scheduling, Python's crypto, qdiscs)."""
    return MININET_SLACK_S if q.extra.get("backend") == "mininet" else 0.0


def slack_note(q: TraceQuery) -> str:
    """What a timing check's detail says about its slack (empty in the simulator)."""
    slack = timing_slack_s(q)
    return f" (+{slack:g} s slack for real processes on Mininet)" if slack else ""


# --- running attendee code ------------------------------------------------------------------


class Submission:
    """An attendee's directory: ``solution.py`` and whatever ``tcplab exercise start`` copied next to it.

    ``backend`` is where the grader's scenarios run (``sim`` or ``mininet``): graders build their
    runs with :meth:`replay`, which picks :class:`SimReplay` or :class:`MininetReplay`.
    """

    def __init__(self, directory: Path, *, time_limit_s: float = DEFAULT_TIME_LIMIT_S, backend: str = "sim") -> None:
        self.directory = Path(directory)
        self.time_limit_s = time_limit_s
        self.backend = backend
        self.protections: Any = None  # exercises.sandbox.Protections of the last run, once one ran
        self.seed_salt: int | None = None  # set: runs use seeds the attendee never saw (see seed())

    def seed(self, default: int) -> int:
        """The seed a grader's run uses: ``default`` (the one the exercise's scenario.py shows),
        or, when the instructor grades (``seed_salt`` set), another one derived from the salt."""
        if self.seed_salt is None:
            return default
        import hashlib

        digest = hashlib.sha256(f"{self.seed_salt}:{default}".encode()).digest()
        return int.from_bytes(digest[:4], "big") % (1 << 31) + 1

    def _request(self, calls: Sequence[tuple[str, list[Any]]], limit: float) -> dict[str, Any]:
        return {
            "solution": SOLUTION_FILE,
            "calls": encode_value(calls),
            "cpu_limit_s": int(limit) + 2,
            "memory_limit_bytes": MEMORY_LIMIT_BYTES,
            "output_limit_bytes": OUTPUT_LIMIT_BYTES,
        }

    def replay(self, scenario: Any, *, seed: int, pcap_dir: Path | None = None) -> Replay:
        """The grader's run of ``scenario`` with ``seed`` on this submission's backend (nothing runs
        until ``run_until``/``finish``; building a SimReplay raises ConfigError for a bad scenario).
        When the instructor grades, ``seed`` is replaced by one the attendee never saw (``seed``)."""
        return replay_on(self.backend, scenario, seed=self.seed(seed), pcap_dir=pcap_dir)

    @property
    def solution(self) -> Path:
        return self.directory / SOLUTION_FILE

    def call(self, function: str, *args: Any, time_limit_s: float | None = None) -> Any:
        """``solution.function(*args)`` in a separate Python process; its JSON-able result.

        Bytes (and Scapy packets, as their bytes) come back as ``bytes``.
        Raises SubmissionError on any failure, with the error to show.
        """
        results = self.call_many([(function, list(args))], time_limit_s=time_limit_s)
        outcome = results[0]
        if isinstance(outcome, SubmissionError):
            raise outcome
        return outcome

    def call_many(
        self,
        calls: Sequence[tuple[str, list[Any]]],
        *,
        time_limit_s: float | None = None,
        runner: str = "exercises._runner",
    ) -> list[Any | SubmissionError]:
        """Several calls in one process (one import of ``solution.py``); a failing call yields its
        SubmissionError in its slot. Raises SubmissionError when the module cannot run at all
        (missing, syntax error, import-time exception, time limit, crash).

        ``runner`` is the module run as ``python -m RUNNER REQUEST RESULT`` in that process: an
        exercise whose grader code must run next to the attendee's (a scheduler inside a
        simulation) names its own, which loads ``solution.py`` through ``exercises._runner``."""
        if not self.solution.is_file():
            raise SubmissionError("missing", f"no {SOLUTION_FILE} in {self.directory}")
        limit = self.time_limit_s if time_limit_s is None else time_limit_s
        from exercises.sandbox import Sandbox, exit_description

        try:
            box = Sandbox(self.directory)
        except (OSError, ValueError) as exc:
            raise SubmissionError("crash", f"could not copy the submission: {exc}") from None
        with box:
            request = box.io / "request.json"
            result = box.io / "result.json"
            request.write_text(json.dumps(self._request(calls, limit)))
            if box._ids is not None:
                os.chown(request, *box._ids)
            output_path = box.base / "output.txt"  # a file, not a pipe: no stray process can hold it open
            with open(output_path, "wb") as output:
                try:
                    proc = box.start(
                        [sys.executable, "-m", runner, "{io}/request.json", "{io}/result.json"],
                        env=submission_env(),
                        stdout=output,
                    )
                except OSError as exc:
                    raise SubmissionError("crash", f"could not start Python for the submission: {exc}") from None
                try:
                    finished = _wait_unreaped(proc, limit)
                finally:
                    box.stop()  # the command, and whatever it started, setsid or not
                self.protections = box.status()
                setup = [p for p in self.protections.problems if p.startswith("sandbox setup failed")]
                if setup:
                    raise SubmissionError("grader", f"the grader could not set up its sandbox: {setup[0]}")
                if not finished:
                    raise SubmissionError(
                        "timeout",
                        f"solution.py did not finish within {limit:g} s (an endless loop, or waiting for input?)",
                        _tail(output_path),
                    )
            text = _tail(output_path)
            if not result.is_file() or result.is_symlink():
                raise SubmissionError(
                    "crash", f"solution.py ended without a result ({_how(exit_description(proc.returncode))})", text
                )
            try:
                with open(result, "rb") as fh:
                    payload = json.loads(fh.read(RESULT_LIMIT_BYTES + 1)[:RESULT_LIMIT_BYTES])
                if not isinstance(payload, dict):
                    raise ValueError("not a JSON object")  # noqa: TRY004 - caught below with the JSON errors
            except (OSError, ValueError) as exc:
                raise SubmissionError("crash", f"unreadable result from solution.py: {exc}", text) from None
        if payload.get("error"):
            err = payload["error"]
            raise SubmissionError(
                err.get("kind", "import"), err.get("message", "solution.py failed"), err.get("detail", "")
            )
        out: list[Any | SubmissionError] = []
        for item in payload.get("results", []):
            if "error" in item:
                err = item["error"]
                out.append(SubmissionError(err.get("kind", "exception"), err.get("message", ""), err.get("detail", "")))
            else:
                out.append(decode_value(item.get("value")))
        if len(out) != len(calls):
            raise SubmissionError("crash", "solution.py returned fewer results than asked for", text)
        return out


def submission_env() -> dict[str, str]:
    """The environment of a submission's Python: none of the grader's own variables."""
    from exercises.sandbox import site_dirs

    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "{work}",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "PYTHONPATH": os.pathsep.join([str(PROJECT_ROOT), *site_dirs()]),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "PYTHONUNBUFFERED": "1",  # what it printed before a time-out is still shown
    }


def _wait_unreaped(proc: subprocess.Popen[Any], timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for ``proc`` to exit without reaping it; True if it exited."""
    deadline = time.monotonic() + timeout
    pause = 0.002
    while True:
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        if info is not None and info.si_pid:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.02)


def _how(returncode: int) -> str:
    if returncode >= 0:
        return f"exit status {returncode}"
    try:
        name = signal.Signals(-returncode).name
    except ValueError:
        name = f"signal {-returncode}"
    why = {"SIGXCPU": ": CPU time limit", "SIGXFSZ": ": it wrote too much output", "SIGKILL": ""}.get(name, "")
    return f"killed by {name}{why}"


def _tail(path: Path) -> str:
    """The last OUTPUT_TAIL_CHARS characters the submission printed."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4 * OUTPUT_TAIL_CHARS))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", "replace").strip()
    if size > len(data) or len(text) > OUTPUT_TAIL_CHARS:
        return "..." + text[-OUTPUT_TAIL_CHARS:]
    return text


def encode_value(value: Any) -> Any:
    """JSON form of arguments and results: bytes as ``{"$bytes": hex}``, tuples as lists.

    Raises TypeError for a value with no JSON form.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": bytes(value).hex()}
    if isinstance(value, (list, tuple)):
        return [encode_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode_value(v) for k, v in value.items()}
    if hasattr(value, "__bytes__"):  # a Scapy packet
        return {"$bytes": bytes(value).hex()}
    raise TypeError(f"a {type(value).__name__} cannot be returned; use numbers, strings, bytes, lists or dicts")


def decode_value(value: Any) -> Any:
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return bytes.fromhex(value["$bytes"])
        return {k: decode_value(v) for k, v in value.items()}
    return value


# --- the exercise and its grader ------------------------------------------------------------


@dataclass(frozen=True)
class Exercise:
    """What ``exercises/<name>/grade.py`` exports as ``EXERCISE``.

    ``collect(submission)`` returns the evidence the checks read; it may raise
    SubmissionError (then every check fails with that error). ``prepare(dir)``
    writes generated material (a trace with hidden fields, a byte stream) into
    a fresh working directory; ``files`` lists package files copied there
    besides README.md, scenario.py and the starter.
    """

    name: str
    title: str
    topic: str
    minutes: int
    collect: Callable[[Submission], Any]
    checks: tuple[Check, ...]
    rfcs: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    prepare: Callable[[Path], None] | None = None
    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    needs_scenario: bool = False
    no_mininet: str = ""  # why --backend mininet is refused (empty: its runs go to Mininet when asked)

    @property
    def package_dir(self) -> Path:
        return Path(__file__).resolve().parent / self.name


def grade(
    exercise: Exercise,
    directory: Path,
    *,
    backend: str = "sim",
    attendee: str = "",
    time_limit_s: float | None = None,
    seed_salt: int | None = None,
) -> GradeReport:
    """Grade the submission in ``directory``. Never raises for anything the submission does.

    ``backend`` ``mininet`` runs the exercise's scenarios on Mininet (see ``mininet_refusal``
    for when it cannot); ``seed_salt`` makes the runs use seeds the attendee never saw
    (``Submission.seed``); raises ValueError for an unknown backend."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    start = time.perf_counter()
    submission = Submission(
        Path(directory),
        time_limit_s=time_limit_s or exercise.time_limit_s,
        backend="mininet" if backend == "mininet" else "sim",
    )
    submission.seed_salt = seed_salt
    results: list[CheckResult] = []
    error: str | None = None
    evidence: Any = None
    failure: SubmissionError | None = None
    try:
        evidence = exercise.collect(submission)
    except SubmissionError as exc:
        failure = exc
    except ModuleNotFoundError as exc:
        name = (exc.name or str(exc)).split(".")[0]
        failure = SubmissionError(
            "missing_package", f"the grader needs the Python package {name!r}, which is not installed"
        )
    except Exception as exc:  # noqa: BLE001 - a grader bug must still produce a report
        failure = SubmissionError("grader", f"the grader failed: {type(exc).__name__}: {exc}", traceback.format_exc())
    if failure is not None:
        error = failure.message
        results.append(
            CheckResult(
                RUNS_CHECK,
                False,
                0,
                0,
                feedback=_runs_feedback(failure),
                detail="\n".join(p for p in (failure.message, failure.detail) if p),
            )
        )
        for check in exercise.checks:
            results.append(
                CheckResult(
                    check.name,
                    False,
                    0,
                    check.points,
                    feedback=f"not evaluated: {failure.message}"
                    if failure.kind == "missing_package"
                    else "not evaluated: solution.py did not run to the end",
                )
            )
    else:
        results.append(CheckResult(RUNS_CHECK, True, 0, 0))
        for check in exercise.checks:
            results.append(evaluate(check, evidence))
    return GradeReport(
        exercise=exercise.name,
        submission=str(directory),
        backend=backend,
        checks=results,
        attendee=attendee,
        error=error,
        wall_time_s=time.perf_counter() - start,
        sandbox=submission.protections.to_dict() if submission.protections is not None else None,
        seeds="published" if seed_salt is None else "fresh",
    )


def mininet_refusal(exercise: Exercise) -> str | None:
    """Why ``exercise`` cannot be graded with ``--backend mininet`` here (one line), or None."""
    if not exercise.needs_scenario:
        return None
    if exercise.no_mininet:
        return f"{exercise.name} cannot be graded on Mininet: {exercise.no_mininet}; grade it with --backend sim"
    if os.geteuid() != 0:
        return "--backend mininet needs root (Mininet creates network namespaces): run with sudo"
    return None


def _runs_feedback(exc: SubmissionError) -> str:
    return {
        "missing": "Run 'tcplab exercise start NAME' first, or point --dir at the directory holding solution.py.",
        "syntax": "Python could not read solution.py: fix the syntax error shown below.",
        "missing_package": "Install the lab with ./start (it brings what every exercise needs), then check again.",
        "import": "solution.py raised while it was being imported: see the traceback below.",
        "timeout": "solution.py ran out of time. Look for a loop that never ends.",
        "crash": "The Python process running solution.py died: see its output below.",
        "exception": "A function in solution.py raised: see the traceback below.",
        "bad_result": "A function in solution.py returned something the grader cannot use.",
    }.get(exc.kind, "The submission could not be graded: see below.")


def evaluate(check: Check, evidence: Any) -> CheckResult:
    """One check on the evidence; an exception inside it fails the check with the error shown."""
    try:
        outcome = check.passed(evidence)
    except SubmissionError as exc:
        return CheckResult(
            check.name,
            False,
            0,
            check.points,
            feedback=check.feedback,
            detail="\n".join(p for p in (exc.message, exc.detail) if p),
        )
    except Exception as exc:  # noqa: BLE001 - whatever the submission returned, the check fails, the grader goes on
        return CheckResult(
            check.name,
            False,
            0,
            check.points,
            feedback=check.feedback,
            detail=f"could not evaluate this check on what solution.py returned: {type(exc).__name__}: {exc}",
        )
    ok, detail = outcome if isinstance(outcome, tuple) else (outcome, "")
    ok = bool(ok)
    return CheckResult(
        check.name,
        ok,
        check.points if ok else 0,
        check.points,
        feedback="" if ok else check.feedback,
        detail=str(detail),
    )


# --- finding exercises ----------------------------------------------------------------------

EXERCISES_DIR = Path(__file__).resolve().parent


def exercise_names() -> list[str]:
    """Every package under exercises/ with a grade.py, sorted."""
    return sorted(
        p.name for p in EXERCISES_DIR.iterdir() if p.is_dir() and (p / "grade.py").is_file() and p.name.isidentifier()
    )


def load_exercise(name: str) -> Exercise:
    """Raises KeyError naming the known exercises."""
    import importlib

    if name not in exercise_names():
        raise KeyError(f"unknown exercise {name!r}; known: {', '.join(exercise_names())}")
    module = importlib.import_module(f"exercises.{name}.grade")
    return module.EXERCISE


def main_for(exercise: Exercise, argv: list[str] | None = None) -> int:
    """``python -m exercises.<name>.grade [DIR] [--json] [--junit FILE]``: grade one directory."""
    import argparse

    p = argparse.ArgumentParser(prog=f"python -m exercises.{exercise.name}.grade")
    p.add_argument("dir", nargs="?", default=exercise.name)
    p.add_argument("--json", action="store_true")
    p.add_argument("--junit", metavar="FILE")
    p.add_argument("--backend", choices=("sim", "mininet"), default="sim")
    args = p.parse_args(argv)
    if args.backend == "mininet" and (why := mininet_refusal(exercise)):
        print(f"error: {why}", file=sys.stderr)
        return 2
    backend = args.backend if exercise.needs_scenario else "none"
    report = grade(exercise, Path(args.dir), backend=backend)
    print(report.to_json() if args.json else report.to_text())
    if args.junit:
        Path(args.junit).write_text(report.to_junit())
    return 0 if report.passed else 1


__all__ = [
    "Answers",
    "Check",
    "CheckResult",
    "Exercise",
    "GradeReport",
    "MininetReplay",
    "Replay",
    "RunContext",
    "SimReplay",
    "Submission",
    "SubmissionError",
    "TraceQuery",
    "captured_when",
    "compare_field",
    "decode_value",
    "encode_value",
    "evaluate",
    "exercise_names",
    "grade",
    "ip_packets",
    "live_ip_packets",
    "load_exercise",
    "main_for",
    "mininet_refusal",
    "slack_note",
    "timing_slack_s",
]
