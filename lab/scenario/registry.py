"""Finds topologies, scenarios, backends, benchmarks and CLI commands through entry points.

``lab`` never imports ``topologies``, ``tui`` or ``exercises``, nor a backend's
package from above it: they register with ``[project.entry-points]`` groups
``tcplab.topologies``, ``tcplab.scenarios``, ``tcplab.backends``,
``tcplab.benchmarks`` and ``tcplab.commands`` (each entry an object, or a dict
of name -> object). Run from a source tree that was never installed, the same
groups are read from its ``pyproject.toml``.
"""

from __future__ import annotations

import importlib
import tomllib
from functools import cache
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from lab.errors import ConfigError

_PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def _source_tree_targets(group: str) -> list[str]:
    """The group's entries as this source tree's pyproject.toml declares them."""
    try:
        project = tomllib.loads(_PYPROJECT.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return []
    return list(project.get("project", {}).get("entry-points", {}).get(group, {}).values())


@cache
def _load(group: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    eps = list(entry_points(group=group))
    targets = [ep.value for ep in eps] or _source_tree_targets(group)
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


def backends() -> dict[str, Any]:
    """name -> :class:`lab.scenario.backend.Backend`."""
    return _load("tcplab.backends")


def get_backend(name: str) -> Any:
    """The backend called ``name``. Raises ConfigError naming the known ones."""
    known = backends()
    if name not in known:
        raise ConfigError(f"unknown backend {name!r}; known: {', '.join(sorted(known))}")
    return known[name]
