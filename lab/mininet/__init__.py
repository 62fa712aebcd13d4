"""The Mininet backend: a topology spec on real network namespaces and veth links.

``plugin`` is the Backend the lab finds by the name ``mininet``. ``backend``
(``with MininetBackend(spec) as net:``) builds the spec and on exit stops
what it started (processes by PID, then the Mininet network); ``topo`` plans
each link (HTB, netem or the user-space ``linkemu``), ``fence`` keeps the
kernel off the user-space stack's ports, ``endpoint`` runs a host's stack in
its namespace on AF_PACKET sockets, ``run`` and ``liverun`` run a scenario
headless or for the TUI, ``middlebox`` installs the scenario's policies with
the kernel's tools or NFQUEUE, ``apps`` puts the kernel's TCP/MPTCP behind
the host stack's API, ``custom`` is ``mn --custom``'s hook. Mininet itself is
imported only inside functions, so ``import lab.mininet`` works without it.
"""

from __future__ import annotations

from lab.mininet.backend import MininetBackend, check_prerequisites, clean
from lab.mininet.topo import MininetCommandError, netem_available, plan_links

__all__ = ["MininetBackend", "MininetCommandError", "check_prerequisites", "clean", "netem_available", "plan_links"]
