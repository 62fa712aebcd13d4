"""Topology specs: what topologies are written against, built by the simulator or Mininet.

Every link is a point-to-point subnet: link ``i`` (1-based) gets
``10.0.i.0/24`` and ``fd00:0:0:i::/64``, the first-named end ``.1``/``::1``
and the other ``.2``/``::2``. Interfaces are named Mininet-style
(``h1-eth0``). Hosts route by source address (a packet leaves by the
interface that owns its source address); routers route by destination over
shortest router-only paths, plus any explicit routes.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from lab.errors import ConfigError

MAX_BW_MBPS = 1000.0
MAX_DELAY_MS = 10_000.0
MAX_QUEUE_PACKETS = 100_000


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkSpec:
    """A bidirectional link; ``delay_ms`` is one-way and applies in each direction.

    ``bw_mbps=None`` means unshaped. Raises ConfigError for values Mininet
    would quietly ignore or misread.
    """

    a: str
    b: str
    bw_mbps: float | None = None
    delay_ms: float = 0.0
    loss_pct: float = 0.0
    queue_packets: int = 100
    mtu_bytes: int = 1500
    name: str = ""
    jitter_ms: float = 0.0  # an extra one-way delay drawn uniformly from [0, jitter_ms], order kept

    def __post_init__(self) -> None:
        where = f"link {self.a}-{self.b}"
        for attr in ("delay_ms", "loss_pct", "jitter_ms"):
            value = getattr(self, attr)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"{where}: {attr} must be a finite number, got {value!r}")
        if self.bw_mbps is not None:
            if (
                isinstance(self.bw_mbps, bool)
                or not isinstance(self.bw_mbps, (int, float))
                or not math.isfinite(self.bw_mbps)
            ):
                raise ConfigError(f"{where}: bw_mbps must be a number or None, got {self.bw_mbps!r}")
            if not 0 < self.bw_mbps <= MAX_BW_MBPS:
                raise ConfigError(f"{where}: bw_mbps must be in (0, {MAX_BW_MBPS:g}], got {self.bw_mbps:g}")
        if not 0 <= self.delay_ms <= MAX_DELAY_MS:
            raise ConfigError(f"{where}: delay_ms must be in [0, {MAX_DELAY_MS:g}], got {self.delay_ms:g}")
        if not 0 <= self.jitter_ms <= MAX_DELAY_MS:
            raise ConfigError(f"{where}: jitter_ms must be in [0, {MAX_DELAY_MS:g}], got {self.jitter_ms:g}")
        if not 0 <= self.loss_pct <= 100:
            raise ConfigError(f"{where}: loss_pct must be in [0, 100], got {self.loss_pct:g}")
        if (
            isinstance(self.queue_packets, bool)
            or not isinstance(self.queue_packets, int)
            or not 1 <= self.queue_packets <= MAX_QUEUE_PACKETS
        ):
            raise ConfigError(
                f"{where}: queue_packets must be an integer in [1, {MAX_QUEUE_PACKETS}], got {self.queue_packets!r}"
            )
        if (
            isinstance(self.mtu_bytes, bool)
            or not isinstance(self.mtu_bytes, int)
            or not 1280 <= self.mtu_bytes <= 9000
        ):
            raise ConfigError(f"{where}: mtu_bytes must be an integer in [1280, 9000], got {self.mtu_bytes!r}")


@dataclass(frozen=True, slots=True)
class InterfaceSpec:
    name: str  # "h1-eth0"
    node: str
    link: str  # the link's name
    ipv4: str
    ipv6: str
    peer: str  # the node at the other end
    peer_ipv4: str
    peer_ipv6: str


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    kind: str  # "host" or "router"


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """On ``node``: packets to ``dst`` (an address) leave by ``interface``; with
    ``src`` set, only packets from that source address (a source-based route,
    which wins over destination routes)."""

    node: str
    dst: str
    interface: str
    src: str | None = None


@dataclass(slots=True)
class TopologySpec:
    name: str
    nodes: dict[str, NodeSpec]
    links: dict[str, LinkSpec]
    interfaces: dict[str, InterfaceSpec]
    routes: list[RouteSpec]
    diagram: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    def hosts(self) -> list[str]:
        return [n for n, spec in self.nodes.items() if spec.kind == "host"]

    def routers(self) -> list[str]:
        return [n for n, spec in self.nodes.items() if spec.kind == "router"]

    def interfaces_of(self, node: str) -> list[InterfaceSpec]:
        return [i for i in self.interfaces.values() if i.node == node]

    def addresses_of(self, node: str, *, family: int = 4) -> list[str]:
        return [i.ipv4 if family == 4 else i.ipv6 for i in self.interfaces_of(node)]

    def base_rtt_s(self, a: str, b: str) -> float | None:
        """The round-trip propagation delay between nodes ``a`` and ``b`` over the links of least
        delay (no queueing, no serialization), or None when they are not connected."""
        best = {a: 0.0}
        todo = [(0.0, a)]
        while todo:
            todo.sort()
            delay, node = todo.pop(0)
            if node == b:
                return 2 * delay / 1000.0
            if delay > best.get(node, float("inf")):
                continue
            for link in self.links.values():
                if node not in (link.a, link.b):
                    continue
                other = link.b if node == link.a else link.a
                if delay + link.delay_ms < best.get(other, float("inf")):
                    best[other] = delay + link.delay_ms
                    todo.append((best[other], other))
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "params": self.params,
            "nodes": [{"name": n.name, "kind": n.kind} for n in self.nodes.values()],
            "links": [
                {
                    "name": name,
                    "a": s.a,
                    "b": s.b,
                    "bw_mbps": s.bw_mbps,
                    "delay_ms": s.delay_ms,
                    "loss_pct": s.loss_pct,
                    "queue_packets": s.queue_packets,
                    "mtu_bytes": s.mtu_bytes,
                    **({"jitter_ms": s.jitter_ms} if s.jitter_ms else {}),
                }
                for name, s in self.links.items()
            ],
            "interfaces": [
                {"name": i.name, "node": i.node, "link": i.link, "ipv4": i.ipv4, "ipv6": i.ipv6, "peer": i.peer}
                for i in self.interfaces.values()
            ],
        }


class TopologyBuilder:
    """What topology functions write against."""

    def __init__(self, name: str = "topology") -> None:
        self.name = name
        self._nodes: dict[str, NodeSpec] = {}
        self._links: list[LinkSpec] = []
        self._extra_routes: list[tuple[str, str, str, str | None]] = []

    def _node(self, name: str, kind: str) -> str:
        if not isinstance(name, str) or not name or not name.replace("_", "").isalnum() or len(name) > 10:
            raise ConfigError(f"node name must be 1..10 letters/digits, got {name!r}")
        if name in self._nodes:
            raise ConfigError(f"node {name!r} defined twice")
        self._nodes[name] = NodeSpec(name, kind)
        return name

    def host(self, name: str) -> str:
        return self._node(name, "host")

    def router(self, name: str) -> str:
        return self._node(name, "router")

    def link(self, a: str, b: str, **params: Any) -> LinkSpec:
        """Join ``a`` and ``b``. Raises ConfigError on unknown nodes, keywords or bad values."""
        for n in (a, b):
            if n not in self._nodes:
                raise ConfigError(f"link {a}-{b}: unknown node {n!r}")
        if a == b:
            raise ConfigError(f"link {a}-{b}: a node cannot link to itself")
        allowed = {"bw_mbps", "delay_ms", "jitter_ms", "loss_pct", "queue_packets", "mtu_bytes"}
        unknown = set(params) - allowed
        if unknown:
            raise ConfigError(
                f"link {a}-{b}: unknown keyword(s) {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}"
            )
        if len(self._links) >= 250:
            raise ConfigError("at most 250 links")
        spec = LinkSpec(a=a, b=b, name=f"{a}-{b}", **params)
        if any(link.name == spec.name for link in self._links):
            spec = LinkSpec(a=a, b=b, name=f"{a}-{b}#{len(self._links) + 1}", **params)
        self._links.append(spec)
        return spec

    def route(self, node: str, dst: str, via_interface: str, *, src: str | None = None) -> None:
        """An explicit route on ``node`` (used before computed ones); ``src`` makes it
        source-based. Raises ConfigError for a malformed address."""
        import ipaddress

        for value in (dst, src):
            if value is None:
                continue
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ConfigError(f"route on {node}: {value!r} is not an IP address") from None
        self._extra_routes.append((node, dst, via_interface, src))

    def build(self, *, diagram: str = "", params: dict[str, Any] | None = None) -> TopologySpec:
        interfaces: dict[str, InterfaceSpec] = {}
        counters: dict[str, int] = {n: 0 for n in self._nodes}
        links: dict[str, LinkSpec] = {}
        adjacency: dict[str, list[InterfaceSpec]] = {n: [] for n in self._nodes}
        for index, spec in enumerate(self._links, 1):
            links[spec.name] = spec
            v4 = (f"10.0.{index}.1", f"10.0.{index}.2")
            v6 = (f"fd00:0:0:{index:x}::1", f"fd00:0:0:{index:x}::2")
            ends = ((spec.a, spec.b, 0), (spec.b, spec.a, 1))
            for node, peer, side in ends:
                ifname = f"{node}-eth{counters[node]}"
                counters[node] += 1
                iface = InterfaceSpec(ifname, node, spec.name, v4[side], v6[side], peer, v4[1 - side], v6[1 - side])
                interfaces[ifname] = iface
                adjacency[node].append(iface)
        routes = [RouteSpec(n, d, i, src) for n, d, i, src in self._extra_routes]
        for n, _d, i, _src in self._extra_routes:
            if i not in interfaces or interfaces[i].node != n:
                raise ConfigError(f"route on {n}: {i!r} is not one of its interfaces")
        routes += _shortest_path_routes(self._nodes, adjacency, interfaces)
        return TopologySpec(self.name, dict(self._nodes), links, interfaces, routes, diagram, params or {})


def _shortest_path_routes(
    nodes: dict[str, NodeSpec], adjacency: dict[str, list[InterfaceSpec]], interfaces: dict[str, InterfaceSpec]
) -> list[RouteSpec]:
    """Routers: a route to every address, by BFS through routers only (hosts never transit)."""
    routes: list[RouteSpec] = []
    for router in (n for n, s in nodes.items() if s.kind == "router"):
        first_hop: dict[str, str] = {router: ""}
        queue = deque([router])
        while queue:
            node = queue.popleft()
            for iface in adjacency[node]:
                if iface.peer in first_hop:
                    continue
                first_hop[iface.peer] = first_hop[node] or iface.name
                if nodes[iface.peer].kind == "router":
                    queue.append(iface.peer)
        for iface in interfaces.values():
            if iface.node == router:
                continue
            hop = first_hop.get(iface.node)
            if hop:
                # prefer the direct link when the address sits on one of our own links
                direct = next((i.name for i in adjacency[router] if i.peer_ipv4 == iface.ipv4), None)
                out = direct or hop
                routes.append(RouteSpec(router, iface.ipv4, out))
                routes.append(RouteSpec(router, iface.ipv6, out))
    return routes


def diagram_of(fn: Any) -> str:
    """The ASCII drawing in a topology function's docstring: its second paragraph."""
    import inspect
    import textwrap

    doc = inspect.cleandoc(fn.__doc__ or "")
    paragraphs = [p for p in doc.split("\n\n") if p.strip()]
    if len(paragraphs) < 2:
        return ""
    return textwrap.dedent(paragraphs[1]).rstrip()


def _is_number(value: Any) -> bool:
    """A number, or None (unset: an unshaped link)."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _fit_param(topology: str, key: str, value: Any, default: Any) -> Any:
    """A parameter in the form the topology function takes: one number for a per-path
    parameter (a tuple) means that number on every path. Raises ConfigError naming the
    expected form, with an example, when the value cannot fit."""
    if isinstance(default, tuple) and default and all(_is_number(v) for v in default) and None not in default:
        n = len(default)
        example = f"-p {key}={'(' + ','.join(f'{v:g}' for v in default) + ')'}"
        if _is_number(value):
            return (value,) * n
        if isinstance(value, (tuple, list)) and len(value) == n and all(_is_number(v) for v in value):
            return tuple(value)
        raise ConfigError(
            f"topology {topology}: {key} takes one number for every path or {n} numbers, one per path, "
            f"e.g. -p {key}={default[0]:g} or {example}; got {value!r}"
        )
    if _is_number(default) and default is not None and not _is_number(value):
        raise ConfigError(f"topology {topology}: {key} takes one number, e.g. -p {key}={default:g}; got {value!r}")
    return value


def build_topology(name: str, fn: Any, **params: Any) -> TopologySpec:
    """Run topology function ``fn`` with ``params``. Raises ConfigError on unknown or bad parameters."""
    import inspect

    sig = inspect.signature(fn)
    accepted = [p for p in sig.parameters if p != "t"]
    unknown = set(params) - set(accepted)
    if unknown:
        raise ConfigError(
            f"topology {name}: unknown parameter(s) {', '.join(sorted(unknown))}; accepted: {', '.join(accepted)}"
        )
    params = {key: _fit_param(name, key, value, sig.parameters[key].default) for key, value in params.items()}
    builder = TopologyBuilder(name)
    try:
        fn(builder, **params)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"topology {name}: {exc}") from None
    return builder.build(diagram=diagram_of(fn), params=params)
