"""Runs any face follows: headless runs on a backend, and recorded runs played back.

The LabRun interface the TUI is built from is :mod:`lab.scenario.live` (re-exported
here); a backend's live run comes from ``Backend.live_run`` (the simulator's SimRun
in ``lab.sim.liverun``, Mininet's MininetRun). :func:`run_headless` runs a scenario
to the end on any backend; :class:`ReplayRun` plays a recorded bundle back, with
its integrity verdict, a time slider and the scenario's moments. Nothing here
imports Textual.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from lab.scenario import Scenario, bundle
from lab.scenario.live import (  # noqa: F401 - the interface faces build on
    DEFAULT_TRANSFER_BYTES,
    SPEEDS,
    STEP_S,
    ControlUnavailable,
    LabRun,
    PolicyInfo,
    RunStatus,
    check_speed,
    faster,
    policy_key,
    policy_label,
    standard_policies,
)
from lab.scenario.moments import Moment, detect_moments
from lab.trace import RECORD_NAMES, SCHEMA_VERSION, TraceRecord


def run_headless(
    backend: Any,
    scenario: Scenario,
    *,
    seed: int = 1,
    out_dir: Path | None = None,
    pcaps: bool = True,
    progress: Callable[[Any], None] | None = None,
) -> Any:
    """``scenario`` to the end on ``backend`` (a name or a Backend) with no viewer; the bundle
    goes to ``out_dir``. Returns the backend's outcome (``ok``, ``summary()``). Raises
    ConfigError (bad values, a backend that cannot start here) and OSError."""
    from lab.scenario import run_scenario

    return run_scenario(scenario, seed=seed, out_dir=out_dir, pcaps=pcaps, progress=progress, backend=backend)


class _LoadAbandoned(Exception):
    """The replay was closed while its trace was still loading."""


class ReplayRun(LabRun):
    """A recorded run bundle (or a bare ``trace.jsonl``) played back.

    Never raises on a damaged trace: bad lines become ``run``/``error``
    records naming the line. Raises FileNotFoundError when there is no trace
    at ``path``.
    """

    backend = "replay"
    controls = frozenset({"pause", "step", "speed", "seek"})

    def __init__(self, path: Path, *, speed: float | None = None, defer: bool = False) -> None:
        """``defer``: read only what is small now and leave the trace to :meth:`load` (which
        ``trace_batches`` calls in a thread), so a face can show its loading progress."""
        path = Path(path)
        trace = path / "trace.jsonl" if path.is_dir() else path
        if not trace.is_file():
            raise FileNotFoundError(2, "no trace.jsonl in the run bundle", str(trace))
        self.path = path
        self.bundle = trace.parent
        self._trace = trace
        self._speed = check_speed(speed)
        self.summary: dict[str, Any] = _read_json(self.bundle / "summary.json") or {}
        self.name = str(self.summary.get("scenario") or self.bundle.name)
        self.verdict: bundle.Verdict | None = None
        topology = _read_json(self.bundle / "topology.json")
        self._topology_problem = topology_problem(topology) if topology is not None else None
        if topology is None or self._topology_problem is not None:
            topology = {"name": "?", "nodes": [], "links": [], "interfaces": [], "diagram": ""}
        self._topology = topology
        self.records: list[TraceRecord] = []
        self.duration = 0.0
        self.incomplete: str | None = None
        self._moments: list[Moment] = []
        self.loaded = False
        self.load_seconds: float | None = None  # wall time load() took
        self.load_cpu_seconds: float | None = None  # processor time it took (what a busy machine does not inflate)
        self._load_lock = threading.Lock()
        try:
            self._load_total = trace.stat().st_size
        except OSError:
            self._load_total = 0
        self._load_done = 0
        self._pos = 0  # index of the next record to deliver
        self._now = 0.0
        self._paused = False
        self._step_budget = 0.0
        self._closed = False
        if not defer:
            self.load()

    def load(self) -> None:
        """Read, check and index the bundle (once; later calls return at once). Never raises
        on a damaged bundle: what is wrong becomes ``run``/``error`` records and the banner."""
        with self._load_lock:
            if self.loaded:
                return
            started, cpu = time.perf_counter(), time.thread_time()
            collecting = gc.isenabled()
            gc.disable()  # ~80,000 new dicts set off collection after collection: half the load time
            try:
                self._load()
            except _LoadAbandoned:
                pass  # closed meanwhile (the viewer quit): nobody will play the rest
            finally:
                if collecting:
                    gc.enable()
            self.load_seconds = time.perf_counter() - started
            self.load_cpu_seconds = time.thread_time() - cpu
            self.loaded = True

    def _load(self) -> None:
        notes: list[str] = []
        verdict = None
        if (self.bundle / bundle.SUMMARY).exists():  # a trace without a summary has nothing to check it against
            verdict = bundle.verify(self.bundle)
            notes += [f"bundle not intact: {problem}" for problem in verdict.problems]
            if verdict.ok and verdict.interrupted:
                notes.append("bundle intact, but the run was interrupted before it finished")
        if self._topology_problem is not None:
            notes.append(f"topology.json: {self._topology_problem}; the topology is not shown")
        records = self.records  # played from while it fills
        records += [TraceRecord(0.0, "replay", "run", "error", {"reason": n, "fatal": False}) for n in notes]
        load_records(self._trace, progress=self._progress, into=records)
        self.duration = max((r.t for r in records), default=0.0)
        self.incomplete = incomplete_reason(records, self.summary)
        if self.incomplete is not None and not self.summary and self.incomplete.startswith("no summary.json"):
            # a bare trace (written by hand, or a test's): nothing says it was cut short. A run's
            # bundle always has a summary.json, written when the run starts and finalised at its end
            self.incomplete = None
        self._moments = detect_moments(self.moment_specs(), records)
        self.verdict = verdict

    def _progress(self, done: int, total: int) -> None:
        if self._closed:
            raise _LoadAbandoned
        self._load_done, self._load_total = done, total

    def load_progress(self) -> float:
        """How much of the trace is read, 0..1 (1 once loaded)."""
        if self.loaded:
            return 1.0
        return min(0.99, self._load_done / self._load_total) if self._load_total else 0.0

    def topology(self) -> dict[str, Any]:
        return self._topology

    def known_moments(self) -> list[Moment]:
        return list(self._moments)

    def status(self) -> RunStatus:
        if not self.loaded:
            mib = self._load_total / 2**20
            return RunStatus(
                now=self._now,
                paused=self._paused,
                speed=self._speed,
                finished=False,
                text=f"loading the trace: {self.load_progress():.0%} of {mib:.1f} MiB (playing what is read)",
                extra={"duration": 0.0, "loading": self.load_progress()},
            )
        at_end = self._pos >= len(self.records)
        return RunStatus(
            now=self._now,
            paused=self._paused,
            speed=self._speed,
            # a cut-off or unfinished bundle never plays as "finished": the banner says why it stops
            finished=at_end and self.incomplete is None,
            text=self._banner() + f"replay {self._pos}/{len(self.records)} records",
            extra={
                "duration": self.duration,
                "loading": None,
                "marks": [m.t for m in self._moments],
                "banner": self.banner(),
                "ended": at_end,
            },
        )

    def banner(self) -> str | None:
        """What a face must say above everything about this bundle, or None for a whole, intact one."""
        if not self.loaded:
            return None
        if self.verdict is not None and not self.verdict.ok:
            return f"BUNDLE NOT INTACT: {self.verdict.problems[0]}" + (
                f" (+{len(self.verdict.problems) - 1} more, see Events)" if len(self.verdict.problems) > 1 else ""
            )
        if self.incomplete is not None:
            return f"INCOMPLETE RUN: {self.incomplete}; the replay stops where the record does"
        return None

    def _banner(self) -> str:
        if self.verdict is None:
            return ""
        if not self.verdict.ok:
            return f"BUNDLE NOT INTACT ({len(self.verdict.problems)} problems, see Events) — "
        return "bundle verified, run interrupted — " if self.verdict.interrupted else "bundle verified — "

    async def trace_batches(self, interval: float = 0.05) -> AsyncIterator[list[TraceRecord]]:
        loading = None if self.loaded else asyncio.ensure_future(asyncio.to_thread(self.load))
        wall = time.monotonic()
        while not self._closed:
            now_wall = time.monotonic()
            elapsed, wall = now_wall - wall, now_wall
            if self._paused:
                target = self._now + self._step_budget
                self._step_budget = 0.0
            elif self._speed is None:
                target = float("inf")
            else:
                target = self._now + elapsed * self._speed
            batch = self._take(target, limit=20000 if self._speed is None else None)
            if batch:
                yield batch
            if self._pos >= len(self.records) and not self._paused and self.loaded:
                return
            if loading is not None and loading.done():
                loading.result()  # what load() raised (it never should) ends the playback, seen
                loading = None
            await asyncio.sleep(0 if self._speed is None and batch else interval)

    def _take(self, target: float, *, limit: int | None = None) -> list[TraceRecord]:
        records = self.records
        start = end = self._pos
        stop = len(records) if limit is None else min(len(records), start + limit)
        while end < stop and records[end].t <= target:
            end += 1
        self._pos = end
        if end >= len(records):
            duration = self._duration_so_far()
            self._now = max(self._now, min(target, duration)) if target != float("inf") else duration
        else:
            self._now = max(self._now, min(target, records[end].t))
        return records[start:end]

    def _duration_so_far(self) -> float:
        if self.loaded:
            return self.duration
        records = self.records
        return records[-1].t if records else 0.0  # records come in time order

    def pause(self, paused: bool = True) -> None:
        self._paused = paused

    def step(self, seconds: float = STEP_S) -> None:
        self._paused = True
        self._step_budget += seconds

    def set_speed(self, speed: float | None) -> None:
        self._speed = check_speed(speed)

    def seek(self, t: float) -> list[TraceRecord]:
        t = max(0.0, min(float(t), self._duration_so_far()))
        self._pos = 0
        self._now = 0.0
        return self._take(t)

    def close(self) -> None:
        self._closed = True


def topology_problem(topology: dict[str, Any]) -> str | None:
    """Why ``topology`` (a ``topology.json``) cannot be drawn, or None when it has the right shape."""
    shape = {
        "nodes": ("name", "kind"),
        "links": ("name", "a", "b"),
        "interfaces": ("name", "node", "ipv4"),
    }
    for key, fields in shape.items():
        items = topology.get(key, [])
        if not isinstance(items, list):
            return f"{key} is not a list"
        for item in items:
            if not isinstance(item, dict) or not all(isinstance(item.get(f), str) for f in fields):
                return f"an entry of {key} lacks {', '.join(fields)}"
    for link in topology.get("links", []):
        for key in ("bw_mbps", "delay_ms", "jitter_ms", "loss_pct", "queue_packets"):
            value = link.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                return f"link {link['name']}: {key} is not a number"
    if not isinstance(topology.get("diagram", ""), str):
        return "diagram is not text"
    return None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


try:  # a faster parser for the same JSON; a line it refuses (NaN, huge integers) goes to json
    from orjson import loads as _fast_loads
except ImportError:  # pragma: no cover - orjson is a dependency; the standard library still works
    _fast_loads = json.loads

PROGRESS_LINES = 4096  # how many lines between two progress reports


def _loads(line: bytes) -> Any:
    try:
        return _fast_loads(line)
    except ValueError:
        return json.loads(line)


def load_records(
    path: Path,
    progress: Callable[[int, int], None] | None = None,
    *,
    into: list[TraceRecord] | None = None,
) -> list[TraceRecord]:
    """Every readable record of a trace file; damaged lines become ``run``/``error`` records.

    ``progress(bytes_done, bytes_total)`` is called every few thousand lines (from
    whatever thread loads); records are appended to ``into`` (returned) as they are
    read, so another thread may play the first ones meanwhile. Never raises: an
    unreadable file is one fatal error record."""
    out: list[TraceRecord] = [] if into is None else into
    append = out.append
    last_t = 0.0
    name = Path(path).name
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        append(TraceRecord(0.0, "replay", "run", "error", {"reason": f"cannot read {path}: {exc}", "fatal": True}))
        return out
    lines = raw.split(b"\n")
    total = len(raw)
    done = 0
    truncated = bool(raw) and not raw.endswith(b"\n")
    for lineno, line in enumerate(lines, 1):
        if progress is not None and lineno % PROGRESS_LINES == 0:
            progress(done, total)
        done += len(line) + 1
        try:
            obj = _loads(line)
            # the common case checked field by field, without building a record twice
            if type(obj) is dict and obj.get("v") == SCHEMA_VERSION:
                t = obj.get("t")
                node, layer, rec_name, data = obj.get("node"), obj.get("layer"), obj.get("name"), obj.get("data")
                if (
                    type(t) is float
                    and type(node) is str
                    and type(layer) is str
                    and type(rec_name) is str
                    and type(data) is dict
                    and t >= 0  # also false for NaN
                ):
                    rec = TraceRecord(t, node, layer, rec_name, data)
                else:
                    rec = _checked_record(obj)
            else:
                rec = _checked_record(obj)
        except (ValueError, UnicodeDecodeError) as exc:
            if not line.strip():
                continue
            last_line = lineno == len(lines) and truncated
            reason = (
                f"{name}:{lineno}: the trace ends in the middle of a record (truncated file)"
                if last_line
                else f"{name}:{lineno}: unreadable record ({exc})"
            )
            append(TraceRecord(last_t, "replay", "run", "error", {"reason": reason, "fatal": False}))
            continue
        if rec.t < last_t:
            rec = TraceRecord(last_t, rec.node, rec.layer, rec.name, rec.data)
        last_t = rec.t
        if rec.name not in RECORD_NAMES:
            append(
                TraceRecord(
                    rec.t,
                    "replay",
                    "run",
                    "error",
                    {"reason": f"{name}:{lineno}: unknown record type {rec.layer}/{rec.name}", "fatal": False},
                )
            )
            continue
        append(rec)
    if progress is not None:
        progress(total, total)
    return out


def _checked_record(obj: Any) -> TraceRecord:
    """A record from a decoded line that is not in the usual shape; raises ValueError saying what is wrong."""
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004 - reported with the other bad lines
    if obj.get("v") != SCHEMA_VERSION:
        raise ValueError(f"schema version {obj.get('v')!r}, expected {SCHEMA_VERSION}")
    rec = TraceRecord.from_dict(obj)
    if rec.t != rec.t or rec.t < 0:
        raise ValueError(f"bad time {rec.t!r}")
    return rec


def incomplete_reason(records: list[TraceRecord], summary: dict[str, Any]) -> str | None:
    """Why a bundle does not hold a whole run (a cut-off trace, no summary, a run stopped early), or None."""
    for rec in records:
        if rec.layer == "run" and rec.name == "error" and "truncated" in str(rec.data.get("reason", "")):
            return "the trace ends in the middle of a record: the run was cut off"
    if not summary:
        return "no summary.json: the run did not finish writing its bundle"
    if summary.get("finished") is False:
        return "the run was stopped before its scenario finished"
    if summary.get("timed_out"):
        return "the run hit its time limit"
    return None


def bundle_digest(records: list[TraceRecord]) -> str:
    """SHA-256 over records as JSON Lines (to compare a live run with its replay)."""
    h = hashlib.sha256()
    for r in records:
        h.update(r.to_json().encode())
        h.update(b"\n")
    return h.hexdigest()
