"""Link jitter: each packet's propagation gets a wait drawn from [0, jitter_ms], never overtaking the
packet before it (what breaks drop-tail phase effects in a deterministic simulation)."""

from __future__ import annotations

import pytest

from lab.errors import ConfigError
from lab.sim import SimNetwork
from lab.topology import LinkSpec, TopologyBuilder, build_topology
from topologies import TOPOLOGIES

DELAY_MS = 5.0
JITTER_MS = 2.0


def _arrivals(
    seed: int, *, jitter_ms: float = JITTER_MS, gap_s: float = 0.0005, n: int = 2000
) -> list[tuple[float, int]]:
    t = TopologyBuilder("pair")
    t.link(t.host("h1"), t.host("h2"), delay_ms=DELAY_MS, jitter_ms=jitter_ms)
    net = SimNetwork(t.build(), seed=seed)
    iface = net.interfaces["h1-eth0"]
    got: list[tuple[float, int]] = []
    iface.out.arrive = lambda packet: got.append((net.now, int.from_bytes(packet[:4], "big")))
    sent: dict[int, float] = {}
    for i in range(n):

        def send(i: int = i) -> None:
            sent[i] = net.now
            net.transmit(iface, i.to_bytes(4, "big") + bytes(96))

        net.call_at(i * gap_s, send)
    net.run(until=n * gap_s + 1.0)
    return [(at - sent[i], i) for at, i in got]


def test_order_is_kept_and_each_wait_is_within_the_jitter() -> None:
    got = _arrivals(3)
    assert [i for _, i in got] == list(range(2000))  # nothing overtakes
    delays = [d for d, _ in got]
    assert min(delays) >= DELAY_MS / 1000 - 1e-12
    # a wait is at most the jitter, or what keeps it behind the packet before it
    assert max(delays) <= (DELAY_MS + JITTER_MS) / 1000 + 1e-12
    assert min(delays) < (DELAY_MS + 0.1) / 1000 and max(delays) > (DELAY_MS + 1.9) / 1000


def test_spread_packets_get_uniform_waits() -> None:
    got = _arrivals(4, gap_s=0.01, n=1000)  # far apart: order-keeping never binds
    waits = [d * 1000 - DELAY_MS for d, _ in got]
    assert sum(waits) / len(waits) == pytest.approx(JITTER_MS / 2, abs=0.1)
    assert sum(w < JITTER_MS / 2 for w in waits) == pytest.approx(500, abs=60)


def test_same_seed_same_waits_and_none_without_jitter() -> None:
    assert _arrivals(5, n=200) == _arrivals(5, n=200)
    assert _arrivals(5, n=200) != _arrivals(6, n=200)
    assert {round(d, 12) for d, _ in _arrivals(5, n=200, jitter_ms=0.0)} == {DELAY_MS / 1000}


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf"), "2", True, 20_000.0])
def test_a_bad_jitter_is_a_config_error(bad: object) -> None:
    with pytest.raises(ConfigError, match="jitter_ms"):
        LinkSpec(a="h1", b="r1", jitter_ms=bad)  # type: ignore[arg-type]


def test_the_shared_bottleneck_jitters_its_access_links_by_one_bottleneck_packet() -> None:
    spec = build_topology("shared-bottleneck", TOPOLOGIES["shared-bottleneck"], bw_mbps=10.0)
    jitter = {name: link.jitter_ms for name, link in spec.links.items()}
    assert jitter == {"h1-r1": 1.2, "h1-r1#2": 1.2, "h3-r1": 1.2, "r1-r2": 0.0, "r2-h2": 0.0}
    spec = build_topology("shared-bottleneck", TOPOLOGIES["shared-bottleneck"], jitter_ms=0)
    assert {link.jitter_ms for link in spec.links.values()} == {0.0}
    # topology.json names the jitter only where there is some (other topologies' files stay as they were)
    links = build_topology("shared-bottleneck", TOPOLOGIES["shared-bottleneck"]).to_dict()["links"]
    assert [link.get("jitter_ms") for link in links] == [1.2, 1.2, 1.2, None, None]
