"""Finds topologies, scenarios and benchmarks through entry points.

``lab`` never imports ``topologies`` or ``exercises``; they register here with
``[project.entry-points]`` groups ``tcplab.topologies``, ``tcplab.scenarios``,
``tcplab.benchmarks`` and ``tcplab.commands`` (each entry a dict of name -> object).
"""

from __future__ import annotations

import importlib
from functools import cache
from importlib.metadata import entry_points
from typing import Any

# used when the package is imported from a source tree without being installed
_FALLBACK = {
    "tcplab.topologies": ["topologies:TOPOLOGIES"],
    "tcplab.scenarios": [
        "topologies.scenarios:SCENARIOS",
        "topologies.mptcp_scenarios:SCENARIOS",
        "topologies.eno_scenarios:SCENARIOS",
        "topologies.ike_scenarios:SCENARIOS",
    ],
    "tcplab.benchmarks": [
        "lab.bench:BENCHMARKS",
        "lab.bench.mptcp:BENCHMARKS",
        "lab.bench.tcpcrypt:BENCHMARKS",
        "lab.bench.ike:BENCHMARKS",
        "lab.bench.mininet:BENCHMARKS",
        "tui.bench:BENCHMARKS",
    ],
    "tcplab.commands": ["tui.commands:COMMANDS", "exercises.commands:COMMANDS"],
}


@cache
def _load(group: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    eps = list(entry_points(group=group))
    targets = [ep.value for ep in eps] or _FALLBACK[group]
    for target in targets:
        module, _, attr = target.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        out.update(obj)
    return out


def topologies() -> dict[str, Any]:
    return _load("tcplab.topologies")


def scenarios() -> dict[str, Any]:
    return _load("tcplab.scenarios")


def benchmarks() -> dict[str, Any]:
    return _load("tcplab.benchmarks")


def commands() -> dict[str, Any]:
    """name -> ``add_commands(subparsers)``: CLI subcommands from tui/ and exercises/."""
    return _load("tcplab.commands")
