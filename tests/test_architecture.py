"""The structure drawn in docs/architecture.json holds in the code.

Every import (also those inside functions) between the parts is read from the
source with ``ast``: no import the whiteboard's ``never`` forbids, no cycle
between packages, ``lab`` imports no Textual or Scapy (and Mininet only in the
Mininet backend), and no module name of ``tui``, ``exercises`` or
``topologies`` appears in ``lab``'s code, not even as a string to import.
"""

from __future__ import annotations

import ast
import json
import re
from collections import defaultdict
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WHITEBOARD = json.loads((ROOT / "docs" / "architecture.json").read_text(encoding="utf-8"))
SOURCES = ("lab", "tui", "exercises", "topologies")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def _imports(path: Path) -> frozenset[str]:
    """The modules ``path`` imports, absolute, anywhere in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out.add(target)
            out.update(f"{target}.{alias.name}" for alias in node.names)  # from pkg import module
    return frozenset(out)


def _files() -> list[Path]:
    return sorted(p for top in SOURCES for p in (ROOT / top).rglob("*.py"))


def _part_of(rel: str) -> str | None:
    """The whiteboard part holding ``rel`` (a path like ``lab/tcp/state.py``), by longest prefix."""
    best, best_len = None, -1
    for part, spec in WHITEBOARD["parts"].items():
        for prefix in spec["is"]:
            if (rel == prefix or (prefix.endswith("/") and rel.startswith(prefix))) and len(prefix) > best_len:
                best, best_len = part, len(prefix)
    return best


def _module_file(module: str) -> str | None:
    """The source path of ``module`` (a package's __init__.py), or None outside the project."""
    parts = module.split(".")
    if parts[0] not in SOURCES:
        return None
    for n in range(len(parts), 0, -1):
        base = ROOT.joinpath(*parts[:n])
        if base.with_suffix(".py").is_file():
            return str(base.with_suffix(".py").relative_to(ROOT))
        if (base / "__init__.py").is_file():
            return str((base / "__init__.py").relative_to(ROOT))
    return None


@cache
def _edges() -> dict[tuple[str, str], list[str]]:
    """(from part, to part) -> the imports that make that arrow."""
    out: dict[tuple[str, str], list[str]] = defaultdict(list)
    for path in _files():
        rel = str(path.relative_to(ROOT))
        src = _part_of(rel)
        for module in _imports(path):
            target = _module_file(module)
            if target is None:
                continue
            dst = _part_of(target)
            if src and dst and src != dst:
                out[(src, dst)].append(f"{rel} -> {module}")
    return out


def test_every_part_of_the_whiteboard_exists() -> None:
    for part, spec in WHITEBOARD["parts"].items():
        for place in spec["is"]:
            assert (ROOT / place).exists(), f"part {part}: {place} is missing"


def test_every_source_file_belongs_to_a_part() -> None:
    orphans = [str(p.relative_to(ROOT)) for p in _files() if _part_of(str(p.relative_to(ROOT))) is None]
    assert orphans in ([], ["lab/__init__.py"]), orphans


@pytest.mark.parametrize("never", WHITEBOARD["never"], ids=lambda n: f"{n[0]}->{n[1]}")
def test_no_forbidden_import(never: list[str]) -> None:
    src, dst, why = never
    assert not _edges().get((src, dst)), f"{src} must not import {dst} ({why}): {_edges()[(src, dst)]}"


def _package(module: str) -> str:
    """The package a module counts under for cycles: ``lab.tcp.state`` -> ``lab.tcp``."""
    parts = module.split(".")
    if parts[0] != "lab":
        return parts[0]
    path = ROOT.joinpath(*parts[:2])
    return ".".join(parts[:2]) if path.is_dir() else "lab." + parts[1]


def test_no_import_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in _files():
        src = _package(_module_name(path))
        for module in _imports(path):
            if _module_file(module) is None:
                continue
            dst = _package(module)
            if dst != src and dst != "lab":
                graph[src].add(dst)
    # Tarjan's strongly connected components: any of more than one package is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in list(graph):
        if node not in index:
            visit(node)
    assert not cycles, f"packages importing each other: {cycles}"


def test_lab_imports_no_screen_and_no_packet_crafting_library() -> None:
    bad = []
    for path in (ROOT / "lab").rglob("*.py"):
        rel = str(path.relative_to(ROOT))
        for module in _imports(path):
            top = module.split(".")[0]
            if top in ("textual", "scapy", "tui", "exercises", "topologies") or (
                top == "mininet" and not rel.startswith("lab/mininet/")
            ):
                bad.append(f"{rel} -> {module}")
    assert not bad, bad


def test_lab_names_no_module_of_the_faces_even_as_a_string() -> None:
    """No ``importlib.import_module("tui...")`` or entry-point string of tui, exercises or topologies in lab."""
    pattern = re.compile(r"^(tui|exercises|topologies)(\.[\w.]+)?(:[\w.]+)?$")
    bad = []
    for path in (ROOT / "lab").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and pattern.match(node.value):
                if "." in node.value or ":" in node.value:
                    bad.append(f"{path.relative_to(ROOT)}: {node.value!r}")
    assert not bad, bad
