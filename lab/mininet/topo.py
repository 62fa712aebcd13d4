"""A topology spec as a Mininet network: veth links, routers as hosts, policy routing, tc shaping.

No Open vSwitch and no controller: every spec link is one veth pair between
two Mininet hosts, named as the spec names its interfaces (``h1-eth0``), and
every node, host or router, is a Mininet ``Host`` in its own network
namespace. Addresses are exactly the spec's (``10.0.i.x/24`` and
``fd00:0:0:i::x/64`` on link ``i``).

* Hosts route by source address, as in the simulator: one routing table per
  interface (a default route via the peer at the other end) selected by
  ``ip rule from ADDR``; the main table's default route leaves by the first
  interface, for sockets not bound to an address. Hosts never forward.
* Routers forward (IPv4 and IPv6) along the spec's destination routes, and its
  source routes become ``ip rule from SRC to DST`` rules that win over them.
* Rate limits are HTB on the egress of both ends of a link (a link's
  ``bw_mbps`` applies in each direction), with a ``pfifo`` of
  ``queue_packets`` as the HTB leaf. Delay and loss are netem (as HTB's leaf)
  when the kernel has sch_netem; otherwise the user-space link emulator
  (:mod:`lab.mininet.linkemu`) realises them on one end of the link (the
  router's, where there is one), for both directions: there the spec's
  interface sits behind an inner veth pair, and the link's own veth end is
  ``lw<k>``. Each link's plan says how each property is realised.
* Checksum and segmentation offloads are off (by default), so what crosses a
  veth, and what tcpdump captures, are real MTU-sized packets with valid
  checksums, as they would be on a wire. (On links with nothing to emulate
  a run then lets the endpoints send GSO frames and, where no capture
  watches, turns GRO on, :mod:`lab.mininet.run`: the kernel merges and cuts
  segments only at the hosts' own edge, never on a link.)

Mininet is imported only inside functions. :func:`mininet_topo` is the hook the
topology modules hand to ``mn --custom`` (their ``topos`` dict).
"""

from __future__ import annotations

import functools
import ipaddress
import math
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lab.errors import ConfigError, LabError
from lab.topology import InterfaceSpec, TopologySpec, build_topology

IFNAMSIZ = 15  # Linux interface names: at most 15 characters
ETHERNET_HEADER_BYTES = 14
HOST_TABLE_BASE = 100  # host interface k: routing table 100 + k, rule priority 1000 + k
HOST_RULE_PRIORITY = 1000
SOURCE_ROUTE_TABLE_BASE = 200  # router interface k: source routes in table 200 + k
SOURCE_RULE_PRIORITY = 500  # source rules come before the host rules and the main table (32766)
EMULATOR_QUEUE_PACKETS = 10_000  # the emulator's delay line on an unshaped link, as netem's default
EMULATOR_NFT_TABLE = "tcplab_linkemu"
NONE_REQUESTED = "none requested"
DEFAULT_COMMAND_TIMEOUT_S = 30.0


class MininetCommandError(LabError):
    """A command that configures a Mininet node failed or timed out."""


@dataclass(frozen=True, slots=True)
class EmulatorPlan:
    """The user-space link emulator of one link: it runs in ``node`` and forwards
    between ``wire`` (the link's veth end, towards ``peer_interface``) and
    ``inner`` (the peer of the spec interface ``interface``)."""

    link: str
    node: str
    interface: str
    peer_interface: str
    wire: str
    inner: str
    delay_ms: float
    loss_pct: float
    seed: int
    limit_packets: int
    jitter_ms: float = 0.0

    def argv(self, python: str) -> list[str]:
        """The emulator's command line, run with interpreter ``python``."""
        jitter = ["--jitter-ms", f"{self.jitter_ms:g}"] if self.jitter_ms else []
        return [
            python,
            "-m",
            "lab.mininet.linkemu",
            "--wire",
            self.wire,
            "--inner",
            self.inner,
            "--delay-ms",
            f"{self.delay_ms:g}",
            "--loss-pct",
            f"{self.loss_pct:g}",
            "--seed",
            str(self.seed),
            "--limit-packets",
            str(self.limit_packets),
            *jitter,
        ]


@dataclass(frozen=True, slots=True)
class LinkPlan:
    """How one link's properties are realised: human-readable ``realisation``
    (what the trace and the CLI show), ``methods`` (per property: ``htb``,
    ``netem``, ``user-space`` or ``none``), the ``tc -batch`` lines per
    interface and the user-space ``emulator``, if any."""

    link: str
    realisation: dict[str, str]
    tc: dict[str, list[str]] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    emulator: EmulatorPlan | None = None


@functools.cache
def netem_available() -> bool:
    """Whether this kernel has sch_netem: tries a netem qdisc on the loopback of a
    throwaway network namespace (``unshare --net``), which vanishes with the probe."""
    unshare, tc = shutil.which("unshare"), shutil.which("tc")
    if unshare is None or tc is None:
        return False
    try:
        proc = subprocess.run(
            [unshare, "--net", tc, "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"],
            capture_output=True,
            timeout=15,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return proc.returncode == 0


def _ends(spec: TopologySpec, link: str) -> tuple[InterfaceSpec, InterfaceSpec]:
    lspec = spec.links[link]
    ends = [i for i in spec.interfaces.values() if i.link == link]
    a = next(i for i in ends if i.node == lspec.a)
    b = next(i for i in ends if i.node == lspec.b and i is not a)
    return a, b


def _netem_args(delay_ms: float, loss_pct: float) -> str:
    parts = []
    if delay_ms > 0:
        parts.append(f"delay {delay_ms:g}ms")
    if loss_pct > 0:
        parts.append(f"loss {loss_pct:g}%")
    return " ".join(parts)


def _emulated_end(spec: TopologySpec, link: str) -> tuple[InterfaceSpec, InterfaceSpec]:
    """(the end whose node runs the link's emulator, the other end): a router's end
    where there is one (``b`` when both are routers, or neither)."""
    a, b = _ends(spec, link)
    if spec.nodes[b.node].kind == "router" or spec.nodes[a.node].kind != "router":
        return b, a
    return a, b


def emulator_names(spec: TopologySpec, iface: InterfaceSpec) -> tuple[str, str]:
    """(wire, inner) interface names of an emulated interface: ``lw<k>``, ``li<k>``
    with ``k`` its index on its node (short, unique within the node's namespace)."""
    k = [i.name for i in spec.interfaces_of(iface.node)].index(iface.name)
    return f"lw{k}", f"li{k}"


def plan_links(spec: TopologySpec, *, netem: bool | None = None, seed: int = 1) -> dict[str, LinkPlan]:
    """How each link of ``spec`` will be realised. ``netem`` says whether sch_netem
    exists (probed with :func:`netem_available` when None, and only if some link
    asks for delay or loss); without it the user-space emulator realises delay
    and loss, its random loss seeded from ``seed`` and the link's index. A link with
    ``jitter_ms`` is always the emulator's: netem's jitter reorders packets, the
    emulator keeps their order.

    Raises ConfigError, before anything is built, when an interface name is too
    long for Linux.
    """
    for iface in spec.interfaces.values():
        if len(iface.name) > IFNAMSIZ:
            raise ConfigError(
                f"interface {iface.name} is longer than Linux's {IFNAMSIZ} characters; "
                "use node names of at most 8 characters with the Mininet backend"
            )
    needs_netem = [name for name, link in spec.links.items() if link.delay_ms > 0 or link.loss_pct > 0]
    if needs_netem and netem is None:
        netem = netem_available()
    # jitter that keeps packet order: the user-space emulator's (netem's jitter reorders)
    jittered = {name for name, link in spec.links.items() if link.jitter_ms > 0}
    plans: dict[str, LinkPlan] = {}
    for index, (name, link) in enumerate(spec.links.items(), 1):
        a, b = _ends(spec, name)
        frame_bytes = link.mtu_bytes + ETHERNET_HEADER_BYTES
        if (name in needs_netem and not netem) or name in jittered:
            plans[name] = _plan_emulated(spec, name, seed=seed * 1000 + index)
            continue
        netem_args = _netem_args(link.delay_ms, link.loss_pct)
        lines: list[str] = []
        realisation = {
            "bw": NONE_REQUESTED,
            "delay": NONE_REQUESTED if link.delay_ms == 0 else f"netem delay {link.delay_ms:g}ms",
            "loss": NONE_REQUESTED if link.loss_pct == 0 else f"netem loss {link.loss_pct:g}%",
            "queue": "none (an unshaped veth never queues)",
            "mtu": f"{link.mtu_bytes}",
            "where": f"egress of {a.name} and {b.name}",
        }
        methods = {
            "bw": "none" if link.bw_mbps is None else "htb",
            "delay": "none" if link.delay_ms == 0 else "netem",
            "loss": "none" if link.loss_pct == 0 else "netem",
        }
        if link.bw_mbps is not None:
            # HTB's bucket holds at least two full frames, or 2 ms at the link rate
            burst = max(2 * frame_bytes, math.ceil(link.bw_mbps * 1e6 / 8 * 0.002))
            htb = f"htb rate {link.bw_mbps:g}mbit burst {burst}b"
            realisation["bw"] = htb
            lines += [
                "qdisc add dev {dev} root handle 1: htb default 1",
                (
                    f"class add dev {{dev}} parent 1: classid 1:1 htb rate {link.bw_mbps:g}mbit "
                    f"ceil {link.bw_mbps:g}mbit burst {burst} cburst {burst}"
                ),
            ]
            if netem_args:
                # netem as HTB's leaf holds the queue and the packets in flight over the delay
                in_flight = math.ceil(link.bw_mbps * 1e6 / 8 * link.delay_ms / 1000 / frame_bytes)
                limit = link.queue_packets + in_flight + 1
                lines.append(f"qdisc add dev {{dev}} parent 1:1 handle 10: netem {netem_args} limit {limit}")
                realisation["queue"] = f"netem limit {limit} packets (htb leaf: queue {link.queue_packets} + in flight)"
            else:
                lines.append(f"qdisc add dev {{dev}} parent 1:1 handle 10: pfifo limit {link.queue_packets}")
                realisation["queue"] = f"pfifo limit {link.queue_packets} packets (htb leaf)"
        elif netem_args:
            limit = max(link.queue_packets, 10_000)
            lines.append(f"qdisc add dev {{dev}} root handle 10: netem {netem_args} limit {limit}")
            realisation["queue"] = f"netem limit {limit} packets (unshaped: only the delay line)"
        tc = {iface.name: [line.format(dev=iface.name) for line in lines] for iface in (a, b)} if lines else {}
        plans[name] = LinkPlan(name, realisation, tc, methods)
    return plans


def _htb_lines(bw_mbps: float, frame_bytes: int) -> tuple[str, list[str]]:
    # HTB's bucket holds at least two full frames, or 2 ms at the link rate
    burst = max(2 * frame_bytes, math.ceil(bw_mbps * 1e6 / 8 * 0.002))
    lines = [
        "qdisc add dev {dev} root handle 1: htb default 1",
        f"class add dev {{dev}} parent 1: classid 1:1 htb rate {bw_mbps:g}mbit ceil {bw_mbps:g}mbit "
        f"burst {burst} cburst {burst}",
    ]
    return f"htb rate {bw_mbps:g}mbit burst {burst}b", lines


def _plan_emulated(spec: TopologySpec, name: str, *, seed: int) -> LinkPlan:
    """Delay and loss by the user-space emulator at one end; the rate (if any) by HTB."""
    link = spec.links[name]
    end, other = _emulated_end(spec, name)
    wire, inner = emulator_names(spec, end)
    frame_bytes = link.mtu_bytes + ETHERNET_HEADER_BYTES
    where = f"on {end.node} between {wire} and {inner}, each direction"
    realisation = {
        "bw": NONE_REQUESTED,
        "delay": NONE_REQUESTED if link.delay_ms == 0 else f"user-space delay {link.delay_ms:g}ms ({where})",
        "loss": NONE_REQUESTED if link.loss_pct == 0 else f"user-space loss {link.loss_pct:g}% seeded ({where})",
        **({"jitter": f"user-space jitter 0-{link.jitter_ms:g}ms, order kept ({where})"} if link.jitter_ms else {}),
        "queue": "none (an unshaped veth never queues)",
        "mtu": f"{link.mtu_bytes}",
        "where": f"egress of {other.name} and {end.name}; {end.name} behind {inner}, the link's end is {wire}",
    }
    methods = {
        "bw": "none" if link.bw_mbps is None else "htb",
        "delay": "none" if link.delay_ms == 0 else "user-space",
        "loss": "none" if link.loss_pct == 0 else "user-space",
        **({"jitter": "user-space"} if link.jitter_ms else {}),
    }
    lines: list[str] = []
    if link.bw_mbps is not None:
        realisation["bw"], lines = _htb_lines(link.bw_mbps, frame_bytes)
        lines.append(f"qdisc add dev {{dev}} parent 1:1 handle 10: pfifo limit {link.queue_packets}")
        realisation["queue"] = f"pfifo limit {link.queue_packets} packets (htb leaf)"
        in_flight = math.ceil(link.bw_mbps * 1e6 / 8 * link.delay_ms / 1000 / frame_bytes)
        limit = link.queue_packets + in_flight + 1
    else:
        limit = max(link.queue_packets, EMULATOR_QUEUE_PACKETS)
    realisation["queue"] += f"; delay line {limit} packets"
    tc = {iface.name: [line.format(dev=iface.name) for line in lines] for iface in (other, end)} if lines else {}
    emulator = EmulatorPlan(
        link=name,
        node=end.node,
        interface=end.name,
        peer_interface=other.name,
        wire=wire,
        inner=inner,
        delay_ms=link.delay_ms,
        loss_pct=link.loss_pct,
        seed=seed,
        limit_packets=limit,
        jitter_ms=link.jitter_ms,
    )
    return LinkPlan(name, realisation, tc, methods, emulator)


def link_interface_name(spec: TopologySpec, plans: dict[str, LinkPlan], iface: InterfaceSpec) -> str:
    """The name of ``iface``'s veth end on its link: the spec name, or ``lw<k>`` where an
    emulator sits in front of it."""
    emulator = plans[iface.link].emulator if iface.link in plans else None
    if emulator is not None and emulator.interface == iface.name:
        return emulator.wire
    return iface.name


@dataclass(slots=True)
class NodeCommands:
    """What configures one node: ``ip -batch`` lines that make links, sysctls,
    ethtool calls, ``ip``/``tc`` batches and an ``nft -f`` script."""

    links: list[str] = field(default_factory=list)
    sysctls: list[str] = field(default_factory=list)
    ethtool: list[list[str]] = field(default_factory=list)
    ip4: list[str] = field(default_factory=list)
    ip6: list[str] = field(default_factory=list)
    tc: list[str] = field(default_factory=list)
    nft: list[str] = field(default_factory=list)


def _network(address: str) -> str:
    prefix = 24 if ipaddress.ip_address(address).version == 4 else 64
    return str(ipaddress.ip_interface(f"{address}/{prefix}").network)


def _host_route(address: str) -> str:
    return f"{address}/{32 if ipaddress.ip_address(address).version == 4 else 128}"


def node_commands(
    spec: TopologySpec, node: str, plans: dict[str, LinkPlan], *, disable_offloads: bool = True
) -> NodeCommands:
    """The commands that give ``node`` its addresses, routes, rules and qdiscs."""
    out = NodeCommands()
    router = spec.nodes[node].kind == "router"
    ifaces = spec.interfaces_of(node)
    emulators = [p.emulator for p in plans.values() if p.emulator is not None and p.emulator.node == node]
    # frames an emulator forwards must be real packets with valid checksums: offloads off
    # at both ends of an emulated link, whatever ``disable_offloads`` says
    forced_offloads_off = {e.interface for e in emulators} | {
        p.emulator.peer_interface for p in plans.values() if p.emulator is not None
    }
    for e in emulators:
        mtu = spec.links[e.link].mtu_bytes
        out.links.append(f"link add {e.interface} type veth peer name {e.inner}")
        out.sysctls += [f"net.ipv6.conf.{e.wire}.disable_ipv6=1", f"net.ipv6.conf.{e.inner}.disable_ipv6=1"]
        out.ethtool += [
            ["ethtool", "-K", name, "tx", "off", "tso", "off", "gso", "off", "gro", "off"] for name in (e.wire, e.inner)
        ]
        for name in (e.wire, e.inner):
            out.ip4 += [f"link set dev {name} mtu {mtu}", f"link set dev {name} up"]
    if emulators:
        # the kernel never handles a frame on an emulator's veth ends (AF_PACKET sees them first)
        out.nft.append(f"table netdev {EMULATOR_NFT_TABLE} {{")
        for e in emulators:
            for name in (e.wire, e.inner):
                out.nft.append(
                    f'  chain {name} {{ type filter hook ingress device "{name}" priority 0; policy drop; }}'
                )
        out.nft.append("}")
    forwarding = "1" if router else "0"
    out.sysctls += [
        f"net.ipv4.ip_forward={forwarding}",
        f"net.ipv6.conf.all.forwarding={forwarding}",
        "net.ipv4.conf.all.rp_filter=0",  # paths may be asymmetric (h1 -> r2 -> h2 -> r1 -> h1)
        "net.ipv4.conf.default.rp_filter=0",
    ]
    out.sysctls += [f"net.ipv4.conf.{i.name}.rp_filter=0" for i in ifaces]
    # no duplicate address detection: a tentative link-local address holds back IPv6
    # neighbour discovery for about a second after the link comes up
    out.sysctls += ["net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0"]
    out.sysctls += [f"net.ipv6.conf.{i.name}.accept_dad=0" for i in ifaces]
    out.ethtool += [
        ["ethtool", "-K", i.name, "tx", "off", "tso", "off", "gso", "off", "gro", "off"]
        for i in ifaces
        if disable_offloads or i.name in forced_offloads_off
    ]
    for i in ifaces:
        mtu = spec.links[i.link].mtu_bytes
        out.ip4 += [
            f"link set dev {i.name} down",  # up again below: a new link-local address, without DAD
            f"link set dev {i.name} mtu {mtu}",
            f"link set dev {i.name} up",
            f"addr add {i.ipv4}/24 dev {i.name}",
        ]
        out.ip6.append(f"addr add {i.ipv6}/64 dev {i.name} nodad")
    if not router:
        for k, i in enumerate(ifaces):
            table = HOST_TABLE_BASE + k
            for lines, addr, peer, default in (
                (out.ip4, i.ipv4, i.peer_ipv4, "0.0.0.0/0"),
                (out.ip6, i.ipv6, i.peer_ipv6, "::/0"),
            ):
                lines += [
                    f"route add {_network(addr)} dev {i.name} table {table}",
                    f"route add {default} via {peer} dev {i.name} table {table}",
                    f"rule add from {addr} table {table} priority {HOST_RULE_PRIORITY + k}",
                ]
        if ifaces:
            first = ifaces[0]
            out.ip4.append(f"route add 0.0.0.0/0 via {first.peer_ipv4} dev {first.name}")
            out.ip6.append(f"route add ::/0 via {first.peer_ipv6} dev {first.name}")
    else:
        index = {i.name: k for k, i in enumerate(ifaces)}
        seen: set[tuple[str | None, str]] = set()
        rule = 0
        for route in spec.routes:
            if route.node != node:
                continue
            key = (route.src, route.dst)
            if key in seen:  # the first route for a destination wins, as in the simulator
                continue
            seen.add(key)
            iface = spec.interfaces[route.interface]
            v4 = ipaddress.ip_address(route.dst).version == 4
            lines = out.ip4 if v4 else out.ip6
            peer = iface.peer_ipv4 if v4 else iface.peer_ipv6
            via = "" if route.dst == peer else f" via {peer}"
            if route.src is None:
                lines.append(f"route add {_host_route(route.dst)}{via} dev {iface.name}")
            else:
                table = SOURCE_ROUTE_TABLE_BASE + index[iface.name]
                lines += [
                    f"route add {_host_route(route.dst)}{via} dev {iface.name} table {table}",
                    (
                        f"rule add from {_host_route(route.src)} to {_host_route(route.dst)} "
                        f"table {table} priority {SOURCE_RULE_PRIORITY + rule}"
                    ),
                ]
                rule += 1
    for i in ifaces:
        out.tc += plans[i.link].tc.get(i.name, [])
    return out


def run_in_node(
    node: Any, argv: Sequence[str], *, input: str | None = None, timeout: float = DEFAULT_COMMAND_TIMEOUT_S
) -> str:
    """Run ``argv`` inside Mininet node ``node`` and return its stdout.

    Raises MininetCommandError naming the node and command when it exits
    non-zero or outlives ``timeout`` seconds (it is then killed).
    """
    proc = node.popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise MininetCommandError(f"{node.name}: {' '.join(argv)} timed out after {timeout:g} s") from None
    if proc.returncode != 0:
        detail = " / ".join(line.strip() for line in (err or out).strip().splitlines()[-3:])
        raise MininetCommandError(f"{node.name}: {' '.join(argv)} failed (exit {proc.returncode}): {detail}")
    return out


def _run_batch(node: Any, argv: list[str], lines: list[str], *, timeout: float) -> None:
    if not lines:
        return
    try:
        run_in_node(node, argv, input="\n".join(lines) + "\n", timeout=timeout)
    except MininetCommandError as exc:
        # "Command failed -:N" names the batch line; show that line itself
        text = str(exc)
        marker = "Command failed -:"
        if marker in text:
            try:
                lineno = int(text.split(marker, 1)[1].split()[0].strip(" /"))
                text += f" [line: {lines[lineno - 1]}]"
            except (ValueError, IndexError):
                pass
        raise MininetCommandError(text) from None


def configure_node(
    node: Any,
    spec: TopologySpec,
    plans: dict[str, LinkPlan],
    *,
    disable_offloads: bool = True,
    timeout: float = DEFAULT_COMMAND_TIMEOUT_S,
) -> None:
    """Give Mininet node ``node`` its spec configuration. Raises MininetCommandError."""
    cmds = node_commands(spec, node.name, plans, disable_offloads=disable_offloads)
    _run_batch(node, ["ip", "-batch", "-"], cmds.links, timeout=timeout)
    run_in_node(node, ["sysctl", "-q", "-w", *cmds.sysctls], timeout=timeout)
    for argv in cmds.ethtool:
        run_in_node(node, argv, timeout=timeout)
    _run_batch(node, ["ip", "-4", "-batch", "-"], cmds.ip4, timeout=timeout)
    _run_batch(node, ["ip", "-6", "-batch", "-"], cmds.ip6, timeout=timeout)
    _run_batch(node, ["tc", "-batch", "-"], cmds.tc, timeout=timeout)
    if cmds.nft:
        run_in_node(node, ["nft", "-f", "-"], input="\n".join(cmds.nft) + "\n", timeout=timeout)


@functools.cache
def node_class() -> type:
    """The Mininet host class of every node (host or router): it configures itself
    from the spec in ``config()``, as Mininet's own router examples do."""
    from mininet.node import Host

    class LabNode(Host):
        """A Mininet host configured from a tcplab topology spec."""

        def config(self, tcplab: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
            result = super().config(**params)
            if tcplab is not None:
                settings = dict(tcplab)
                start = settings.pop("start_emulators", False)
                configure_node(self, **settings)
                if start:
                    start_emulators_in_shell(self, settings["plans"], timeout=settings["timeout"])
                # Mininet's own bookkeeping, so that `mn`'s CLI resolves "h1 ping h2"
                for iface in tcplab["spec"].interfaces_of(self.name):
                    intf = self.nameToIntf.get(iface.name)
                    if intf is not None:
                        intf.ip, intf.prefixLen = iface.ipv4, 24
            return result

    return LabNode


def start_emulators_in_shell(node: Any, plans: dict[str, LinkPlan], *, timeout: float) -> None:
    """Start the link emulators planned for ``node`` as background jobs of its shell
    (``mn --custom``: Mininet's SIGHUP to the shell's process group stops them) and
    wait until each forwards. Raises MininetCommandError."""
    import os
    import shlex
    import tempfile
    import time

    for plan in plans.values():
        emulator = plan.emulator
        if emulator is None or emulator.node != node.name:
            continue
        fd, log = tempfile.mkstemp(prefix=f"tcplab-linkemu-{node.name}-{emulator.wire}-", suffix=".log")
        os.close(fd)
        try:
            command = " ".join(shlex.quote(arg) for arg in emulator.argv(sys.executable))
            node.cmd(f"{command} > {shlex.quote(log)} 2>&1 &")
            deadline = time.monotonic() + timeout
            while True:
                with open(log, encoding="utf-8", errors="replace") as fh:
                    text = fh.read()
                if '"ready"' in text:
                    break
                if '"error"' in text or time.monotonic() > deadline:
                    raise MininetCommandError(
                        f"{node.name}: the link emulator of {plan.link} did not start: {text[-300:]}"
                    )
                time.sleep(0.05)
        finally:
            os.unlink(log)  # the emulator keeps writing to the unlinked file; nothing is left behind


def spec_topo(
    spec: TopologySpec,
    plans: dict[str, LinkPlan] | None = None,
    *,
    disable_offloads: bool = True,
    timeout: float = DEFAULT_COMMAND_TIMEOUT_S,
    start_emulators: bool = False,
) -> Any:
    """A ``mininet.topo.Topo`` for ``spec``: a host per node, a veth link per spec link.
    ``start_emulators`` has each node start its link emulators itself (for ``mn
    --custom``; the backend starts and tracks them instead).

    Raises ConfigError from :func:`plan_links` when ``plans`` is None.
    """
    from mininet.topo import Topo

    if plans is None:
        plans = plan_links(spec)
    cls = node_class()
    settings = {
        "spec": spec,
        "plans": plans,
        "disable_offloads": disable_offloads,
        "timeout": timeout,
        "start_emulators": start_emulators,
    }

    class SpecTopo(Topo):
        def build(self) -> None:
            for name in spec.nodes:
                # ip=None: Mininet must not add an address of its own (10.0.0.x/8)
                self.addHost(name, cls=cls, ip=None, tcplab=settings)
            for name in spec.links:
                a, b = _ends(spec, name)
                self.addLink(
                    a.node,
                    b.node,
                    intfName1=link_interface_name(spec, plans, a),
                    intfName2=link_interface_name(spec, plans, b),
                )

    return SpecTopo()


def _mn_value(value: Any) -> Any:
    """``mn --topo two-paths,delay_ms=0:0`` gives the string "0:0": a tuple of floats."""
    if isinstance(value, str) and any(sep in value for sep in ":/"):
        try:
            return tuple(float(part) for part in value.replace("/", ":").split(":"))
        except ValueError:
            return value
    return value


def mininet_topo(name: str, fn: Callable[..., None]) -> Callable[..., Any]:
    """The constructor a topology module puts in its ``topos`` dict for ``mn --custom``.

    ``mn --custom topologies/two_paths.py --topo two-paths,delay_ms=0:0`` calls it
    with the parameters; tuple values are written ``a:b``. A bad parameter
    prints one line and exits with status 2 (SystemExit, which ``mn`` does not
    turn into its global cleanup). Link emulators run as jobs of their node's shell.
    """

    def build(*args: Any, **params: Any) -> Any:
        from mininet.log import info

        try:
            if args:
                raise ConfigError(f"topology {name}: give parameters as name=value, got {args!r}")
            spec = build_topology(name, fn, **{k: _mn_value(v) for k, v in params.items()})
            plans = plan_links(spec)
        except ConfigError as exc:
            print(f"tcplab: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        for link, plan in plans.items():
            info(f"*** tcplab link {link}: " + ", ".join(f"{k} {v}" for k, v in plan.realisation.items()) + "\n")
        return spec_topo(spec, plans, start_emulators=True)

    build.__name__ = f"{name}_topo"
    return build
