"""Scenarios (a topology, its middleboxes, link events and workload) and the headless runner.

A run writes a bundle: ``topology.json``, ``trace.jsonl``, ``pcaps/<iface>.pcap``
and ``summary.json`` (per-transfer bytes, SHA-256 match and goodput).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab.errors import ConfigError
from lab.scenario import registry
from lab.scenario.backend import Backend, get_backend
from lab.scenario.middlebox import Middlebox
from lab.scenario.moments import MomentSpec
from lab.scenario.outcomes import NOTHING_SPECIAL, Expects
from lab.stack.apps import BulkSender, BulkSink, TransferResult, bulk_payload
from lab.tcp import TcpConfig
from lab.topology import TopologySpec, build_topology
from lab.trace import MemoryTracer, Tracer

METRICS_INTERVAL_S = 0.1


STACKS = ("user", "kernel", "kernel-mptcp")


def stack_host(run: Any, name: str, stack: str, *, what: str = "workload") -> Any:
    """The application API of host ``name`` on ``stack`` (see :data:`STACKS`): our
    HostStack (``run.net.host``), or the kernel's TCP/MPTCP through
    ``run.net.kernel_host``, which only live backends have. Raises ConfigError."""
    if stack == "user":
        return run.net.host(name)
    kernel_host = getattr(run.net, "kernel_host", None)
    if kernel_host is None:
        raise ConfigError(f"{what}: a {stack} stack on {name} needs a live backend (--backend mininet)")
    return kernel_host(name, mptcp=stack == "kernel-mptcp")


def runs_here(run: Any, host: str) -> bool:
    """Whether ``host``'s part of a workload runs in this process: always in the
    simulator; on a live backend only in that host's endpoint process
    (``run.net.is_local``), where the other hosts are inert stand-ins."""
    is_local = getattr(run.net, "is_local", None)
    return True if is_local is None else bool(is_local(host))


KERNEL_STACKS = ("kernel", "kernel-mptcp")
WIRE_OBSERVER = "lab.scenario.mptcp_observer"  # follows a kernel MPTCP peer from its wire


@dataclass(frozen=True)
class WireObserver:
    """A process a live backend runs in ``host``'s network namespace to follow a kernel stack
    from its wire (``python -m MODULE --node HOST --interface I --address A ... --port P``),
    printing trace records as JSON lines."""

    module: str
    host: str
    ports: frozenset[int]


class Workload:
    """What a scenario runs on its hosts: a plain TCP transfer, an MPTCP transfer, an IKE session...

    ``schedule`` sets the workload up on a freshly built :class:`ScenarioRun`
    (listeners, timers through ``run.net.call_at``) and appends one
    :class:`TransferResult` per byte stream it checks to ``run.results``; the
    run ends when every result is complete. Raises ConfigError for values that
    do not fit the topology.
    """

    name: str

    def schedule(self, run: ScenarioRun) -> None:
        raise NotImplementedError

    def wire_observers(self) -> list[WireObserver]:
        """What a live backend should run beside this workload's kernel ends (see
        :class:`WireObserver`): the MPTCP observer on each host whose end is a kernel stack."""
        port = getattr(self, "port", None)
        out = []
        for host_attr, stack_attr in (("src", "src_stack"), ("dst", "dst_stack")):
            if getattr(self, stack_attr, None) in KERNEL_STACKS and isinstance(port, int):
                out.append(WireObserver(WIRE_OBSERVER, str(getattr(self, host_attr)), frozenset({port})))
        return out

    def check_merged(self, result: TransferResult) -> str | None:
        """On a live backend, where each end reports its half of ``result`` from its
        own process: why the merged result does not meet this workload's expectation
        (a comparison across the ends), or None. Only the workload's own results are
        passed (those named after it)."""
        return None


@dataclass(frozen=True, kw_only=True)
class Transfer(Workload):
    """A plain TCP bulk transfer of ``size_bytes`` from ``src`` to ``dst`` (its interface ``dst_interface``).

    ``src_stack``/``dst_stack`` pick who runs each end: ``"user"`` (our
    HostStack, the default), or on a live backend the host's kernel,
    ``"kernel"`` (TCP) or ``"kernel-mptcp"`` (Linux MPTCP), through
    ``run.net.kernel_host`` (see :func:`stack_host`).
    """

    name: str = "bulk"
    src: str = "h1"
    dst: str = "h2"
    dst_interface: int = 0
    port: int = 5001
    size_bytes: int = 4 * 1024 * 1024
    start_s: float = 0.0
    src_stack: str = "user"
    dst_stack: str = "user"

    def __post_init__(self) -> None:
        if not isinstance(self.size_bytes, int) or not 0 <= self.size_bytes <= 1 << 31:
            raise ConfigError(f"transfer {self.name}: size_bytes must be 0..2**31, got {self.size_bytes!r}")
        if not 0 < self.port < 65536:
            raise ConfigError(f"transfer {self.name}: port must be 1..65535, got {self.port}")
        if self.start_s < 0:
            raise ConfigError(f"transfer {self.name}: start_s must not be negative")
        for stack in (self.src_stack, self.dst_stack):
            if stack not in STACKS:
                raise ConfigError(f"transfer {self.name}: stack must be one of {', '.join(STACKS)}, got {stack!r}")

    def schedule(self, run: ScenarioRun) -> None:
        dst_ifaces = run.spec.interfaces_of(self.dst)
        if self.dst not in run.spec.hosts() or not dst_ifaces:
            raise ConfigError(f"transfer {self.name}: no host {self.dst!r}")
        if self.dst_interface >= len(dst_ifaces):
            raise ConfigError(f"transfer {self.name}: {self.dst} has {len(dst_ifaces)} interfaces")
        src = stack_host(run, self.src, self.src_stack, what=f"transfer {self.name}")
        dst = stack_host(run, self.dst, self.dst_stack, what=f"transfer {self.name}")
        data = run.payload(self.size_bytes)
        result = run.add_result(self.name, data)
        dst.listen(self.port, lambda: BulkSink(result))
        remote = dst_ifaces[self.dst_interface].ipv4
        run.net.call_at(self.start_s, lambda: BulkSender(result, data).start(src, remote, self.port))


@dataclass(frozen=True, kw_only=True)
class LinkEvent:
    at_s: float
    link: str
    up: bool


@dataclass(frozen=True, kw_only=True)
class Scenario:
    name: str
    description: str
    topology: str
    topology_params: dict[str, Any] = field(default_factory=dict)
    transfers: tuple[Workload, ...] = (Transfer(),)
    middleboxes: tuple[tuple[str, Callable[[], Middlebox]], ...] = ()
    link_events: tuple[LinkEvent, ...] = ()
    tcp: dict[str, Any] = field(default_factory=dict)
    time_limit_s: float = 600.0
    # what the lesson hinges on (lab/moments.py) and the TUI view that opens first
    moments: tuple[MomentSpec, ...] = ()
    main_view: str = "topology"
    # the outcomes the lesson intends (lab/scenario/outcomes.py): refusals, aborts, errors provoked on purpose
    expects: Expects = NOTHING_SPECIAL

    def with_params(self, **topology_params: Any) -> Scenario:
        return replace(self, topology_params={**self.topology_params, **topology_params})


@dataclass
class RunResult:
    scenario: str
    seed: int
    sim_time_s: float
    wall_time_s: float
    transfers: list[TransferResult]
    out_dir: Path | None
    network: Any  # the in-process network the run stepped
    timed_out: bool

    @property
    def ok(self) -> bool:
        return not self.timed_out and all(t.ok for t in self.transfers)

    def summary(self) -> dict[str, Any]:
        net = self.network
        links = []
        for name, link in net.links.items():
            for d in link.directions:
                links.append(
                    {
                        "link": name,
                        "from": d.src_iface.name,
                        "to": d.dst_iface.name,
                        "packets": d.sent_packets,
                        "bytes": d.sent_bytes,
                        "dropped": d.dropped,
                    }
                )
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "backend": "sim",
            "ok": self.ok,
            "timed_out": self.timed_out,
            "sim_time_s": round(self.sim_time_s, 6),
            "wall_time_s": round(self.wall_time_s, 3),
            "speedup": round(self.sim_time_s / self.wall_time_s, 2) if self.wall_time_s > 0 else None,
            "transfers": [t.to_dict() for t in self.transfers],
            "links": links,
        }


def get_scenario(name: str) -> Scenario:
    """Raises ConfigError naming the known scenarios."""
    known = registry.scenarios()
    if name not in known:
        raise ConfigError(f"unknown scenario {name!r}; known: {', '.join(sorted(known))}")
    return known[name]


def build_scenario_topology(scenario: Scenario) -> TopologySpec:
    known = registry.topologies()
    if scenario.topology not in known:
        raise ConfigError(f"scenario {scenario.name}: unknown topology {scenario.topology!r}")
    return build_topology(scenario.topology, known[scenario.topology], **scenario.topology_params)


class ScenarioRun:
    """A scenario set up on an in-process network (the simulator's, from ``backend``), ready
    to be stepped headless or live. Raises ConfigError for values that do not fit."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int = 1,
        tracer: Tracer | None = None,
        pcap_dir: Path | None = None,
        backend: str | Backend = "sim",
    ) -> None:
        self.scenario = scenario
        self.seed = seed
        self.spec = build_scenario_topology(scenario)
        self.tracer = tracer if tracer is not None else MemoryTracer()
        try:
            tcp_config = TcpConfig(**scenario.tcp)
        except TypeError as exc:
            raise ConfigError(f"scenario {scenario.name}: bad TCP setting: {exc}") from None
        self.backend = get_backend(backend)
        self.net = self.backend.build_network(self.spec, seed=seed, tracer=self.tracer, tcp_config=tcp_config)
        if pcap_dir is not None:
            pcap_dir.mkdir(parents=True, exist_ok=True)
            self.net.enable_pcaps(pcap_dir)
        for router, factory in scenario.middleboxes:
            box = factory()
            self.net.add_middlebox(router, box)
            if self.tracer.enabled:
                self.tracer.record_node(0.0, router, "middlebox", "state_updated", {"installed": box.describe()})
        for ev in scenario.link_events:
            self.net.link(ev.link)  # validates the name now
            self.net.set_link_up(ev.link, ev.up, at=ev.at_s)
        self.results: list[TransferResult] = []
        for workload in scenario.transfers:
            workload.schedule(self)
        if self.tracer.enabled:
            self.net.call_at(METRICS_INTERVAL_S, self._sample_metrics)

    @property
    def now(self) -> float:
        """The network's clock (virtual seconds)."""
        return self.net.now

    def payload(self, size_bytes: int) -> bytes:
        """Seeded pseudo-random bytes for the next result (same seed, same bytes)."""
        return bulk_payload(size_bytes, self.seed * 1000003 + len(self.results))

    def add_result(self, name: str, data: bytes) -> TransferResult:
        """Register a byte stream whose SHA-256 the run checks; the run ends when all are complete."""
        result = TransferResult(name, len(data), hashlib.sha256(data).hexdigest())
        self.results.append(result)
        return result

    def _sample_metrics(self) -> None:
        for name in self.spec.hosts():
            host = self.net.host(name)
            for conn in host.connections():
                host.tracer.record(self.net.now, "tcp", "metrics_updated", conn.metrics())
            for group in host.groups():
                group.sample_rates(self.net.now)
                for sample in group.metrics():
                    host.tracer.record(self.net.now, group.layer, "metrics_updated", sample)
        if not self.done():
            self.net.call_at(self.net.now + METRICS_INTERVAL_S, self._sample_metrics)

    def done(self) -> bool:
        return all(r.complete for r in self.results)

    def bytes_received(self) -> int:
        return sum(r.bytes_received for r in self.results)

    def bytes_expected(self) -> int:
        return sum(r.bytes_expected for r in self.results)


def run_scenario(
    scenario: Scenario,
    *,
    seed: int = 1,
    out_dir: Path | None = None,
    pcaps: bool = True,
    progress: Callable[[Any], None] | None = None,
    backend: str | Backend = "sim",
) -> Any:
    """Run headless on ``backend`` (the simulator by default); writes a bundle when ``out_dir``
    is given. Returns the backend's outcome (``ok``, ``summary()``, ``transfers``).

    Raises ConfigError for bad scenario values or a backend that cannot start here, and
    OSError when ``out_dir`` is unusable.
    """
    chosen = get_backend(backend)
    chosen.check_available(pcaps=pcaps and out_dir is not None)
    return chosen.run(scenario, seed=seed, out_dir=out_dir, pcaps=pcaps, progress=progress)
