"""Short names for subflows and paths, from the topology: ``:43355 via r1`` rather than a four-tuple.

A subflow is named from the data sender's side: its local port and the node its
local address's link leads to (the first hop, ``r1``), which is what the
two-path topologies call path A or B.
"""

from __future__ import annotations

from typing import Any


def split_subflow(subflow: str) -> tuple[str, str, str, str]:
    """``10.0.1.1:43353->10.0.2.2:5001`` as (local address, local port, remote address, remote port)."""
    local, _, remote = subflow.partition("->")
    la, _, lp = local.rpartition(":")
    ra, _, rp = remote.rpartition(":")
    return la.strip("[]"), lp, ra.strip("[]"), rp


def reverse_subflow(subflow: str) -> str:
    """The same subflow as the other end names it."""
    local, _, remote = subflow.partition("->")
    return f"{remote}->{local}" if remote else subflow


class PathNames:
    """Addresses to the first hop behind them, from a topology description (``topology.json``)."""

    def __init__(self, topology: dict[str, Any] | None = None) -> None:
        self._hop: dict[str, str] = {}  # address -> the node at the other end of its link
        self._node: dict[str, str] = {}  # address -> the node that owns it
        for iface in (topology or {}).get("interfaces", []):
            for key in ("ipv4", "ipv6"):
                addr = iface.get(key)
                if addr:
                    self._hop[str(addr)] = str(iface.get("peer") or iface.get("name") or "?")
                    self._node[str(addr)] = str(iface.get("node", "?"))

    def first_hop(self, address: str) -> str:
        """The node behind ``address``'s link (``r1``), or the address itself when unknown."""
        return self._hop.get(address, address)

    def owner(self, address: str) -> str | None:
        return self._node.get(address)

    def path(self, sender_address: str) -> str:
        """The path data from ``sender_address`` takes, named by its first hop: ``via r1``."""
        return f"via {self.first_hop(sender_address)}"

    def subflow(self, subflow: str) -> str:
        """``:43355 via r1``: a subflow named from its connecting side (the higher, ephemeral port),
        so both ends' records name it alike."""
        la, lp, ra, rp = split_subflow(subflow)
        if not lp or not rp:
            return subflow
        if _port(rp) > _port(lp):
            la, lp = ra, rp
        return f":{lp} {self.path(la)}"


def _port(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        return -1
