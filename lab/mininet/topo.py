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
  ``queue_packets`` as the HTB leaf. Delay and loss need sch_netem; without it
  :func:`plan_links` raises ConfigError rather than ignore them.
* Checksum and segmentation offloads are off (by default), so what crosses a
  veth, and what tcpdump captures, are real MTU-sized packets with valid
  checksums, as they would be on a wire.

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
NONE_REQUESTED = "none requested"
DEFAULT_COMMAND_TIMEOUT_S = 30.0


class MininetCommandError(LabError):
    """A command that configures a Mininet node failed or timed out."""


@dataclass(frozen=True, slots=True)
class LinkPlan:
    """How one link's properties are realised: human-readable ``realisation``
    (what the trace and the CLI show) and the ``tc -batch`` lines per interface."""

    link: str
    realisation: dict[str, str]
    tc: dict[str, list[str]] = field(default_factory=dict)


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


def plan_links(spec: TopologySpec, *, netem: bool | None = None) -> dict[str, LinkPlan]:
    """How each link of ``spec`` will be realised. ``netem`` says whether sch_netem
    exists (probed with :func:`netem_available` when None, and only if some link
    asks for delay or loss).

    Raises ConfigError, before anything is built, when a link asks for delay or
    loss and the kernel has no sch_netem (this slice has no user-space link
    emulator yet), or when an interface name is too long for Linux.
    """
    for iface in spec.interfaces.values():
        if len(iface.name) > IFNAMSIZ:
            raise ConfigError(
                f"interface {iface.name} is longer than Linux's {IFNAMSIZ} characters; "
                "use node names of at most 8 characters with the Mininet backend"
            )
    needs_netem = [name for name, link in spec.links.items() if link.delay_ms > 0 or link.loss_pct > 0]
    if needs_netem:
        if netem is None:
            netem = netem_available()
        if not netem:
            first = spec.links[needs_netem[0]]
            asked = " and ".join(
                f"{attr}={value:g}"
                for attr, value in (("delay_ms", first.delay_ms), ("loss_pct", first.loss_pct))
                if value > 0
            )
            more = f" (and {len(needs_netem) - 1} more link(s))" if len(needs_netem) > 1 else ""
            raise ConfigError(
                f"link {first.name}{more}: {asked} needs sch_netem, which this kernel lacks, or the user-space "
                "link emulator (not yet available); set delay_ms=0 and loss_pct=0, or use --backend sim"
            )
    plans: dict[str, LinkPlan] = {}
    for name, link in spec.links.items():
        a, b = _ends(spec, name)
        netem_args = _netem_args(link.delay_ms, link.loss_pct)
        frame_bytes = link.mtu_bytes + ETHERNET_HEADER_BYTES
        lines: list[str] = []
        realisation = {
            "bw": NONE_REQUESTED,
            "delay": NONE_REQUESTED if link.delay_ms == 0 else f"netem delay {link.delay_ms:g}ms",
            "loss": NONE_REQUESTED if link.loss_pct == 0 else f"netem loss {link.loss_pct:g}%",
            "queue": "none (an unshaped veth never queues)",
            "mtu": f"{link.mtu_bytes}",
            "where": f"egress of {a.name} and {b.name}",
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
        plans[name] = LinkPlan(name, realisation, tc)
    return plans


@dataclass(slots=True)
class NodeCommands:
    """What configures one node: sysctls, ethtool calls and ``ip``/``tc`` batches."""

    sysctls: list[str] = field(default_factory=list)
    ethtool: list[list[str]] = field(default_factory=list)
    ip4: list[str] = field(default_factory=list)
    ip6: list[str] = field(default_factory=list)
    tc: list[str] = field(default_factory=list)


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
    if disable_offloads:
        out.ethtool += [
            ["ethtool", "-K", i.name, "tx", "off", "tso", "off", "gso", "off", "gro", "off"] for i in ifaces
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
    run_in_node(node, ["sysctl", "-q", "-w", *cmds.sysctls], timeout=timeout)
    for argv in cmds.ethtool:
        run_in_node(node, argv, timeout=timeout)
    _run_batch(node, ["ip", "-4", "-batch", "-"], cmds.ip4, timeout=timeout)
    _run_batch(node, ["ip", "-6", "-batch", "-"], cmds.ip6, timeout=timeout)
    _run_batch(node, ["tc", "-batch", "-"], cmds.tc, timeout=timeout)


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
                configure_node(self, **tcplab)
                # Mininet's own bookkeeping, so that `mn`'s CLI resolves "h1 ping h2"
                for iface in tcplab["spec"].interfaces_of(self.name):
                    intf = self.nameToIntf.get(iface.name)
                    if intf is not None:
                        intf.ip, intf.prefixLen = iface.ipv4, 24
            return result

    return LabNode


def spec_topo(
    spec: TopologySpec,
    plans: dict[str, LinkPlan] | None = None,
    *,
    disable_offloads: bool = True,
    timeout: float = DEFAULT_COMMAND_TIMEOUT_S,
) -> Any:
    """A ``mininet.topo.Topo`` for ``spec``: a host per node, a veth link per spec link.

    Raises ConfigError from :func:`plan_links` when ``plans`` is None.
    """
    from mininet.topo import Topo

    if plans is None:
        plans = plan_links(spec)
    cls = node_class()
    settings = {"spec": spec, "plans": plans, "disable_offloads": disable_offloads, "timeout": timeout}

    class SpecTopo(Topo):
        def build(self) -> None:
            for name in spec.nodes:
                # ip=None: Mininet must not add an address of its own (10.0.0.x/8)
                self.addHost(name, cls=cls, ip=None, tcplab=settings)
            for name in spec.links:
                a, b = _ends(spec, name)
                self.addLink(a.node, b.node, intfName1=a.name, intfName2=b.name)

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
    with the parameters; tuple values are written ``a:b``. A bad parameter, or
    delay/loss on a kernel without sch_netem, prints one line and exits with
    status 2 (SystemExit, which ``mn`` does not turn into its global cleanup).
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
        return spec_topo(spec, plans)

    build.__name__ = f"{name}_topo"
    return build
