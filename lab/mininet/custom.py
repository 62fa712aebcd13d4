"""Mininet's custom-topology hook for every topology the lab knows.

    mn --custom lab/mininet/custom.py --topo two-paths,delay_ms=0:0

builds the registered topology ``two-paths`` with those parameters (tuple
values written ``a:b``), realised as the lab's Mininet backend realises it
(see :func:`lab.mininet.topo.mininet_topo`). The ``topos`` dict Mininet reads
is filled when ``mn`` runs this file, not when the lab imports it.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def mininet_topos() -> dict[str, Callable[..., Any]]:
    """name -> the constructor ``mn --topo name,...`` calls, for every registered topology."""
    from lab.mininet.topo import mininet_topo
    from lab.scenario import registry

    return {name: mininet_topo(name, fn) for name, fn in registry.topologies().items()}


if __package__ in (None, ""):  # `mn --custom` runs this file with the repository off sys.path
    sys.path.insert(0, str(Path(inspect.getfile(inspect.currentframe())).resolve().parents[2]))  # type: ignore[arg-type]
    topos = mininet_topos()
