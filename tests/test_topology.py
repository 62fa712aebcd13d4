"""Topology specs: LinkSpec validation, build_topology, addressing, routes and diagrams."""

from __future__ import annotations

import math

import pytest

from lab.errors import ConfigError
from lab.topology import LinkSpec, TopologyBuilder, build_topology, diagram_of
from topologies import TOPOLOGIES
from topologies.single_path import single_path
from topologies.two_paths import two_paths


@pytest.mark.parametrize(
    ("kw", "field", "shown"),
    [
        ({"bw_mbps": 0}, "bw_mbps", "got 0"),
        ({"bw_mbps": -1}, "bw_mbps", "got -1"),
        ({"bw_mbps": 1001}, "bw_mbps", "got 1001"),
        ({"bw_mbps": math.nan}, "bw_mbps", "nan"),
        ({"bw_mbps": math.inf}, "bw_mbps", "inf"),
        ({"bw_mbps": "10"}, "bw_mbps", "'10'"),
        ({"bw_mbps": True}, "bw_mbps", "True"),
        ({"loss_pct": 101}, "loss_pct", "got 101"),
        ({"loss_pct": -0.5}, "loss_pct", "got -0.5"),
        ({"loss_pct": math.nan}, "loss_pct", "nan"),
        ({"delay_ms": -1}, "delay_ms", "got -1"),
        ({"delay_ms": math.inf}, "delay_ms", "inf"),
        ({"delay_ms": 10_001}, "delay_ms", "got 10001"),
        ({"queue_packets": 0}, "queue_packets", "got 0"),
        ({"queue_packets": 2.5}, "queue_packets", "2.5"),
        ({"queue_packets": True}, "queue_packets", "True"),
        ({"mtu_bytes": 1000}, "mtu_bytes", "1000"),
    ],
)
def test_linkspec_rejects_bad_values(kw: dict, field: str, shown: str) -> None:
    with pytest.raises(ConfigError) as info:
        LinkSpec(a="h1", b="r1", **kw)
    message = str(info.value)
    assert message.startswith("link h1-r1: ")
    assert field in message
    assert shown in message
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"bw_mbps": None},
        {"bw_mbps": 0.001},
        {"bw_mbps": 1000},
        {"loss_pct": 0},
        {"loss_pct": 100},
        {"loss_pct": 0.5},
        {"delay_ms": 0},
        {"delay_ms": 10_000},
        {"queue_packets": 1},
        {"mtu_bytes": 9000},
    ],
)
def test_linkspec_accepts_edges(kw: dict) -> None:
    spec = LinkSpec(a="h1", b="r1", **kw)
    for key, value in kw.items():
        assert getattr(spec, key) == value


def test_link_rejects_unknown_keyword() -> None:
    t = TopologyBuilder()
    t.host("h1")
    t.router("r1")
    with pytest.raises(ConfigError) as info:
        t.link("h1", "r1", bw=10)
    message = str(info.value)
    assert "unknown keyword(s) bw" in message
    assert "allowed: bw_mbps, delay_ms, jitter_ms, loss_pct, mtu_bytes, queue_packets" in message
    with pytest.raises(ConfigError, match="delay, jitter"):
        t.link("h1", "r1", jitter=1, delay="5ms")


def test_linkspec_itself_has_no_extra_keywords() -> None:
    # LinkSpec is only built by TopologyBuilder.link(), which names the unknown keyword (above);
    # constructed directly, the dataclass refuses it as well
    with pytest.raises(TypeError, match="bw"):
        LinkSpec(a="h1", b="r1", bw=10)


def test_link_rejects_bad_values_through_the_builder() -> None:
    t = TopologyBuilder()
    t.host("h1")
    t.router("r1")
    with pytest.raises(ConfigError, match="bw_mbps must be in"):
        t.link("h1", "r1", bw_mbps=0)
    with pytest.raises(ConfigError, match="unknown node 'h9'"):
        t.link("h1", "h9")
    with pytest.raises(ConfigError, match="cannot link to itself"):
        t.link("h1", "h1")


@pytest.mark.parametrize("name", ["", "has space", "h-1", "a" * 11, 7])
def test_node_names(name) -> None:
    with pytest.raises(ConfigError, match="node name"):
        TopologyBuilder().host(name)


def test_node_defined_twice() -> None:
    t = TopologyBuilder()
    t.host("h1")
    with pytest.raises(ConfigError, match="defined twice"):
        t.router("h1")


def test_build_topology_rejects_unknown_params() -> None:
    with pytest.raises(ConfigError) as info:
        build_topology("single-path", single_path, delay=5, bw_mbps=10)
    message = str(info.value)
    assert message.startswith("topology single-path: unknown parameter(s) delay")
    assert "accepted: delay_ms, bw_mbps, loss_pct, queue_packets" in message


def test_build_topology_turns_bad_values_into_config_errors() -> None:
    with pytest.raises(ConfigError, match="loss_pct must be in"):
        build_topology("single-path", single_path, loss_pct=150)
    with pytest.raises(ConfigError, match="bw_mbps"):
        build_topology("single-path", single_path, bw_mbps=5000)
    with pytest.raises(ConfigError, match=r"topology two-paths: delay_ms takes one number for every path or 2 "):
        build_topology("two-paths", two_paths, delay_ms=(1.0, 2.0, 3.0))
    with pytest.raises(ConfigError, match=r"e\.g\. -p bw_mbps=10 or -p bw_mbps=\(10,5\); got 'fast'"):
        build_topology("two-paths", two_paths, bw_mbps="fast")
    with pytest.raises(ConfigError, match=r"loss_pct takes one number, e\.g\. -p loss_pct=0; got \(1, 2\)"):
        build_topology("single-path", single_path, loss_pct=(1, 2))


def test_one_value_for_a_per_path_parameter_means_every_path() -> None:
    spec = build_topology("two-paths", two_paths, delay_ms=5.0, bw_mbps=8)
    assert {name: (link.delay_ms, link.bw_mbps) for name, link in spec.links.items()} == {
        "h1-r1": (2.5, 8),
        "r1-h2": (2.5, 8),
        "h1-r2": (2.5, 8),
        "r2-h2": (2.5, 8),
    }
    assert spec.params["delay_ms"] == (5.0, 5.0)


def test_single_path_addressing_and_loss_split() -> None:
    spec = build_topology("single-path", single_path, delay_ms=40.0, bw_mbps=5.0, loss_pct=19.0)
    assert spec.hosts() == ["h1", "h2"]
    assert spec.routers() == ["r1"]
    assert list(spec.links) == ["h1-r1", "r1-h2"]
    for link in spec.links.values():
        assert link.delay_ms == 20.0  # one-way end to end, split over two links
        assert link.bw_mbps == 5.0
        # 1 - (1 - p)^2 == 19 %
        assert link.loss_pct == pytest.approx(10.0)
    assert spec.addresses_of("h1") == ["10.0.1.1"]
    assert spec.addresses_of("h2") == ["10.0.2.2"]
    assert spec.params == {"delay_ms": 40.0, "bw_mbps": 5.0, "loss_pct": 19.0}


def test_two_paths_addressing() -> None:
    spec = build_topology("two-paths", two_paths)
    assert spec.name == "two-paths"
    assert list(spec.links) == ["h1-r1", "r1-h2", "h1-r2", "r2-h2"]
    expected = {
        "h1-eth0": ("h1", "h1-r1", "10.0.1.1", "fd00:0:0:1::1", "r1", "10.0.1.2"),
        "r1-eth0": ("r1", "h1-r1", "10.0.1.2", "fd00:0:0:1::2", "h1", "10.0.1.1"),
        "r1-eth1": ("r1", "r1-h2", "10.0.2.1", "fd00:0:0:2::1", "h2", "10.0.2.2"),
        "h2-eth0": ("h2", "r1-h2", "10.0.2.2", "fd00:0:0:2::2", "r1", "10.0.2.1"),
        "h1-eth1": ("h1", "h1-r2", "10.0.3.1", "fd00:0:0:3::1", "r2", "10.0.3.2"),
        "r2-eth0": ("r2", "h1-r2", "10.0.3.2", "fd00:0:0:3::2", "h1", "10.0.3.1"),
        "r2-eth1": ("r2", "r2-h2", "10.0.4.1", "fd00:0:0:4::1", "h2", "10.0.4.2"),
        "h2-eth1": ("h2", "r2-h2", "10.0.4.2", "fd00:0:0:4::2", "r2", "10.0.4.1"),
    }
    assert set(spec.interfaces) == set(expected)
    for name, (node, link, v4, v6, peer, peer_v4) in expected.items():
        iface = spec.interfaces[name]
        assert (iface.node, iface.link, iface.ipv4, iface.ipv6, iface.peer, iface.peer_ipv4) == (
            node,
            link,
            v4,
            v6,
            peer,
            peer_v4,
        )
    assert spec.addresses_of("h1") == ["10.0.1.1", "10.0.3.1"]
    assert spec.addresses_of("h2", family=6) == ["fd00:0:0:2::2", "fd00:0:0:4::2"]
    # path A is 5 ms one-way, split over its two links; path B 20 ms
    assert spec.links["h1-r1"].delay_ms == spec.links["r1-h2"].delay_ms == 2.5
    assert spec.links["h1-r2"].delay_ms == spec.links["r2-h2"].delay_ms == 10.0
    assert spec.links["h1-r1"].bw_mbps == 10.0 and spec.links["h1-r2"].bw_mbps == 5.0


def test_two_paths_routes() -> None:
    spec = build_topology("two-paths", two_paths)
    routes = {(r.node, r.dst): r.interface for r in spec.routes}
    # hosts never transit, so each router reaches both hosts' addresses directly
    for router, to_h1, to_h2 in (("r1", "r1-eth0", "r1-eth1"), ("r2", "r2-eth0", "r2-eth1")):
        for dst in spec.addresses_of("h1") + spec.addresses_of("h1", family=6):
            assert routes[(router, dst)] == to_h1
        for dst in spec.addresses_of("h2") + spec.addresses_of("h2", family=6):
            assert routes[(router, dst)] == to_h2
    # no routes on hosts, none through the other router
    assert {r.node for r in spec.routes} == {"r1", "r2"}
    assert ("r1", "10.0.3.2") not in routes and ("r2", "10.0.1.2") not in routes


def test_routes_through_a_chain_of_routers() -> None:
    t = TopologyBuilder("chain")
    h1, h2 = t.host("h1"), t.host("h2")
    r1, r2 = t.router("r1"), t.router("r2")
    t.link(h1, r1)
    t.link(r1, r2)
    t.link(r2, h2)
    spec = t.build()
    routes = {(r.node, r.dst): r.interface for r in spec.routes}
    assert routes[("r1", "10.0.3.2")] == "r1-eth1"  # h2, via r2
    assert routes[("r2", "10.0.1.1")] == "r2-eth0"  # h1, via r1
    assert routes[("r1", "10.0.2.2")] == "r1-eth1"  # r2's own address, directly


def test_explicit_routes() -> None:
    t = TopologyBuilder()
    t.host("h1")
    t.router("r1")
    t.link("h1", "r1")
    t.route("r1", "192.0.2.1", "r1-eth0")
    spec = t.build()
    assert spec.routes[0].dst == "192.0.2.1"
    t.route("r1", "192.0.2.2", "h1-eth0")
    with pytest.raises(ConfigError, match="not one of its interfaces"):
        t.build()


def test_duplicate_links_get_distinct_names() -> None:
    t = TopologyBuilder()
    t.host("h1")
    t.router("r1")
    t.link("h1", "r1")
    t.link("h1", "r1")
    spec = t.build()
    assert list(spec.links) == ["h1-r1", "h1-r1#2"]
    assert spec.addresses_of("h1") == ["10.0.1.1", "10.0.2.1"]


def test_diagram_of() -> None:
    assert diagram_of(single_path) == "h1 ──── r1 ──── h2"
    assert diagram_of(two_paths) == "h1 ─── r1 ─── h2    path A\n └──── r2 ────┘     path B"

    def no_doc(t) -> None:
        pass

    assert diagram_of(no_doc) == ""
    spec = build_topology("two-paths", two_paths)
    assert spec.diagram == diagram_of(two_paths)


def test_registry() -> None:
    assert TOPOLOGIES["single-path"] is single_path
    assert TOPOLOGIES["two-paths"] is two_paths
    for name, fn in TOPOLOGIES.items():
        spec = build_topology(name, fn)
        assert spec.name == name
        assert spec.diagram
        assert spec.to_dict()["name"] == name
