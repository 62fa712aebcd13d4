"""Injecting a hand-made IP packet from inside a Mininet host (see :mod:`lab.scenario.inject`).

A sender runs in the host's network namespace (``python -m lab.mininet.inject``)
and writes the packet as an Ethernet frame on an AF_PACKET socket, so no
stack of the host sees it (nor its nftables fence): to the MAC address of the
next hop the caller names, else of the next hop the kernel's routes give for
the destination (``ip route get``). The neighbour's MAC comes from the
caller when it knows it, else from the kernel's neighbour table, asked to
resolve it (a ping) a bounded number of times.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lab.scenario.inject import packet_bytes

ROOT = Path(__file__).resolve().parents[2]
SIOCGIFHWADDR = 0x8927
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
NEIGHBOUR_ATTEMPTS = 5  # resolutions asked before giving up on a next hop (each waits up to NEIGHBOUR_WAIT_S)
NEIGHBOUR_WAIT_S = 1.0
_RESOLVED = ("REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT", "NOARP")


def inject_mininet(
    backend: Any, node: str, packet: Any, *, interface: str | None = None, timeout: float = 20.0
) -> None:
    """Send ``packet`` from inside Mininet node ``node`` (``MininetBackend``).

    ``interface`` defaults to the kernel's route for the destination. Raises
    ValueError for a packet that is not IP, and MininetCommandError when the
    sender fails (no route, no neighbour answered).
    """
    raw = packet_bytes(packet)
    args = [raw.hex()] + (["--iface", interface] if interface is not None else [])
    backend.cmd(node, [sys.executable, "-c", _entry(args)], timeout=timeout)


def _entry(args: list[str]) -> str:
    """``python -c`` code running :func:`main` with ``args`` wherever the node's shell stands."""
    return f"import sys; sys.path.insert(0, {str(ROOT)!r}); from lab.mininet.inject import main; sys.exit(main({args!r}))"


class MininetInjector:
    """A sender kept running inside Mininet node ``node`` (``python -m lab.mininet.inject --serve``),
    so that packets sent during a run leave within milliseconds.

    ``send`` writes one packet and waits for the sender's answer; ``close`` ends it (the backend
    also stops it with the network). Raises ValueError for a packet that is not IP and
    MininetCommandError when the sender failed or did not answer within ``timeout`` seconds.
    """

    def __init__(self, backend: Any, node: str, *, timeout: float = 20.0) -> None:
        self.node = node
        self.timeout = timeout
        self._ready = False
        self._proc = backend.popen(
            node,
            [sys.executable, "-c", _entry(["--serve"])],
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


# --- inside the host's namespace


def _ip(*args: str) -> Any:
    """``ip -j ARGS`` parsed; raises OSError when it fails."""
    proc = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, timeout=10, check=False)
    if proc.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return json.loads(proc.stdout or "[]")


def _route(dst: str, iface: str | None) -> tuple[str, str]:
    """(interface, next hop) the kernel's routes give for ``dst`` (out of ``iface`` when named)."""
    args = ["route", "get", dst] + (["oif", iface] if iface else [])
    routes = _ip(*args)
    if not routes:
        raise OSError(f"no route to {dst}")
    route = routes[0]
    return route["dev"], route.get("gateway", dst)


def _interface_mac(sock: socket.socket, iface: str) -> bytes:
    info = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, struct.pack("256s", iface.encode()[:15]))
    return info[18:24]


_neighbours: dict[tuple[str, str], bytes] = {}


def _neighbour_mac(iface: str, next_hop: str) -> bytes:
    """The MAC address of ``next_hop`` on ``iface`` from the kernel's neighbour table; when it is
    not there, the kernel is asked to resolve it (a ping), at most NEIGHBOUR_ATTEMPTS times (a
    loaded machine answers late), and the answer remembered. Raises OSError when nobody answered."""
    key = (iface, next_hop)
    if key in _neighbours:
        return _neighbours[key]
    ping = ["ping", "-6"] if ":" in next_hop else ["ping"]
    for _ in range(NEIGHBOUR_ATTEMPTS):
        for entry in _ip("neigh", "show", "to", next_hop, "dev", iface):
            if entry.get("lladdr") and any(state in _RESOLVED for state in entry.get("state", [])):
                _neighbours[key] = mac = bytes.fromhex(entry["lladdr"].replace(":", ""))
                return mac
        subprocess.run(
            [*ping, "-c", "1", "-W", str(int(NEIGHBOUR_WAIT_S)), "-I", iface, next_hop],
            capture_output=True,
            timeout=NEIGHBOUR_WAIT_S + 5,
            check=False,
        )
        time.sleep(0.01)  # the neighbour entry is written right after the reply
    raise OSError(f"no neighbour answered for {next_hop} on {iface} ({NEIGHBOUR_ATTEMPTS} requests)")


def send_packet(raw: bytes, iface: str | None, next_hop: str | None = None, mac: str | None = None) -> None:
    """Write ``raw`` (an IP packet) as an Ethernet frame out of this namespace's ``iface`` to
    ``next_hop`` (its MAC ``mac`` when known); without them, where the routes say. Raises OSError
    when it cannot be sent (no route, no answer from the next hop, a bad interface)."""
    v4 = raw[0] >> 4 == 4
    if iface is None or next_hop is None:
        dst = socket.inet_ntop(socket.AF_INET if v4 else socket.AF_INET6, raw[16:20] if v4 else raw[24:40])
        iface, next_hop = _route(dst, iface)
    dst_mac = bytes.fromhex(mac.replace(":", "")) if mac else _neighbour_mac(iface, next_hop)
    ethertype = ETH_P_IP if v4 else ETH_P_IPV6
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype)) as sock:
        sock.bind((iface, 0))
        sock.send(dst_mac + _interface_mac(sock, iface) + ethertype.to_bytes(2, "big") + raw)


def _serve() -> int:
    """Send the packets given on stdin, one ``HEX IFACE NEXTHOP [MAC]`` line each (``-``: the kernel's
    route; MAC: the next hop's, when known); answer ``ready`` once, then ``ok`` or ``error: ...`` per line."""
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
            send_packet(raw, iface, next_hop, mac)
        except (ValueError, OSError, subprocess.SubprocessError) as exc:
            print(f"error: {exc}", flush=True)
            continue
        print("ok", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m lab.mininet.inject HEX [--iface NAME]``: send one IP packet from this network namespace."""
    p = argparse.ArgumentParser(prog="python -m lab.mininet.inject", description="send one raw IP packet")
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
        print(f"lab.mininet.inject: {exc}", file=sys.stderr)
        return 2
    try:
        send_packet(raw, args.iface)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"lab.mininet.inject: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
