"""The Backend interface: what the CLI, runs, the TUI, benches and graders need from a network.

A backend realises a scenario's topology and carries its packets: the
embedded simulator (``lab/sim``, the default) or Mininet (``lab/mininet``).
Each registers under the ``tcplab.backends`` entry point (name -> Backend)
and is found with :func:`get_backend`; nothing above this floor imports a
backend's package or branches on its name, so a new backend is one folder
plus one entry point.

Every method that starts something first calls :meth:`Backend.check_available`,
which raises :class:`BackendUnavailable` with one line saying what to do.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lab.errors import ConfigError
from lab.trace import TraceRecord

if TYPE_CHECKING:
    from lab.scenario.base import Scenario
    from lab.tcp import TcpConfig
    from lab.topology import TopologySpec
    from lab.trace import Tracer


class BackendUnavailable(ConfigError):
    """The backend cannot start here (not root, a package missing); the message says what to do."""


class RunOutcome(Protocol):
    """What a headless run returns (the simulator's RunResult, Mininet's MininetRunResult)."""

    @property
    def ok(self) -> bool: ...

    def summary(self) -> dict[str, Any]:
        """``summary.json``'s content: scenario, seed, backend, ok, transfers, links..."""
        ...


@dataclass
class ReplayResult:
    """What a finished replay recorded, and what graders want to know of it (``extra``:
    results per transfer, timed_out, end_s, seed, backend, injected packets...)."""

    records: list[TraceRecord]
    extra: dict[str, Any]


class RunContext:
    """What a grader's action (``replay.at(t, fn)``) works with, on either backend.

    ``now`` is the run's time (virtual in the simulator, wall seconds since the start on
    Mininet), ``captured(interface)`` the IP packets captured so far on that interface (both
    directions; the replay needs a ``pcap_dir``), and ``inject(node, packet, at=...)`` sends a
    packet out of ``node`` at time ``at`` (default: now) as :mod:`lab.scenario.inject` describes and returns
    that time. ``inject`` raises ValueError for a packet that is not IP and ConfigError for an
    unknown node or interface; ``captured`` raises ConfigError when nothing is captured there.
    """

    backend = ""
    wall_clock = False  # a real network: time goes on while an action runs, captures lag behind

    @property
    def now(self) -> float:
        raise NotImplementedError

    def captured(self, interface: str) -> list[bytes]:
        raise NotImplementedError

    def inject(self, node: str, packet: Any, *, at: float | None = None, interface: str | None = None) -> float:
        raise NotImplementedError


class Replay(Protocol):
    """A grader's run of a scenario with a fixed seed: ``at(t, fn)`` calls ``fn(ctx)`` (a
    :class:`RunContext`) at run time ``t``; ``run_until(t)`` stands the run still at ``t``
    (where the backend can); ``finish()`` runs to the end and returns a ReplayResult."""

    backend: str

    def at(self, t: float, fn: Callable[[RunContext], None]) -> None: ...

    def run_until(self, t: float) -> None: ...

    def finish(self) -> ReplayResult: ...


class Backend(ABC):
    """One way to run scenarios. ``wall_clock`` backends stamp records with wall seconds
    (timing checks allow slack there); ``needs_root`` ones refuse without root."""

    name: str = "?"
    title: str = "?"  # the name people read ("Mininet")
    description: str = ""
    wall_clock: bool = False
    needs_root: bool = False

    def check_available(self, *, pcaps: bool = False) -> None:
        """Raises BackendUnavailable (one line: what to do) when this backend cannot start here."""

    @abstractmethod
    def run(
        self,
        scenario: Scenario,
        *,
        seed: int = 1,
        out_dir: Path | None = None,
        pcaps: bool = True,
        progress: Callable[[Any], None] | None = None,
    ) -> RunOutcome:
        """Run headless to the end; with ``out_dir``, write the run bundle there.
        ``progress(view)`` is called now and then with an object that has
        ``bytes_received()``, ``bytes_expected()`` and ``now``."""

    @abstractmethod
    def live_run(
        self,
        scenario: Scenario,
        *,
        seed: int = 1,
        speed: float | None = 1.0,
        out_dir: Path | None = None,
        pause_at_moments: bool = True,
    ) -> Any:
        """A run the TUI follows (a :class:`lab.runs.LabRun`), recording to ``out_dir`` when given,
        standing still at each of the scenario's key moments when it can and ``pause_at_moments``."""

    @abstractmethod
    def replay(self, scenario: Scenario, *, seed: int, pcap_dir: Path | None = None) -> Replay:
        """A grader's run of ``scenario`` (see :class:`Replay`)."""

    def build_network(self, spec: TopologySpec, *, seed: int, tracer: Tracer, tcp_config: TcpConfig) -> Any:
        """An in-process network a :class:`~lab.scenario.ScenarioRun` steps (the simulator's).
        Raises ConfigError for a backend whose network lives outside this process."""
        raise ConfigError(f"the {self.name} backend has no in-process network")

    def link_realisation(self, spec: TopologySpec) -> dict[str, dict[str, Any]] | None:
        """How each link of ``spec`` would be realised (for ``tcplab topo --backend``), or None."""
        return None

    def clean(self) -> list[str]:
        """Remove what a killed run of this backend left behind; one line per thing removed."""
        return []


def get_backend(name: str | Backend) -> Backend:
    """The backend called ``name`` (a Backend passes through). Raises ConfigError naming the known ones."""
    if isinstance(name, Backend):
        return name
    from lab.scenario import registry

    return registry.get_backend(name)


def backend_names() -> list[str]:
    from lab.scenario import registry

    return sorted(registry.backends())
