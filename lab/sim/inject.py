"""Injecting a hand-made IP packet at a node of the simulated network (see :mod:`lab.scenario.inject`)."""

from __future__ import annotations

from typing import Any

from lab.errors import ConfigError
from lab.scenario.inject import LAYER, addresses, packet_bytes, summary
from lab.sim.network import SimRouter
from lab.wire.checksum import pack_address, unpack_address


def inject(net: Any, node: str, packet: Any, *, at: float | None = None, interface: str | None = None) -> str:
    """Send ``packet`` out of ``node``'s interface in the simulated network ``net``.

    A host uses ``interface`` or the one owning the packet's source address
    (else its only interface); a router uses the interface its routes give for
    the destination. ``at`` is a virtual time (default: now). Returns the
    interface name. Raises ValueError for a packet that is not IP and
    ConfigError for an unknown node or interface or no usable route.
    """
    raw = packet_bytes(packet)
    sim_node = net.nodes.get(node)
    if sim_node is None:
        raise ConfigError(f"no node named {node!r}; nodes: {', '.join(net.nodes)}")
    src, dst = addresses(raw)
    if interface is not None:
        iface = sim_node.interfaces.get(interface)
        if iface is None:
            raise ConfigError(f"{node} has no interface {interface!r}; it has {', '.join(sim_node.interfaces)}")
    elif isinstance(sim_node, SimRouter):
        iface = sim_node.routes.get(dst)
        if iface is None:
            raise ConfigError(f"router {node} has no route to {unpack_address(dst)}")
    else:
        iface = next(
            (
                i
                for i in sim_node.interfaces.values()
                if src in (pack_address(a) for a in (i.spec.ipv4, i.spec.ipv6) if a)
            ),
            None,
        )
        if iface is None:
            if len(sim_node.interfaces) != 1:
                raise ConfigError(f"{node} has several interfaces and none owns {unpack_address(src)}: name one")
            iface = next(iter(sim_node.interfaces.values()))

    def send() -> None:
        if net.tracer.enabled:
            net.tracer.record_node(net.now, node, LAYER, "segment_sent", {"iface": iface.name, **summary(raw)})
        net.transmit(iface, raw)

    if at is None or at <= net.now:
        send()
    else:
        net.call_at(at, send)
    return iface.name
