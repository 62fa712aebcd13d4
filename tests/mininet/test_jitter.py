"""Link jitter on real packets: the user-space emulator adds a wait drawn from [0, jitter_ms] to
each frame's delay and never lets one overtake the frame before it (netem's jitter reorders)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.mininet import MininetBackend, plan_links
from lab.topology import TopologyBuilder, TopologySpec
from lab.trace import MemoryTracer

pytestmark = pytest.mark.mininet

DELAY_MS = 2.0
JITTER_MS = 4.0


def jitter_spec() -> TopologySpec:
    t = TopologyBuilder("jitter")
    h1, h2, r1 = t.host("h1"), t.host("h2"), t.router("r1")
    t.link(h1, r1, delay_ms=DELAY_MS, jitter_ms=JITTER_MS)  # 10.0.1.0/24
    t.link(r1, h2)  # 10.0.2.0/24
    return t.build()


def test_a_jittered_link_is_the_user_space_emulators_even_with_netem() -> None:
    spec = jitter_spec()
    for netem in (True, False):
        plan = plan_links(spec, netem=netem, seed=2)["h1-r1"]
        assert plan.emulator is not None and plan.emulator.jitter_ms == JITTER_MS
        argv = plan.emulator.argv("python3")
        assert argv[argv.index("--jitter-ms") + 1] == "4"
        assert plan.realisation["jitter"].startswith("user-space jitter 0-4ms, order kept")
        assert plan.methods["jitter"] == "user-space"
    assert plan_links(spec, netem=False)["r1-h2"].emulator is None


@pytest.fixture(scope="module")
def jittered(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MininetBackend]:
    base = tmp_path_factory.mktemp("jitter")
    with MininetBackend(jitter_spec(), tracer=MemoryTracer(), state_dir=base / "state") as net:
        yield net
    assert net.leftovers == []


def _replies(out: str) -> list[tuple[int, float]]:
    rows = []
    for line in out.splitlines():
        if "icmp_seq=" in line and "time=" in line:
            seq = int(line.split("icmp_seq=")[1].split()[0])
            rows.append((seq, float(line.split("time=")[1].split()[0])))
    return rows


def test_round_trips_spread_over_the_jitter_in_order(jittered: MininetBackend, tmp_path: Path) -> None:
    net = jittered
    net.cmd("h1", ["ping", "-n", "-c", "2", "-i", "0.1", "10.0.2.2"], check=False, timeout=30)  # neighbours
    # 2 ms apart: a wait of up to 4 ms each way would reorder them if order were not kept
    out = net.cmd("h1", ["ping", "-n", "-c", "400", "-i", "0.002", "-W", "2", "10.0.2.2"], check=False, timeout=60)
    replies = _replies(out)
    assert len(replies) >= 390, out[-500:]
    seqs = [s for s, _ in replies]
    assert seqs == sorted(seqs), "a reply overtook an earlier one"
    rtts = sorted(r for _, r in replies)
    low, high = rtts[len(rtts) // 10], rtts[9 * len(rtts) // 10]
    assert rtts[0] >= 2 * DELAY_MS - 0.2, rtts[:5]
    # two waits of [0, 4] ms (and order keeping, which only adds): spread over several ms, not fixed
    assert high - low >= 2.0, (low, high)
    assert high <= 2 * DELAY_MS + 2 * JITTER_MS + 3.0, (low, high)
