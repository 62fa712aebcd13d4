"""The simulator's replay for graders: a scenario with a fixed seed, records in memory,
actions at virtual times while the network stands still (see lab.scenario.backend.Replay)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.errors import ConfigError
from lab.pcap import read_pcap
from lab.scenario.backend import ReplayResult, RunContext
from lab.scenario.base import ScenarioRun
from lab.scenario.inject import packet_bytes, summary
from lab.sim.inject import inject
from lab.trace import MemoryTracer


class SimReplay:
    """A scenario replayed in the simulator with the grader's fixed seed, records kept in memory.

    ``run_until(t)`` advances virtual time (to pause and ask the attendee's
    code something mid-run; ``at(t, fn)`` does the same on either backend), ``finish()`` runs to the end of the transfers or
    the scenario's time limit and returns the ReplayResult. Raises
    ConfigError for a scenario that does not fit its topology.
    """

    backend = "sim"

    def __init__(self, scenario: Any, *, seed: int, pcap_dir: Path | None = None) -> None:
        self.scenario = scenario
        self.seed = seed
        self.tracer = MemoryTracer()
        self.run = ScenarioRun(scenario, seed=seed, tracer=self.tracer, pcap_dir=pcap_dir, backend="sim")
        self.net = self.run.net
        self.injected: list[dict[str, Any]] = []
        self._actions: list[tuple[float, int, Callable[[RunContext], None]]] = []

    def run_until(self, t: float) -> None:
        self.net.run(until=t)

    def at(self, t: float, fn: Callable[[RunContext], None]) -> None:
        """Call ``fn(ctx)`` at virtual time ``t`` (the run stands still while it runs; it may
        call ``at`` again). ``finish`` runs the actions; what ``fn`` raises comes out of it."""
        self._actions.append((t, len(self._actions), fn))

    def _run_actions(self) -> None:
        ctx = SimContext(self)
        while self._actions:
            self._actions.sort(key=lambda item: item[:2])
            t, _seq, fn = self._actions.pop(0)
            self.run_until(t)
            fn(ctx)

    def finish(self) -> ReplayResult:
        self._run_actions()
        net, run = self.net, self.run
        limit = self.scenario.time_limit_s
        timed_out = False
        while not run.done():
            if net.now >= limit:
                timed_out = True
                break
            net.run(until=min(net.now + 0.25, limit), stop=run.done)
            if net.idle() and not run.done():
                timed_out = True
                break
        net.close()
        return ReplayResult(
            self.tracer.records,
            {
                "results": {r.name: r.to_dict() for r in run.results},
                "timed_out": timed_out,
                "end_s": net.now,
                "seed": self.seed,
                "backend": "sim",
                "injected": list(self.injected),
            },
        )


class SimContext(RunContext):
    backend = "sim"

    def __init__(self, replay: SimReplay) -> None:
        self.replay = replay

    @property
    def now(self) -> float:
        return self.replay.net.now

    def captured(self, interface: str) -> list[bytes]:
        iface = self.replay.net.interfaces.get(interface)
        if iface is None or iface.pcap is None:
            raise ConfigError(f"no capture of interface {interface!r} (give the replay a pcap_dir)")
        iface.pcap.flush()
        return [packet for _t, packet in read_pcap(iface.pcap.path)]

    def inject(self, node: str, packet: Any, *, at: float | None = None, interface: str | None = None) -> float:
        when = self.now if at is None or at < self.now else at
        raw = packet_bytes(packet)
        iface = inject(self.replay.net, node, raw, at=at, interface=interface)
        self.replay.injected.append({"node": node, "at": when, "iface": iface, **summary(raw)})
        return when
