"""Topologies: one function per topology, and the TOPOLOGIES registry."""

from __future__ import annotations

from topologies.single_path import single_path
from topologies.two_paths import two_paths

TOPOLOGIES = {
    "single-path": single_path,
    "two-paths": two_paths,
}
