"""The Mininet backend: a topology spec on real network namespaces and veth links.

``with MininetBackend(spec) as net:`` builds the spec, and on exit stops what
it started (processes by PID, then the Mininet network). Mininet itself is
imported only inside functions, so ``import lab.mininet`` works without it.
"""

from __future__ import annotations

from lab.mininet.backend import MininetBackend, check_prerequisites, clean
from lab.mininet.topo import MininetCommandError, netem_available, plan_links

__all__ = ["MininetBackend", "MininetCommandError", "check_prerequisites", "clean", "netem_available", "plan_links"]
