"""Topologies: one function per topology, and the TOPOLOGIES registry."""

from __future__ import annotations

from topologies.shared_bottleneck import shared_bottleneck
from topologies.single_path import single_path
from topologies.three_paths import three_paths
from topologies.two_paths import two_paths

TOPOLOGIES = {
    "single-path": single_path,
    "two-paths": two_paths,
    "shared-bottleneck": shared_bottleneck,
    "three-paths": three_paths,
}
