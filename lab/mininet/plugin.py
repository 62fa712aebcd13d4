"""Mininet as a :class:`~lab.scenario.backend.Backend` (registered as ``mininet``).

Real packets on network namespaces and veth links, as root: each host runs
our user-space stack in an endpoint process (or the kernel's TCP/MPTCP),
records carry wall-clock seconds since the run's start.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.errors import ConfigError
from lab.scenario.backend import Backend, BackendUnavailable
from lab.scenario.base import Scenario


class MininetLabBackend(Backend):
    name = "mininet"
    title = "Mininet"
    description = "Mininet: network namespaces and veth links, real packets (root)"
    wall_clock = True
    needs_root = True

    def check_available(self, *, pcaps: bool = False) -> None:
        from lab.mininet.backend import check_prerequisites

        try:
            check_prerequisites(pcaps=pcaps)
        except BackendUnavailable:
            raise
        except ConfigError as exc:
            raise BackendUnavailable(str(exc)) from None

    def run(
        self,
        scenario: Scenario,
        *,
        seed: int = 1,
        out_dir: Path | None = None,
        pcaps: bool = True,
        progress: Callable[[Any], None] | None = None,
        **options: Any,
    ) -> Any:
        from lab.mininet.run import run_mininet_scenario

        self.check_available(pcaps=pcaps and out_dir is not None)
        return run_mininet_scenario(scenario, seed=seed, out_dir=out_dir, pcaps=pcaps, progress=progress, **options)

    def live_run(
        self,
        scenario: Scenario,
        *,
        seed: int = 1,
        speed: float | None = 1.0,
        out_dir: Path | None = None,
        pause_at_moments: bool = True,
    ) -> Any:
        """A real network cannot pause: ``speed`` and ``pause_at_moments`` do not apply (the TUI
        still marks the moments as they happen)."""
        from lab.mininet.liverun import MininetRun

        self.check_available()
        return MininetRun(scenario, seed=seed, out_dir=out_dir, hold=True)  # up until the viewer quits

    def replay(self, scenario: Scenario, *, seed: int, pcap_dir: Path | None = None) -> Any:
        from lab.mininet.replay import MininetReplay

        return MininetReplay(scenario, seed=seed, pcap_dir=pcap_dir)

    def link_realisation(self, spec: Any) -> dict[str, dict[str, Any]]:
        from lab.mininet.topo import plan_links

        return {name: {**p.realisation, "realised_by": p.methods} for name, p in plan_links(spec).items()}

    def clean(self) -> list[str]:
        from lab.mininet.backend import clean

        return clean()


BACKENDS = {"mininet": MininetLabBackend()}
