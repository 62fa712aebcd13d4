"""Live and recorded runs as the TUI sees them: a stream of trace-record batches plus controls.

``LabRun`` is the small interface the TUI is built from; nothing here imports
Textual. :class:`SimRun` steps a :class:`~lab.scenario.ScenarioRun` (paced to
the wall clock or as fast as possible) and takes controls between steps;
:class:`ReplayRun` plays a recorded run bundle back. A Mininet run implements
the same interface.

Controls a run does not support raise :class:`ControlUnavailable`; bad control
values (an unknown link, a speed that is not positive) raise ConfigError.
Problems a viewer must see but survive (a corrupt trace line, the simulator
failing) arrive as ``error`` records of layer ``run``:
``{"reason": "...", "fatal": bool}``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import ConfigError, LabError
from lab.scenario import Scenario, ScenarioRun, Transfer, bundle
from lab.scenario.link_metrics import LinkMetricsSampler
from lab.scenario.middlebox import BlockUdpPorts, Middlebox, StripTcpOptions
from lab.scenario.moments import Moment, MomentDetector, MomentSpec, detect_moments
from lab.stack.apps import BulkSender, BulkSink
from lab.trace import RECORD_NAMES, SCHEMA_VERSION, Tracer, TraceRecord, write_records

LINK_METRICS_INTERVAL_S = 0.1
DEFAULT_TRANSFER_BYTES = 1024 * 1024
STEP_S = 0.1  # what one "step" advances in virtual time
SPEEDS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, None)  # None: as fast as possible
MOMENT_STEP_S = 0.002  # virtual time between two looks for a key moment (how far a pause may overshoot)
MAX_BATCH_WALL_S = 0.03  # wall time one simulation slice may take before the viewer gets its records


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


class ControlUnavailable(LabError):
    """The run cannot do this (a replay has no links to take down)."""


@dataclass
class PolicyInfo:
    """A middlebox policy a run can switch on or off at a router."""

    key: str  # "r1/strip_tcp_options:30"
    router: str
    label: str
    description: dict[str, Any]
    enabled: bool


@dataclass
class RunStatus:
    now: float = 0.0
    paused: bool = False
    speed: float | None = 1.0
    finished: bool = False
    text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class LabRun:
    """What the TUI needs from a run: records, the topology, and controls."""

    backend = "?"
    name = "?"
    controls: frozenset[str] = frozenset()  # of: links, middleboxes, transfer, pause, step, speed, seek

    def topology(self) -> dict[str, Any]:
        """The topology spec as ``topology.json`` has it (nodes, links, interfaces, diagram)."""
        raise NotImplementedError

    def trace_batches(self, interval: float = 0.05) -> AsyncIterator[list[TraceRecord]]:
        """Batches of new records, about every ``interval`` seconds of wall time; ends with the run."""
        raise NotImplementedError

    def status(self) -> RunStatus:
        raise NotImplementedError

    def scenario_declared(self) -> Scenario | None:
        """The scenario this run follows, when it is a known one (replays look it up by name)."""
        scenario = getattr(self, "scenario", None)
        if isinstance(scenario, Scenario):
            return scenario
        from lab.scenario import registry

        try:
            return registry.scenarios().get(self.name)
        except Exception:  # a broken registry entry must not stop a replay
            return None

    def moment_specs(self) -> tuple[MomentSpec, ...]:
        """The key moments the scenario declares (lab/moments.py); none for an unknown one."""
        scenario = self.scenario_declared()
        return tuple(scenario.moments) if scenario is not None else ()

    def main_view(self) -> str:
        """The view the scenario's lesson is best seen in."""
        scenario = self.scenario_declared()
        return scenario.main_view if scenario is not None else "topology"

    def known_moments(self) -> list[Moment]:
        """Moments known ahead of playback (a replay knows all of them); live runs know none."""
        return []

    # controls; each raises ControlUnavailable unless named in ``controls``
    def set_link_up(self, link: str, up: bool) -> None:
        raise ControlUnavailable(f"a {self.backend} run cannot change links")

    def middlebox_policies(self) -> list[PolicyInfo]:
        return []

    def set_middlebox_enabled(self, key: str, enabled: bool) -> None:
        raise ControlUnavailable(f"a {self.backend} run cannot switch middleboxes")

    def start_transfer(self, size_bytes: int = DEFAULT_TRANSFER_BYTES) -> str:
        raise ControlUnavailable(f"a {self.backend} run cannot start transfers")

    def stop_transfer(self) -> str | None:
        raise ControlUnavailable(f"a {self.backend} run cannot stop transfers")

    def pause(self, paused: bool = True) -> None:
        raise ControlUnavailable(f"a {self.backend} run cannot pause")

    def step(self, seconds: float = STEP_S) -> None:
        raise ControlUnavailable(f"a {self.backend} run cannot step")

    def set_speed(self, speed: float | None) -> None:
        raise ControlUnavailable(f"a {self.backend} run has no speed control")

    def seek(self, t: float) -> list[TraceRecord]:
        """Restart the view at virtual time ``t``: every record up to ``t`` (replays only)."""
        raise ControlUnavailable(f"a {self.backend} run cannot seek")

    def close(self) -> None:
        pass


def _check_speed(speed: float | None) -> float | None:
    if speed is None:
        return None
    if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not speed > 0 or speed != speed:
        raise ConfigError(f"speed must be a positive number or None (as fast as possible), got {speed!r}")
    return float(speed)


def faster(speed: float | None, direction: int) -> float | None:
    """The next speed up (+1) or down (-1) on the SPEEDS ladder."""
    if speed is None:
        index = len(SPEEDS) - 1
    else:
        index = min(range(len(SPEEDS) - 1), key=lambda i: abs(SPEEDS[i] - speed))  # type: ignore[operator]
    return SPEEDS[max(0, min(len(SPEEDS) - 1, index + direction))]


class _BatchTracer(Tracer):
    """Collects records for the next batch; optionally mirrors them to a JSON Lines file."""

    def __init__(self, path: Path | None, detector: MomentDetector | None = None) -> None:
        self.pending: list[TraceRecord] = []
        self._fh = open(path, "w", encoding="utf-8", buffering=1 << 20) if path is not None else None
        self.detector = detector
        self._scanned = 0  # pending records the detector has seen

    def scan(self) -> list[Moment]:
        """Feed the records recorded since the last scan to the detector; the moments they complete."""
        if self.detector is None or self._scanned >= len(self.pending):
            return []
        new = self.detector.feed(self.pending[self._scanned :])
        self._scanned = len(self.pending)
        return new

    def record_node(self, now: float, node: str, layer: str, name: str, data: dict[str, Any]) -> None:
        self.pending.append(TraceRecord(now, node, layer, name, data))

    def drain(self) -> list[TraceRecord]:
        self.scan()
        self._scanned = 0
        out, self.pending = self.pending, []
        if self._fh is not None and out and not self._fh.closed:
            write_records(self._fh, out)
        return out

    @property
    def closed(self) -> bool:
        return self._fh is not None and self._fh.closed

    def flush(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.flush()

    def close(self) -> None:
        if self._fh is not None and not self._fh.closed:
            self._fh.close()


def standard_policies(router: str) -> list[tuple[str, str, Callable[[], Middlebox]]]:
    """Policies any router offers to switch on: (key suffix, label, factory)."""
    return [
        ("strip_tcp_options:30", "strip the MPTCP option (kind 30)", lambda: StripTcpOptions([30])),
        ("strip_tcp_options:69", "strip the TCP-ENO option (kind 69)", lambda: StripTcpOptions([69])),
        ("block_udp:500,4500", "block UDP 500 and 4500 (IKE)", lambda: BlockUdpPorts([500, 4500])),
    ]


class SimRun(LabRun):
    """A scenario in the simulator, stepped by :meth:`trace_batches`.

    ``speed`` is virtual seconds per wall second, ``None`` for as fast as
    possible. With ``out_dir`` the run is recorded as a bundle
    (``trace.jsonl``, ``topology.json``, ``summary.json``) that
    :class:`ReplayRun` reads. Controls queue up and take effect between two
    simulation slices, so they never race the simulator. With
    ``pause_at_moments`` the run pauses right after each key moment the
    scenario declares (``moments`` lists those found so far). Raises
    ConfigError for a bad scenario or speed, OSError for an unusable
    ``out_dir``.
    """

    backend = "sim"
    controls = frozenset({"links", "middleboxes", "transfer", "pause", "step", "speed"})

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int = 1,
        speed: float | None = 1.0,
        out_dir: Path | None = None,
        pause_at_moments: bool = False,
    ) -> None:
        self.scenario = scenario
        self.name = scenario.name
        self.seed = seed
        self._speed = _check_speed(speed)
        self.out_dir = out_dir
        created = False
        self.pause_at_moments = pause_at_moments
        self._detector = MomentDetector(tuple(scenario.moments))
        if out_dir is not None:
            created = not out_dir.exists()
            out_dir.mkdir(parents=True, exist_ok=True)
        self._tracer = _BatchTracer(out_dir / "trace.jsonl" if out_dir is not None else None, self._detector)
        try:
            self._run = ScenarioRun(scenario, seed=seed, tracer=self._tracer)
        except BaseException:  # a scenario that does not validate leaves no bundle
            self._tracer.close()
            if out_dir is not None:
                bundle.discard(out_dir, created=created)
            raise
        self.net = self._run.net
        self._topology = self._run.spec.to_dict() | {"diagram": self._run.spec.diagram}
        if out_dir is not None:
            bundle.begin(out_dir, {"scenario": scenario.name, "seed": seed, "backend": "sim", "recorded_by": "tui"})
            (out_dir / "topology.json").write_text(json.dumps(self._topology, indent=2))
        self._paused = False
        self._step_budget = 0.0
        self._commands: deque[Callable[[], None]] = deque()
        self._finished = False
        self._error: str | None = None
        self._closed = False
        self._policies: dict[str, tuple[PolicyInfo, Middlebox | None, Callable[[], Middlebox]]] = {}
        for router in self._run.spec.routers():
            for box in self.net.router(router).middleboxes:
                desc = box.describe()
                key = f"{router}/{policy_key(desc)}"
                self._policies[key] = (PolicyInfo(key, router, policy_label(desc), desc, True), box, lambda b=box: b)
            for suffix, label, factory in standard_policies(router):
                key = f"{router}/{suffix}"
                if key not in self._policies:
                    desc = factory().describe()
                    self._policies[key] = (PolicyInfo(key, router, label, desc, False), None, factory)
        self._user_transfers: list[tuple[str, Any, Any]] = []  # (name, stream, result)
        self._next_port = 6001
        self._link_sampler = LinkMetricsSampler(self.net, self._tracer)
        self._sampling = True
        self.net.call_at(LINK_METRICS_INTERVAL_S, self._sample_links)
        self._wall_start = time.perf_counter()
        self._pace: deque[tuple[float, float]] = deque(maxlen=64)  # (wall, virtual) while running

    @property
    def moments(self) -> list[Moment]:
        """The key moments found so far, in order."""
        return list(self._detector.moments)

    def actual_speed(self) -> float | None:
        """Virtual seconds per wall second over the last ~2 s of running (None before there is a figure)."""
        pace = [p for p in self._pace if p[0] >= time.monotonic() - 2.0]
        if len(pace) < 2 or pace[-1][0] - pace[0][0] < 0.3:
            return None
        return (pace[-1][1] - pace[0][1]) / (pace[-1][0] - pace[0][0])

    # --- LabRun

    def topology(self) -> dict[str, Any]:
        return self._topology

    def status(self) -> RunStatus:
        done = sum(1 for r in self._run.results if r.complete)
        return RunStatus(
            now=self.net.now,
            paused=self._paused,
            speed=self._speed,
            finished=self._finished,
            text=f"transfers {done}/{len(self._run.results)}" + (f" — {self._error}" if self._error else ""),
            extra={
                "bytes_received": self._run.bytes_received(),
                "bytes_expected": self._run.bytes_expected(),
                "actual_speed": None if self._paused or self._finished else self.actual_speed(),
            },
        )

    def results(self) -> list[Any]:
        return list(self._run.results)

    async def trace_batches(self, interval: float = 0.05) -> AsyncIterator[list[TraceRecord]]:
        wall = time.monotonic()
        while not self._closed:
            now_wall = time.monotonic()
            elapsed = now_wall - wall
            wall = now_wall
            if self._paused:
                target = self.net.now + self._step_budget if self._step_budget > 0 else None
                self._step_budget = 0.0
            elif self._speed is None:
                target = float("inf")
            else:
                target = self.net.now + max(elapsed, 0.0) * self._speed
            if target is not None or self._commands:
                await asyncio.to_thread(self._advance, target)
            if self._paused or self._finished:
                self._pace.clear()
            else:
                self._pace.append((time.monotonic(), self.net.now))
            records = self._tracer.drain()
            if records:
                yield records
            if self._finished and not self._commands:
                self._write_summary()
                return
            await asyncio.sleep(0 if self._speed is None and not self._paused else interval)

    def _advance(self, target: float | None) -> None:
        """One slice of simulation (in a worker thread; never concurrently with another)."""
        try:
            while self._commands:
                self._commands.popleft()()
            if target is None or self._finished:
                return
            run, net = self._run, self.net
            limit = self.scenario.time_limit_s
            deadline = time.perf_counter() + MAX_BATCH_WALL_S
            end = min(target, limit)
            stop = self._stop_at_moment if self.pause_at_moments else run.done
            while net.now < end and time.perf_counter() < deadline:
                step = MOMENT_STEP_S if self.pause_at_moments else (0.01 if self._speed is None else None)
                net.run(until=min(end, net.now + step) if step else end, stop=stop)
                if run.done() or net.idle():
                    break
                if self.pause_at_moments and (self._paused or self._stop_at_moment()):
                    break
            if (run.done() and not self._user_transfers_running()) or net.now >= limit or net.idle():
                self._finished = True
                self._flush_link_metrics()
        except Exception as exc:  # the simulator or an endpoint failed: tell the viewer, stay up
            self._finished = True
            self._error = f"simulation stopped: {type(exc).__name__}: {exc}"
            frames = traceback.extract_tb(exc.__traceback__)[-3:]
            self._tracer.record_node(
                self.net.now,
                "net",
                "run",
                "error",
                {
                    "reason": self._error,
                    "fatal": True,
                    "where": [f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} {f.name}" for f in frames],
                },
            )

    def _stop_at_moment(self) -> bool:
        """``net.run``'s stop test with pause_at_moments: a new key moment pauses the run."""
        if self._tracer.scan():
            self._paused = True
            self._step_budget = 0.0
            return True
        return self._run.done()

    def _user_transfers_running(self) -> bool:
        return any(not result.complete for _, _, result in self._user_transfers)

    def _sample_links(self) -> None:
        self._flush_link_metrics()
        self._sampling = not self._finished and not self._run.done()
        if self._sampling:
            self.net.call_at(self.net.now + LINK_METRICS_INTERVAL_S, self._sample_links)

    def _flush_link_metrics(self) -> None:
        self._link_sampler.flush()

    def _write_summary(self, *, closing: bool = False) -> None:
        """Finalise (or finalise again, when a new transfer ran on) summary.json with the
        bundle's digests; the trace file is flushed first (closed when ``closing``)."""
        if self.out_dir is None or self._tracer.closed:
            return
        self._tracer.flush()
        if closing:
            self._tracer.close()
        summary = {
            "scenario": self.scenario.name,
            "seed": self.seed,
            "backend": "sim",
            "ok": self._finished and all(r.ok for r in self._run.results) and self._error is None,
            "sim_time_s": round(self.net.now, 6),
            "wall_time_s": round(time.perf_counter() - self._wall_start, 3),
            "transfers": [r.to_dict() for r in self._run.results],
            "error": self._error,
            "finished": self._finished,
            "recorded_by": "tui",
            "files": {"trace": "trace.jsonl", "topology": "topology.json", "pcaps": []},
        }
        bundle.finalise(self.out_dir, summary, interrupted=not self._finished)

    # --- controls

    def _queue(self, fn: Callable[[], None]) -> None:
        self._commands.append(fn)

    def set_link_up(self, link: str, up: bool) -> None:
        self.net.link(link)  # ConfigError for an unknown name, now
        self._queue(lambda: self.net.set_link_up(link, up))

    def middlebox_policies(self) -> list[PolicyInfo]:
        return [info for info, _, _ in self._policies.values()]

    def set_middlebox_enabled(self, key: str, enabled: bool) -> None:
        if key not in self._policies:
            raise ConfigError(f"no middlebox policy {key!r}; known: {', '.join(self._policies)}")
        info, box, factory = self._policies[key]
        if info.enabled == enabled:
            return
        info.enabled = enabled
        if enabled and box is None:
            box = factory()
            self._policies[key] = (info, box, factory)

        def apply() -> None:
            boxes = self.net.router(info.router).middleboxes
            if enabled:
                if box not in boxes:
                    boxes.append(box)
                self._tracer.record_node(
                    self.net.now, info.router, "middlebox", "state_updated", {"installed": box.describe()}
                )
            else:
                if box in boxes:
                    boxes.remove(box)
                self._tracer.record_node(
                    self.net.now, info.router, "middlebox", "state_updated", {"removed": box.describe()}
                )

        self._queue(apply)

    def start_transfer(self, size_bytes: int = DEFAULT_TRANSFER_BYTES) -> str:
        base = next((w for w in self.scenario.transfers if isinstance(w, Transfer)), Transfer())
        if not 0 < size_bytes <= 1 << 30:
            raise ConfigError(f"transfer size must be 1..2**30 bytes, got {size_bytes}")
        port = self._next_port
        self._next_port += 1
        name = f"tui-{port - 6000}"
        self._finished = False

        def apply() -> None:
            run = self._run
            was_done = run.done()
            dst = run.net.host(base.dst)
            src = run.net.host(base.src)
            data = run.payload(size_bytes)
            result = run.add_result(name, data)
            dst.listen(port, lambda: BulkSink(result))
            remote = run.spec.interfaces_of(base.dst)[base.dst_interface].ipv4
            stream = BulkSender(result, data).start(src, remote, port)
            self._user_transfers.append((name, stream, result))
            if was_done:
                run.net.call_at(run.net.now + 0.1, run._sample_metrics)  # metrics stop once a run is done
            if not self._sampling:
                self._sampling = True
                run.net.call_at(run.net.now + LINK_METRICS_INTERVAL_S, self._sample_links)

        self._queue(apply)
        return name

    def stop_transfer(self) -> str | None:
        live = [(n, s) for n, s, result in self._user_transfers if not result.complete and not s.closed]
        if not live:
            return None
        name, stream = live[-1]
        self._queue(lambda: stream.abort("stopped from the TUI"))
        return name

    def pause(self, paused: bool = True) -> None:
        self._paused = paused

    def step(self, seconds: float = STEP_S) -> None:
        if not seconds > 0:
            raise ConfigError(f"step must be positive, got {seconds}")
        self._paused = True
        self._step_budget += seconds

    def set_speed(self, speed: float | None) -> None:
        self._speed = _check_speed(speed)

    def advance(self, seconds: float) -> None:
        """Apply queued controls and simulate ``seconds`` of virtual time now (tests, scripts)."""
        self._advance(self.net.now + seconds)

    def run_to_end(self) -> list[TraceRecord]:
        """Run headless to the end (tests, benchmarks); every record, in order."""
        out: list[TraceRecord] = []
        while not self._finished:
            self._advance(float("inf"))
            out += self._tracer.drain()
        out += self._tracer.drain()
        self._write_summary()
        return out

    def close(self) -> None:
        """Stop; a recorded run still gets its summary (``finished`` false when cut short)."""
        self._closed = True
        self._tracer.drain()  # what the viewer has not fetched yet still goes to the file
        self._write_summary(closing=True)
        self._tracer.close()
        self.net.close()


def policy_key(desc: dict[str, Any]) -> str:
    name = desc.get("policy", "middlebox")
    for key in ("kinds", "ports"):
        if key in desc:
            value = desc[key]
            return f"{name}:{','.join(str(v) for v in value) if isinstance(value, list) else value}"
    return str(name)


def policy_label(desc: dict[str, Any]) -> str:
    fields = ", ".join(f"{k}={v}" for k, v in desc.items() if k != "policy")
    return f"{desc.get('policy')} ({fields})" if fields else str(desc.get("policy"))


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
        self._speed = _check_speed(speed)
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
        self._speed = _check_speed(speed)

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
