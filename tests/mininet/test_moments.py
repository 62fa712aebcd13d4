"""Key moments on Mininet (root): the trace of a real-packet run of two-paths and hotspot holds the
scenario's lesson moments, in the simulator's order, and its bundle replays with the same moments."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lab.mininet.liverun import MininetRun
from lab.runs import ReplayRun
from lab.scenario import get_scenario
from lab.scenario.moments import detect_moments
from lab.trace import TraceRecord
from tests.lab.test_moments import EXPECTED
from tests.mininet.conftest import mininet_skip_reason

pytestmark = [
    pytest.mark.mininet,
    pytest.mark.xdist_group("mininet"),
    pytest.mark.skipif(mininet_skip_reason() is not None, reason=str(mininet_skip_reason())),
]

# what must be there on real packets too; a reinjection in two-paths depends on timing that real
# processes do not reproduce (in the simulator seed 1 makes one), so it may or may not appear
REQUIRED = {
    "two-paths": ["subflow-joined", "delivered"],
    "hotspot": EXPECTED["hotspot"],
}


async def _follow(run: MininetRun, limit_s: float) -> list[TraceRecord]:
    records: list[TraceRecord] = []

    async def drain() -> None:
        async for batch in run.trace_batches():
            records.extend(batch)

    await asyncio.wait_for(drain(), timeout=limit_s)
    return records


@pytest.mark.parametrize("name", sorted(REQUIRED))
def test_the_same_moments_on_mininet_live_and_replayed(name: str, tmp_path: Path) -> None:
    scenario = get_scenario(name)
    run = MininetRun(scenario, seed=1, out_dir=tmp_path / "bundle", pcaps=False)
    try:
        records = asyncio.run(_follow(run, limit_s=scenario.time_limit_s + 60))
    finally:
        run.close()
    assert run.status().finished and all(r.ok for r in run.results()), run.status().text
    live = detect_moments(scenario.moments, records)
    keys = [m.key for m in live]
    optional = set(EXPECTED[name]) - set(REQUIRED[name])
    assert [k for k in keys if k not in optional] == REQUIRED[name], keys
    assert [k for k in keys if k in EXPECTED[name]] == keys, keys  # nothing the simulator never shows
    assert [m.t for m in live] == sorted(m.t for m in live)
    replay = ReplayRun(tmp_path / "bundle")
    assert replay.incomplete is None
    assert [m.to_dict() for m in replay.known_moments()] == [m.to_dict() for m in live]
