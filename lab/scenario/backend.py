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
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from lab.errors import ConfigError

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


class Replay(Protocol):
    """A grader's run of a scenario with a fixed seed (see exercises/grading.py)."""

    backend: str

    def at(self, t: float, fn: Callable[[Any], None]) -> None: ...

    def finish(self) -> Any: ...


class Backend(ABC):
    """One way to run scenarios. ``wall_clock`` backends stamp records with wall seconds
    (timing checks allow slack there); ``needs_root`` ones refuse without root."""

    name: str = "?"
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
    def live_run(self, scenario: Scenario, *, seed: int = 1, speed: float | None = 1.0, out_dir: Path | None = None) -> Any:
        """A run the TUI follows (a :class:`lab.runs.LabRun`), recording to ``out_dir`` when given."""

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
