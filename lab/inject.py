"""Inject a hand-made IP packet at a node, in the simulator or inside a Mininet host.

The packet leaves the node's interface as if the node had sent it, but no
stack of the node sees it: it is the way to play an attacker or a broken
peer sitting at that node (a forged RST, an ENO SYN with a hand-picked TEP
list, a replayed ESP packet). It may be raw bytes or anything ``bytes()``
turns into an IPv4 or IPv6 packet, such as a Scapy ``IP()/TCP()`` (Scapy is
never imported here).

* Simulator: :func:`inject` schedules the send on the :class:`SimNetwork`'s
  virtual clock and records ``inject``/``segment_sent`` in the trace.
* Mininet: :func:`inject_mininet` runs ``python -m lab.inject`` inside the
  host's network namespace, which sends the packet with Scapy's ``send()``
  on the chosen interface (the kernel routes it and resolves the next hop).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lab.errors import ConfigError
from lab.wire.checksum import pack_address, unpack_address

LAYER = "inject"


def packet_bytes(packet: Any) -> bytes:
    """The IP packet's bytes. Raises ValueError if it is not an IPv4/IPv6 packet
    (an Ethernet frame from Scapy's ``Ether()/...`` is refused: inject the IP layer)."""
    try:
        raw = bytes(packet)
    except TypeError:
        raise ValueError(f"cannot turn a {type(packet).__name__} into packet bytes") from None
    if len(raw) < 20 or raw[0] >> 4 not in (4, 6):
        raise ValueError("not an IPv4 or IPv6 packet (inject the IP layer, without Ether)")
    if raw[0] >> 4 == 6 and len(raw) < 40:
        raise ValueError("IPv6 packet shorter than its header")
    return raw


def _addresses(raw: bytes) -> tuple[bytes, bytes]:
    if raw[0] >> 4 == 4:
        return raw[12:16], raw[16:20]
    return raw[8:24], raw[24:40]


def summary(raw: bytes) -> dict[str, Any]:
    """What the trace record says about an injected packet: addresses, protocol, TCP ports and flags."""
    src, dst = _addresses(raw)
    out: dict[str, Any] = {"src": unpack_address(src), "dst": unpack_address(dst), "len": len(raw)}
    if raw[0] >> 4 == 4:
        proto, hl = raw[9], (raw[0] & 0x0F) * 4
    else:
        proto, hl = raw[6], 40
    out["protocol"] = proto
    if proto in (6, 17) and len(raw) >= hl + 4:
        out["sport"] = int.from_bytes(raw[hl : hl + 2], "big")
        out["dport"] = int.from_bytes(raw[hl + 2 : hl + 4], "big")
    if proto == 6 and len(raw) >= hl + 20:
        from lab.wire.tcp import flags_text

        out["flags"] = flags_text(raw[hl + 13])
        out["seq"] = int.from_bytes(raw[hl + 4 : hl + 8], "big")
        out["ack"] = int.from_bytes(raw[hl + 8 : hl + 12], "big")
    return out


def inject(net: Any, node: str, packet: Any, *, at: float | None = None, interface: str | None = None) -> str:
    """Send ``packet`` out of ``node``'s interface in the simulated network ``net``.

    A host uses ``interface`` or the one owning the packet's source address
    (else its only interface); a router uses the interface its routes give for
    the destination. ``at`` is a virtual time (default: now). Returns the
    interface name. Raises ValueError for a packet that is not IP and
    ConfigError for an unknown node or interface or no usable route.
    """
    from lab.sim.network import SimRouter

    raw = packet_bytes(packet)
    sim_node = net.nodes.get(node)
    if sim_node is None:
        raise ConfigError(f"no node named {node!r}; nodes: {', '.join(net.nodes)}")
    src, dst = _addresses(raw)
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


def inject_mininet(
    backend: Any, node: str, packet: Any, *, interface: str | None = None, timeout: float = 20.0
) -> None:
    """Send ``packet`` from inside Mininet node ``node`` (``MininetBackend``) with Scapy's ``send()``.

    ``interface`` defaults to the kernel's route for the destination. Raises
    ValueError for a packet that is not IP, and MininetCommandError when the
    sender fails (Scapy missing inside the host's Python, no route).
    """
    raw = packet_bytes(packet)
    args = [raw.hex()] + (["--iface", interface] if interface is not None else [])
    root = str(Path(__file__).resolve().parents[1])  # the node's shell may start anywhere
    code = f"import sys; sys.path.insert(0, {root!r}); from lab.inject import main; sys.exit(main({args!r}))"
    backend.cmd(node, [sys.executable, "-c", code], timeout=timeout)


def _send_with_scapy(raw: bytes, iface: str | None) -> None:
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.sendrecv import send

    pkt = IP(raw) if raw[0] >> 4 == 4 else IPv6(raw)
    kwargs: dict[str, Any] = {"verbose": False}
    if iface is not None:
        kwargs["iface"] = iface
    send(pkt, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """``python -m lab.inject HEX [--iface NAME]``: send one IP packet from this network namespace."""
    p = argparse.ArgumentParser(prog="python -m lab.inject", description="send one raw IP packet with Scapy")
    p.add_argument("packet", help="the IP packet as hex")
    p.add_argument("--iface")
    args = p.parse_args(argv)
    try:
        raw = packet_bytes(bytes.fromhex(args.packet))
    except ValueError as exc:
        print(f"lab.inject: {exc}", file=sys.stderr)
        return 2
    try:
        _send_with_scapy(raw, args.iface)
    except ImportError:
        print("lab.inject: Scapy is not installed (pip install scapy)", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"lab.inject: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
