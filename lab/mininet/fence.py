"""Fencing a host's kernel off the ports its user-space stack owns.

A Mininet host's kernel owns the host's addresses, so it would answer every
TCP segment addressed to them, and a segment for a connection that only the
user-space stack (:mod:`lab.mininet.endpoint`) knows would get a RST from it.
The fence is an nftables table, ``inet tcplab_fence``, in the host's network
namespace: a chain on the ``prerouting`` hook at ``raw`` priority (before
conntrack) drops TCP and UDP packets whose destination port the user-space
stack owns. AF_PACKET sockets see frames before that hook, so the user-space
stack still receives them; the kernel never does, so it neither resets nor
tracks them. The user-space stack's own packets leave through AF_PACKET and
never meet the host's netfilter hooks at all.

The owned ports are the user-space listeners' ports and the range from which
:class:`lab.stack.host.HostStack` picks its client ports
(:data:`USER_EPHEMERAL_PORTS`); the kernel's own client ports are moved out of
that range (``net.ipv4.ip_local_port_range``, restored on removal) so that a
kernel application on the same host never collides with the fence.

:func:`install` and :func:`remove` run ``nft``/``sysctl`` inside a node through
a :class:`lab.mininet.MininetBackend`; removing leaves the namespace's ruleset
exactly as it was (the tests compare ``nft list ruleset`` before and after).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from lab.errors import ConfigError

TABLE = "tcplab_fence"
FAMILY = "inet"
USER_EPHEMERAL_PORTS = (40000, 60999)  # lab.stack.host.HostStack._alloc_port
KERNEL_EPHEMERAL_PORTS = (32768, 39999)  # what the kernel of a fenced host picks from instead


def _ranges(ports: Iterable[int | tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Sorted, merged inclusive ranges. Raises ConfigError for a port outside 1..65535."""
    spans = []
    for item in ports:
        lo, hi = (item, item) if isinstance(item, int) else item
        if not 0 < lo <= hi < 65536:
            raise ConfigError(f"fence: port range {lo}-{hi} is not within 1..65535")
        spans.append((lo, hi))
    merged: list[tuple[int, int]] = []
    for lo, hi in sorted(spans):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(hi, merged[-1][1]))
        else:
            merged.append((lo, hi))
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class PortSet:
    """Destination ports (inclusive ranges) a user-space stack owns, per protocol."""

    tcp: tuple[tuple[int, int], ...] = ()
    udp: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(
        cls,
        *,
        tcp: Iterable[int | tuple[int, int]] = (),
        udp: Iterable[int | tuple[int, int]] = (),
        ephemeral: bool = True,
    ) -> PortSet:
        """The given ports, plus the user-space client port range when ``ephemeral``.
        Raises ConfigError for a port outside 1..65535."""
        tcp_all = [*tcp, USER_EPHEMERAL_PORTS] if ephemeral else list(tcp)
        return cls(_ranges(tcp_all), _ranges(udp))

    def owns_tcp(self, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.tcp)

    def owns_udp(self, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.udp)

    def to_dict(self) -> dict[str, list[list[int]]]:
        return {"tcp": [list(r) for r in self.tcp], "udp": [list(r) for r in self.udp]}

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> PortSet:
        """Raises ConfigError on a malformed port list."""
        try:
            return cls(
                _ranges(tuple(int(v) for v in r) for r in obj.get("tcp", [])),
                _ranges(tuple(int(v) for v in r) for r in obj.get("udp", [])),
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"fence: malformed port set {obj!r}: {exc}") from None


def _elements(ranges: tuple[tuple[int, int], ...]) -> str:
    return ", ".join(str(lo) if lo == hi else f"{lo}-{hi}" for lo, hi in ranges)


def ruleset(ports: PortSet) -> str:
    """The ``nft -f`` script that creates the fence table for ``ports``."""
    lines = [f"table {FAMILY} {TABLE} {{"]
    for proto, ranges in (("tcp", ports.tcp), ("udp", ports.udp)):
        lines.append(f"  set {proto}_ports {{")
        lines.append("    type inet_service; flags interval;")
        if ranges:
            lines.append(f"    elements = {{ {_elements(ranges)} }}")
        lines.append("  }")
    lines += [
        "  chain prerouting {",
        "    type filter hook prerouting priority raw; policy accept;",
        "    meta l4proto tcp th dport @tcp_ports counter drop",
        "    meta l4proto udp th dport @udp_ports counter drop",
        "  }",
        "}",
    ]
    return "\n".join(lines) + "\n"


def list_ruleset(backend: Any, node: str) -> str:
    """``nft list ruleset`` inside ``node``. Raises MininetCommandError."""
    return backend.cmd(node, ["nft", "list", "ruleset"])


@dataclass(slots=True)
class Fence:
    """A fence installed in one node; :meth:`remove` undoes exactly what was done."""

    backend: Any
    node: str
    ports: PortSet
    saved_port_range: str | None = None
    installed: bool = False

    def install(self) -> None:
        """Create the table and move the kernel's client ports out of the owned range.
        Raises MininetCommandError (``nft`` missing or failing) after undoing what was done."""
        self.saved_port_range = " ".join(
            self.backend.cmd(self.node, ["sysctl", "-n", "net.ipv4.ip_local_port_range"]).split()
        )
        lo, hi = KERNEL_EPHEMERAL_PORTS
        self.backend.cmd(self.node, ["sysctl", "-q", "-w", f"net.ipv4.ip_local_port_range={lo} {hi}"])
        try:
            self.backend.cmd(self.node, ["nft", "-f", "-"], input=ruleset(self.ports))
        except Exception:
            self.backend.cmd(
                self.node,
                ["sysctl", "-q", "-w", f"net.ipv4.ip_local_port_range={self.saved_port_range}"],
                check=False,
            )
            raise
        self.installed = True

    def dropped(self) -> dict[str, int]:
        """Packets and bytes the fence dropped so far, per protocol (0 when not installed)."""
        out = {"tcp_packets": 0, "udp_packets": 0}
        if not self.installed:
            return out
        text = self.backend.cmd(self.node, ["nft", "list", "chain", FAMILY, TABLE, "prerouting"], check=False)
        for line in text.splitlines():
            words = line.split()
            if "counter" in words and "packets" in words:
                packets = int(words[words.index("packets") + 1])
                proto = "tcp" if "tcp" in words else "udp"
                out[f"{proto}_packets"] += packets
        return out

    def remove(self) -> None:
        """Delete the table and restore the kernel's client port range; safe to call twice."""
        if self.installed:
            self.backend.cmd(self.node, ["nft", "delete", "table", FAMILY, TABLE], check=False)
            self.installed = False
        if self.saved_port_range is not None:
            self.backend.cmd(
                self.node,
                ["sysctl", "-q", "-w", f"net.ipv4.ip_local_port_range={self.saved_port_range}"],
                check=False,
            )
            self.saved_port_range = None


def install(backend: Any, node: str, ports: PortSet) -> Fence:
    """Fence ``node``'s kernel off ``ports``; returns the Fence to remove later.
    Raises MininetCommandError."""
    fence = Fence(backend, node, ports)
    fence.install()
    return fence
