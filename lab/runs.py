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
import hashlib
import json
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


class ReplayRun(LabRun):
    """A recorded run bundle (or a bare ``trace.jsonl``) played back.

    Never raises on a damaged trace: bad lines become ``run``/``error``
    records naming the line. Raises FileNotFoundError when there is no trace
    at ``path``.
    """

    backend = "replay"
    controls = frozenset({"pause", "step", "speed", "seek"})

    def __init__(self, path: Path, *, speed: float | None = None) -> None:
        path = Path(path)
        trace = path / "trace.jsonl" if path.is_dir() else path
        if not trace.is_file():
            raise FileNotFoundError(2, "no trace.jsonl in the run bundle", str(trace))
        self.path = path
        self.bundle = trace.parent
        self._speed = check_speed(speed)
        self.summary: dict[str, Any] = _read_json(self.bundle / "summary.json") or {}
        self.name = str(self.summary.get("scenario") or self.bundle.name)
        notes: list[str] = []
        self.verdict: bundle.Verdict | None = None
        if (self.bundle / bundle.SUMMARY).exists():  # a trace without a summary has nothing to check it against
            self.verdict = bundle.verify(self.bundle)
            notes += [f"bundle not intact: {problem}" for problem in self.verdict.problems]
            if self.verdict.ok and self.verdict.interrupted:
                notes.append("bundle intact, but the run was interrupted before it finished")
        topology = _read_json(self.bundle / "topology.json")
        why = topology_problem(topology) if topology is not None else None
        if why is not None:
            notes.append(f"topology.json: {why}; the topology is not shown")
        if topology is None or why is not None:
            topology = {"name": "?", "nodes": [], "links": [], "interfaces": [], "diagram": ""}
        self._topology = topology
        self.records = [TraceRecord(0.0, "replay", "run", "error", {"reason": n, "fatal": False}) for n in notes]
        self.records += load_records(trace)
        self.duration = max((r.t for r in self.records), default=0.0)
        self.incomplete = incomplete_reason(self.records, self.summary)
        self._moments = detect_moments(self.moment_specs(), self.records)
        self._pos = 0  # index of the next record to deliver
        self._now = 0.0
        self._paused = False
        self._step_budget = 0.0
        self._closed = False

    def topology(self) -> dict[str, Any]:
        return self._topology

    def known_moments(self) -> list[Moment]:
        return list(self._moments)

    def status(self) -> RunStatus:
        return RunStatus(
            now=self._now,
            paused=self._paused,
            speed=self._speed,
            finished=self._pos >= len(self.records),
            text=self._banner() + f"replay {self._pos}/{len(self.records)} records",
            extra={"duration": self.duration},
        )

    def _banner(self) -> str:
        if self.verdict is None:
            return ""
        if not self.verdict.ok:
            return f"BUNDLE NOT INTACT ({len(self.verdict.problems)} problems, see Events) — "
        return "bundle verified, run interrupted — " if self.verdict.interrupted else "bundle verified — "

    async def trace_batches(self, interval: float = 0.05) -> AsyncIterator[list[TraceRecord]]:
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
            if self._pos >= len(self.records) and not self._paused:
                return
            await asyncio.sleep(0 if self._speed is None and batch else interval)

    def _take(self, target: float, *, limit: int | None = None) -> list[TraceRecord]:
        records = self.records
        start = end = self._pos
        stop = len(records) if limit is None else min(len(records), start + limit)
        while end < stop and records[end].t <= target:
            end += 1
        self._pos = end
        if end >= len(records):
            self._now = max(self._now, min(target, self.duration)) if target != float("inf") else self.duration
        else:
            self._now = max(self._now, min(target, records[end].t))
        return records[start:end]

    def pause(self, paused: bool = True) -> None:
        self._paused = paused

    def step(self, seconds: float = STEP_S) -> None:
        self._paused = True
        self._step_budget += seconds

    def set_speed(self, speed: float | None) -> None:
        self._speed = check_speed(speed)

    def seek(self, t: float) -> list[TraceRecord]:
        t = max(0.0, min(float(t), self.duration))
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
        for key in ("bw_mbps", "delay_ms", "loss_pct", "queue_packets"):
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


def load_records(path: Path) -> list[TraceRecord]:
    """Every readable record of a trace file; damaged lines become ``run``/``error`` records."""
    out: list[TraceRecord] = []
    last_t = 0.0
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        return [TraceRecord(0.0, "replay", "run", "error", {"reason": f"cannot read {path}: {exc}", "fatal": True})]
    lines = raw.split(b"\n")
    truncated = bool(raw) and not raw.endswith(b"\n")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            if not isinstance(obj, dict):
                raise ValueError("not a JSON object")
            if obj.get("v") != SCHEMA_VERSION:
                raise ValueError(f"schema version {obj.get('v')!r}, expected {SCHEMA_VERSION}")
            rec = TraceRecord.from_dict(obj)
            if rec.t != rec.t or rec.t < 0:
                raise ValueError(f"bad time {rec.t!r}")
        except (ValueError, UnicodeDecodeError) as exc:
            last_line = lineno == len(lines) and truncated
            reason = (
                f"{Path(path).name}:{lineno}: the trace ends in the middle of a record (truncated file)"
                if last_line
                else f"{Path(path).name}:{lineno}: unreadable record ({exc})"
            )
            out.append(TraceRecord(last_t, "replay", "run", "error", {"reason": reason, "fatal": False}))
            continue
        if rec.t < last_t:
            rec = TraceRecord(last_t, rec.node, rec.layer, rec.name, rec.data)
        last_t = rec.t
        if rec.name not in RECORD_NAMES:
            out.append(
                TraceRecord(
                    rec.t,
                    "replay",
                    "run",
                    "error",
                    {
                        "reason": f"{Path(path).name}:{lineno}: unknown record type {rec.layer}/{rec.name}",
                        "fatal": False,
                    },
                )
            )
            continue
        out.append(rec)
    return out


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
