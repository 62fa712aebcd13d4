"""The simulator as a :class:`~lab.scenario.backend.Backend` (registered as ``sim``).

Headless runs step a :class:`~lab.scenario.ScenarioRun` in virtual time as
fast as the machine allows; live runs are paced to the wall clock
(:class:`lab.runs.SimRun`); graders replay a scenario and act at virtual times.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.scenario.backend import Backend
from lab.scenario.base import RunResult, Scenario, ScenarioRun
from lab.scenario.link_metrics import LINK_METRICS_INTERVAL_S, LinkMetricsSampler
from lab.sim.network import SimNetwork
from lab.trace import FileTracer, MemoryTracer, Tracer


class SimBackend(Backend):
    name = "sim"
    title = "the simulator"
    description = "the embedded discrete-event simulator (virtual time, no root)"

    def build_network(self, spec: Any, *, seed: int, tracer: Tracer, tcp_config: Any) -> SimNetwork:
        return SimNetwork.build(spec, seed=seed, tracer=tracer, tcp_config=tcp_config)

    def run(
        self,
        scenario: Scenario,
        *,
        seed: int = 1,
        out_dir: Path | None = None,
        pcaps: bool = True,
        progress: Callable[[Any], None] | None = None,
        step_s: float = 0.25,
    ) -> RunResult:
        """Run headless in virtual time; writes a bundle when ``out_dir`` is given
        (see :mod:`lab.scenario.bundle`: begun before the first step, finalised with digests at
        the end, also when interrupted by KeyboardInterrupt, which is raised again).

        Raises ConfigError for bad scenario values (nothing is left in ``out_dir``
        then, and a directory made here is removed) and OSError when ``out_dir`` is
        unusable.
        """
        from lab.scenario import bundle

        tracer: Tracer
        created = False
        if out_dir is not None:
            created = not out_dir.exists()
            out_dir.mkdir(parents=True, exist_ok=True)
            tracer = FileTracer(out_dir / "trace.jsonl")
        else:
            tracer = MemoryTracer()
        try:
            run = ScenarioRun(
                scenario,
                seed=seed,
                tracer=tracer,
                pcap_dir=(out_dir / "pcaps") if (out_dir and pcaps) else None,
                backend=self,
            )
        except BaseException:
            if out_dir is not None:
                tracer.close()  # type: ignore[union-attr]
                bundle.discard(out_dir, created=created)
            raise
        net = run.net
        interrupted = False
        sampler = LinkMetricsSampler(net, tracer) if tracer.enabled else None
        if sampler is not None:  # link counters too, so that the bundle replays with link rates

            def sample_links() -> None:
                sampler.flush()
                if not run.done():
                    net.call_at(net.now + LINK_METRICS_INTERVAL_S, sample_links)

            net.call_at(LINK_METRICS_INTERVAL_S, sample_links)
        try:
            if out_dir is not None:
                bundle.begin(out_dir, {"scenario": scenario.name, "seed": seed, "backend": "sim"})
                (out_dir / "topology.json").write_text(
                    json.dumps(run.spec.to_dict() | {"diagram": run.spec.diagram}, indent=2)
                )
            wall0 = time.perf_counter()
            timed_out = False
            try:
                while not run.done():
                    if net.now >= scenario.time_limit_s:
                        timed_out = True
                        break
                    net.run(until=min(net.now + step_s, scenario.time_limit_s), stop=run.done)
                    if progress is not None:
                        progress(run)
                    if net.idle() and not run.done():
                        timed_out = True  # nothing left that could finish the transfers
                        break
            except KeyboardInterrupt:
                interrupted = True
            if sampler is not None:
                sampler.flush()  # the totals at the end
            finished = max((r.completed_at or 0.0) for r in run.results) if run.results else net.now
            if interrupted or timed_out:
                finished = net.now
            wall = time.perf_counter() - wall0
            for r in run.results:
                if not r.complete:
                    why = "interrupted" if interrupted else "did not complete before the time limit"
                    r.error = r.error or why
            result = RunResult(scenario.name, seed, finished, wall, run.results, out_dir, net, timed_out or interrupted)
            if out_dir is not None:
                summary = result.summary()
                summary["files"] = {
                    "trace": "trace.jsonl",
                    "topology": "topology.json",
                    "pcaps": sorted(f"pcaps/{p.name}" for p in (out_dir / "pcaps").glob("*.pcap")) if pcaps else [],
                }
                tracer.close()  # type: ignore[union-attr]
                net.close()
                bundle.finalise(out_dir, summary, interrupted=interrupted)
        finally:
            if out_dir is not None:
                tracer.close()  # type: ignore[union-attr]
            net.close()
        if interrupted:
            raise KeyboardInterrupt
        return result

    def live_run(
        self,
        scenario: Scenario,
        *,
        seed: int = 1,
        speed: float | None = 1.0,
        out_dir: Path | None = None,
        pause_at_moments: bool = True,
    ) -> Any:
        from lab.sim.liverun import SimRun

        return SimRun(scenario, seed=seed, speed=speed, out_dir=out_dir, pause_at_moments=pause_at_moments)

    def replay(self, scenario: Scenario, *, seed: int, pcap_dir: Path | None = None) -> Any:
        from lab.sim.replay import SimReplay

        return SimReplay(scenario, seed=seed, pcap_dir=pcap_dir)


BACKENDS = {"sim": SimBackend()}
