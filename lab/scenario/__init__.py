"""Scenarios: a topology, its middleboxes, link events and workload, and the Backend they run on.

``base`` holds :class:`Scenario`, :class:`Workload`, :class:`Transfer`,
:class:`LinkEvent` and the headless runner; the workloads of each protocol
are ``mptcp``, ``eno`` and ``ike`` (with ``ike_driver`` running an IKE
endpoint on a host stack and ``ike_live`` on the kernel's sockets);
``middlebox`` holds the backend-neutral middlebox policies; ``mptcp_observer``
follows a kernel MPTCP peer from its wire; ``backend`` is the interface each
backend (``lab/sim``, ``lab/mininet``) implements.
"""

from lab.scenario.base import (
    METRICS_INTERVAL_S,
    STACKS,
    LinkEvent,
    RunResult,
    Scenario,
    ScenarioRun,
    Transfer,
    WireObserver,
    Workload,
    build_scenario_topology,
    get_scenario,
    run_scenario,
    runs_here,
    stack_host,
)

__all__ = [
    "METRICS_INTERVAL_S",
    "STACKS",
    "LinkEvent",
    "RunResult",
    "Scenario",
    "ScenarioRun",
    "Transfer",
    "WireObserver",
    "Workload",
    "build_scenario_topology",
    "get_scenario",
    "run_scenario",
    "runs_here",
    "stack_host",
]
