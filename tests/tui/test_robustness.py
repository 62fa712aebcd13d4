"""Damaged traces, unknown record types and a failing simulation: a clear message, never a crash;
and the same scenario live and replayed ends in the same view."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.runs import ReplayRun
from lab.sim.liverun import SimRun
from lab.trace import TraceRecord
from tui.app import LabApp
from tui.widgets.events import EventLog
from tui.widgets.packets import PacketsView
from tui.widgets.topology import TopologyView

from .conftest import SMALL_TWO_PATHS, TWO_HOSTS_TOPOLOGY, until_finished, write_trace

pytestmark = pytest.mark.asyncio
SIZE = (120, 40)


def _cells(app: LabApp) -> list[list[str]]:
    from textual.widgets import DataTable

    out = []
    for table in app.query(DataTable):
        out += [[str(c) for c in table.get_row_at(i)] for i in range(table.row_count)]
    return out


def _final_views(app: LabApp) -> dict:
    return {type(v).__name__: v.state() for v in app.views()}


async def test_live_and_replayed_runs_end_in_the_same_view(tmp_path: Path) -> None:
    live = LabApp(SimRun(SMALL_TWO_PATHS, seed=2, speed=None, out_dir=tmp_path / "bundle"))
    async with live.run_test(size=SIZE) as pilot:
        await until_finished(live, pilot)
        await pilot.press("5")
        await pilot.pause(0.3)
        live_views = _final_views(live)
        live_cells = _cells(live)
    replay = LabApp(ReplayRun(tmp_path / "bundle", speed=None))
    async with replay.run_test(size=SIZE) as pilot:
        await until_finished(replay, pilot)
        await pilot.press("5")
        await pilot.pause(0.3)
        replay_views = _final_views(replay)
        replay_cells = _cells(replay)
    assert live_views == replay_views
    assert live_views["PacketsView"]["packets"] > 500
    # and the drawn tables hold the same cells
    assert live_cells == replay_cells


async def test_corrupt_and_truncated_trace_shows_problems_and_keeps_the_rest(tmp_path: Path) -> None:
    good = [
        TraceRecord(0.1, "net", "link", "state_updated", {"link": "h1-h2", "up": False}),
        TraceRecord(
            0.2,
            "h1",
            "tcp",
            "segment_sent",
            {"conn": "10.0.1.1:1->10.0.1.2:2", "flags": "S", "seq": 1, "ack": 0, "len": 0, "win": 100, "options": []},
        ),
    ]
    bundle = write_trace(tmp_path / "b", good, TWO_HOSTS_TOPOLOGY)
    trace = bundle / "trace.jsonl"
    text = trace.read_text()
    trace.write_text(
        text
        + "garbage line\n"
        + json.dumps({"v": 1, "t": 0.3, "node": "h1", "layer": "tcp", "name": "vanished", "data": {}})
        + "\n"
        + good[1].to_json()[:30]
    )
    app = LabApp(ReplayRun(bundle, speed=None))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        assert app.is_running
        assert len(app.problems) == 3
        assert any("truncated" in p for p in app.problems)
        assert any("unknown record type tcp/vanished" in p for p in app.problems)
        assert app.query_one(TopologyView).link_up["h1-h2"] is False  # good records still drawn
        assert app.query_one(PacketsView).state()["packets"] == 1
        assert "problems: 3" in str(app.query_one("#status").render())
        assert sum("PROBLEM" in line for line in app.query_one(EventLog).lines) == 3
        assert any("truncated" in n for n in app.notices)  # told on the status line as well
        assert not app._notifications  # never as a toast over the content


async def test_empty_and_unreadable_bundles(tmp_path: Path) -> None:
    bundle = tmp_path / "empty"
    bundle.mkdir()
    (bundle / "trace.jsonl").write_bytes(b"")
    (bundle / "topology.json").write_text("{not json")
    app = LabApp(ReplayRun(bundle, speed=None))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        assert app.is_running and app.problems == []
    (bundle / "trace.jsonl").write_bytes(b"\xff\xfe\x00binary\n")
    app = LabApp(ReplayRun(bundle, speed=None))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        assert len(app.problems) == 1 and "unreadable" in app.problems[0]


async def test_a_failing_simulation_is_reported_and_the_app_stays_up() -> None:
    run = SimRun(SMALL_TWO_PATHS, seed=1, speed=None)

    def crashing_endpoint_timer() -> None:
        raise ValueError("endpoint process crashed")

    run.net.call_at(0.02, crashing_endpoint_timer)
    app = LabApp(run)
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        assert app.is_running
        assert any("endpoint process crashed" in p for p in app.problems)
        assert "simulation stopped" in str(app.query_one("#status").render())
        await pilot.press("5", "1", "question_mark", "escape")  # still drives
        assert app.is_running


async def test_odd_record_data_never_takes_a_view_down(tmp_path: Path) -> None:
    odd = [
        TraceRecord(0.1, "net", "link", "metrics_updated", {"link": "h1-h2", "from": "h1-eth0", "bytes": "lots"}),
        TraceRecord(0.2, "h1", "tcp", "segment_sent", {"conn": 5, "flags": None, "options": "none"}),
        TraceRecord(0.3, "h1", "tcp", "metrics_updated", {"conn": "a->b", "bytes_acked": "x"}),
        TraceRecord(0.4, "h1", "mptcp", "state_updated", {"token": "t", "subflow": 7, "reinjected": 3}),
        TraceRecord(
            0.5, "h1", "tcp", "segment_sent", {"conn": "a->b", "flags": "S", "options": [{"kind": 69, "data": "zz"}]}
        ),
        TraceRecord(0.6, "h1", "warp", "teleported", {"x": 1}),
        TraceRecord(0.7, "net", "link", "state_updated", {"link": ["not", "a", "name"], "up": False}),
        TraceRecord(0.8, "net", "link", "state_updated", {"link": "h1-h2", "up": False}),
    ]
    app = LabApp(ReplayRun(write_trace(tmp_path / "odd", odd, TWO_HOSTS_TOPOLOGY), speed=None))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        for key in "123456":
            await pilot.press(key)
            await pilot.pause()
        assert app.is_running
        assert any("unknown record type warp/teleported" in line for line in app.query_one(EventLog).lines)
        # the unknown record type is the one problem; malformed data in known records is skipped with a warning
        topology = app.query_one(TopologyView)
        assert topology.bad_records == 2 and topology.link_up["h1-h2"] is False  # the good record after them
        assert app.problems == ["trace.jsonl:6: unknown record type warp/teleported"]
