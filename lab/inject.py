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


class MininetInjector:
    """A sender kept running inside Mininet node ``node`` (``python -m lab.inject --serve``), so that
    packets sent during a run leave within milliseconds (Scapy is imported once, when it starts).

    ``send`` writes one packet and waits for the sender's answer; ``close`` ends it (the backend
    also stops it with the network). Raises ValueError for a packet that is not IP and
    MininetCommandError when the sender failed or did not answer within ``timeout`` seconds.
    """

    def __init__(self, backend: Any, node: str, *, timeout: float = 20.0) -> None:
        import subprocess

        root = str(Path(__file__).resolve().parents[1])
        code = f"import sys; sys.path.insert(0, {root!r}); from lab.inject import main; sys.exit(main(['--serve']))"
        self.node = node
        self.timeout = timeout
        self._ready = False
        self._proc = backend.popen(
            node,
            [sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )

    def _answer(self) -> str:
        import select

        from lab.mininet.topo import MininetCommandError

        assert self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], self.timeout)
        line = self._proc.stdout.readline() if ready else ""
        if not line:
            raise MininetCommandError(f"{self.node}: the packet sender did not answer (exit {self._proc.poll()})")
        return line.strip()

    def send(
        self, packet: Any, *, interface: str | None = None, next_hop: str | None = None, next_hop_mac: str | None = None
    ) -> None:
        """Send ``packet``; with ``interface`` and ``next_hop`` (an address on that link) it goes
        to that neighbour's MAC address whatever the routes say, as the simulator sends a packet
        injected on a named interface to the link's other end. ``next_hop_mac``, when the caller
        knows it, spares asking the neighbour (an ARP or ND exchange, slow on a loaded machine)."""
        from lab.mininet.topo import MininetCommandError

        raw = packet_bytes(packet)
        if not self._ready:
            if (answer := self._answer()) != "ready":
                raise MininetCommandError(f"{self.node}: the packet sender failed to start: {answer}")
            self._ready = True
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(f"{raw.hex()} {interface or '-'} {next_hop or '-'} {next_hop_mac or '-'}\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise MininetCommandError(f"{self.node}: the packet sender is gone: {exc}") from None
        if (answer := self._answer()) != "ok":
            raise MininetCommandError(f"{self.node}: {answer}")

    def close(self) -> None:
        import contextlib
        import subprocess

        with contextlib.suppress(OSError, ValueError):
            if self._proc.stdin is not None:
                self._proc.stdin.close()
        try:
            self._proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        with contextlib.suppress(OSError, ValueError):
            if self._proc.stdout is not None:
                self._proc.stdout.close()


def _serve() -> int:
    """Send the packets given on stdin, one ``HEX IFACE NEXTHOP [MAC]`` line each (``-``: the kernel's
    route; MAC: the next hop's, when known); answer ``ready`` once, then ``ok`` or ``error: ...`` per line."""
    try:
        import scapy.layers.inet  # noqa: F401 - imported up front, not on the first packet
        import scapy.layers.inet6  # noqa: F401
        import scapy.sendrecv  # noqa: F401
    except ImportError:
        print("error: Scapy is not installed (pip install scapy)", flush=True)
        return 2
    print("ready", flush=True)
    for line in sys.stdin:
        parts = line.split()
        if not parts:
            continue
        try:
            raw = packet_bytes(bytes.fromhex(parts[0]))
            iface = parts[1] if len(parts) > 1 and parts[1] != "-" else None
            next_hop = parts[2] if len(parts) > 2 and parts[2] != "-" else None
            mac = parts[3] if len(parts) > 3 and parts[3] != "-" else None
            _send_with_scapy(raw, iface, next_hop, mac)
        except (ValueError, OSError) as exc:
            print(f"error: {exc}", flush=True)
            continue
        print("ok", flush=True)
    return 0


NEIGHBOUR_ATTEMPTS = 5  # ARP/ND requests before giving up on a next hop (each waits NEIGHBOUR_WAIT_S)
NEIGHBOUR_WAIT_S = 1.0
_neighbours: dict[tuple[str, str], str] = {}


def _neighbour_mac(iface: str, next_hop: str, ipv4: bool) -> str:
    """The MAC address of ``next_hop`` on ``iface``, asked at most NEIGHBOUR_ATTEMPTS times (a
    loaded machine answers late) and remembered. Raises OSError when nobody answered."""
    if (iface, next_hop) in _neighbours:
        return _neighbours[(iface, next_hop)]
    from scapy.layers.inet6 import getmacbyip6
    from scapy.layers.l2 import getmacbyip

    for _ in range(NEIGHBOUR_ATTEMPTS):
        mac = getmacbyip(next_hop) if ipv4 else getmacbyip6(next_hop)
        if mac is not None and mac != "ff:ff:ff:ff:ff:ff":
            _neighbours[(iface, next_hop)] = mac
            return mac
    raise OSError(f"no neighbour answered for {next_hop} on {iface} ({NEIGHBOUR_ATTEMPTS} requests)")


def _send_with_scapy(raw: bytes, iface: str | None, next_hop: str | None = None, mac: str | None = None) -> None:
    """Raises OSError when it cannot be sent (no answer from ``next_hop``, a bad interface)."""
    from scapy.layers.inet import IP
    from scapy.layers.inet6 import IPv6
    from scapy.sendrecv import send

    pkt = IP(raw) if raw[0] >> 4 == 4 else IPv6(raw)
    if iface is not None and next_hop is not None:
        from scapy.layers.l2 import Ether
        from scapy.sendrecv import sendp

        mac = mac or _neighbour_mac(iface, next_hop, raw[0] >> 4 == 4)
        sendp(Ether(dst=mac) / pkt, iface=iface, verbose=False)
        return
    kwargs: dict[str, Any] = {"verbose": False}
    if iface is not None:
        kwargs["iface"] = iface
    send(pkt, **kwargs)


def main(argv: list[str] | None = None) -> int:
    """``python -m lab.inject HEX [--iface NAME]``: send one IP packet from this network namespace."""
    p = argparse.ArgumentParser(prog="python -m lab.inject", description="send one raw IP packet with Scapy")
    p.add_argument("packet", nargs="?", help="the IP packet as hex")
    p.add_argument("--iface")
    p.add_argument("--serve", action="store_true", help="send the packets read from stdin (HEX IFACE lines)")
    args = p.parse_args(argv)
    if args.serve:
        return _serve()
    if args.packet is None:
        p.error("give the packet as hex, or --serve")
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
