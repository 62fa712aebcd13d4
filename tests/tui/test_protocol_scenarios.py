"""The protocol views on the real MPTCP, ENO/tcpcrypt and IKETCP scenarios in the simulator."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from lab.runs import SimRun
from lab.scenario import get_scenario
from tui.app import LabApp
from tui.widgets.iketcp import IketcpView
from tui.widgets.subflows import SubflowsView

from .conftest import until_finished

pytestmark = pytest.mark.asyncio
SIZE = (120, 40)


async def _finished_app(name: str, pilot_size=SIZE):
    app = LabApp(SimRun(get_scenario(name), seed=1, speed=None))
    return app


async def test_mptcp_two_paths_shows_both_subflows_at_both_ends() -> None:
    app = await _finished_app("mptcp-two-paths")
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot, limit_s=120)
        view = app.query_one(SubflowsView)
        rows = view.state()["rows"]
        mptcp_rows = [r for r in rows.values() if r["mptcp"]]
        assert len(mptcp_rows) == 4  # two subflows, seen from h1 and from h2
        assert {r["id"] for r in mptcp_rows} >= {"0"}
        assert all(r["conn"].startswith("token ") for r in mptcp_rows)
        assert view.mappings > 100  # DSS mappings logged
        assert app.problems == []


async def test_eno_basic_shows_the_agreed_tep_and_one_session_id() -> None:
    app = await _finished_app("eno-basic")
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot, limit_s=120)
        ladder = str(app.query_one("#eno-ladder", Static).render())
        assert "SYN      ──────▶ ENO active (b=0)" in ladder
        assert "role A" in ladder and "role B" in ladder
        assert "the same session ID at both ends ✓" in ladder
        assert app.problems == []


async def test_iketcp_race_shows_sequential_and_racing_side_by_side() -> None:
    app = await _finished_app("iketcp-race")
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot, limit_s=120)
        await pilot.press("4")
        await pilot.pause(0.3)
        view = app.query_one(IketcpView)
        columns = view.state()["timelines"]
        assert {"h1 sequential", "h1 racing"} <= set(columns)
        assert any("timeout" in line for line in columns["h1 sequential"])
        assert any("tcp:4500" in line for line in columns["h1 racing"])
        assert view.udp_blocked > 0
        assert view.esp  # ESP counters per transport
        titles = [str(s.render()).split("\n", 1)[0] for s in app.query(".ike-column Static")]
        assert titles[:2] == ["h1 sequential", "h1 racing"]
