"""The simulator's live run: a scenario stepped in slices, paced to the wall clock (or as fast
as possible), taking controls between slices, for the TUI (see lab.scenario.live.LabRun)."""

from __future__ import annotations

import asyncio
import json
import time
import traceback
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from lab.errors import ConfigError
from lab.scenario import Scenario, ScenarioRun, bundle
from lab.scenario.link_metrics import LinkMetricsSampler
from lab.scenario.live import (
    DEFAULT_TRANSFER_BYTES,
    STEP_S,
    ControlUnavailable,
    LabRun,
    PolicyInfo,
    RunStatus,
    check_speed,
    policy_key,
    policy_label,
    standard_policies,
    user_workload,
)
from lab.scenario.middlebox import Middlebox
from lab.scenario.moments import Moment, MomentDetector
from lab.scenario.outcomes import USER_TRANSFER_PREFIX
from lab.trace import Tracer, TraceRecord, write_records

LINK_METRICS_INTERVAL_S = 0.1
MOMENT_STEP_S = 0.002  # virtual time between two looks for a key moment (how far a pause may overshoot)
MAX_BATCH_WALL_S = 0.03  # wall time one simulation slice may take before the viewer gets its records


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
        self._speed = check_speed(speed)
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
        self._user_transfers: list[tuple[str, Any, list[Any]]] = []  # (name, workload, its results)
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
        return any(not r.complete for _, _, results in self._user_transfers for r in results)

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
        """Start the scenario's own workload again (see :func:`user_workload`): MPTCP,
        ENO/tcpcrypt or IKE with the scenario's settings, so what was switched live shows."""
        if not 0 < size_bytes <= 1 << 30:
            raise ConfigError(f"transfer size must be 1..2**30 bytes, got {size_bytes}")
        port = self._next_port
        self._next_port += 1
        name = f"{USER_TRANSFER_PREFIX}{port - 6000}"
        workload = user_workload(self.scenario, name=name, port=port, size_bytes=size_bytes)
        self._finished = False

        def apply() -> None:
            run = self._run
            was_done = run.done()
            before = len(run.results)
            workload.schedule(run)
            self._user_transfers.append((name, workload, run.results[before:]))
            if was_done:
                run.net.call_at(run.net.now + 0.1, run._sample_metrics)  # metrics stop once a run is done
            if not self._sampling:
                self._sampling = True
                run.net.call_at(run.net.now + LINK_METRICS_INTERVAL_S, self._sample_links)

        self._queue(apply)
        return name

    def stop_transfer(self) -> str | None:
        live = [(n, w) for n, w, results in self._user_transfers if any(not r.complete for r in results)]
        if not live:
            return None
        name, workload = live[-1]
        port = getattr(workload, "port", None)
        if not isinstance(port, int) or not hasattr(workload, "src"):
            raise ControlUnavailable(f"{name} ({type(workload).__name__}) runs to its end; it cannot be stopped")

        def apply() -> None:
            host = self.net.host(workload.src)
            for stream in host.streams():
                if stream.addr.remote_port == port and not stream.closed:
                    stream.abort("stopped from the TUI")

        self._queue(apply)
        return name

    def pause(self, paused: bool = True) -> None:
        self._paused = paused

    def step(self, seconds: float = STEP_S) -> None:
        if not seconds > 0:
            raise ConfigError(f"step must be positive, got {seconds}")
        self._paused = True
        self._step_budget += seconds

    def set_speed(self, speed: float | None) -> None:
        self._speed = check_speed(speed)

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
