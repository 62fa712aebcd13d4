"""Key moments in the app: caption and view when the live lab pauses there, marks on the
timeline, n/N between them in a replay (seeking there), the same moments live and replayed."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.runs import ReplayRun
from lab.scenario import get_scenario
from lab.sim.liverun import SimRun
from tui.app import LabApp
from tui.widgets.moments import MomentBar, MomentTimeline
from tui.widgets.status import TimeSlider

from .conftest import eventually, until_finished

pytestmark = pytest.mark.asyncio


async def test_live_lab_pauses_at_the_moment_on_its_view_with_its_caption() -> None:
    app = LabApp(SimRun(get_scenario("hotspot"), seed=1, speed=None, pause_at_moments=True))
    async with app.run_test(size=(80, 24)) as pilot:
        await eventually(pilot, lambda: bool(app.moments) and app.lab_run.status().paused, limit_s=60)
        await pilot.pause(0.2)
        assert [m.key for m in app.moments] == ["udp-timeout"]
        assert app.query_one("#tabs").active == "iketcp"
        caption = app.query_one(MomentBar).plain()
        assert "no answer over UDP 500 for 2.00 s" in caption and "[RFC 9329 §5.1]" in caption
        assert app.query_one(MomentBar).region.height >= 1
        assert app.query_one(MomentTimeline).marks == [app.moments[0].t]
        await pilot.press("space")  # goes on, to the next moment
        await eventually(pilot, lambda: len(app.moments) == 2 and app.lab_run.status().paused, limit_s=60)
        assert "IKETCP" in app.query_one(MomentBar).plain()
        await pilot.press("N")  # back to the first caption (a live run cannot seek)
        await pilot.pause()
        assert "UDP 500" in app.query_one(MomentBar).plain()


async def test_without_auto_pause_the_run_goes_through_and_still_marks_every_moment() -> None:
    app = LabApp(SimRun(get_scenario("eno-stripped"), seed=1, speed=None))
    async with app.run_test(size=(120, 40)) as pilot:
        await until_finished(app, pilot)
        assert [m.key for m in app.moments] == ["eno-stripped", "eno-fallback", "eno-refused", "eno-refused"]
        # the refusals are the lesson, not problems; the status line never calls them so
        assert app.problems == [] and app.expected == ["no_eno_option", "no_eno_option"]
        assert "problems" not in str(app.query_one("#status").render())
        assert app.query_one("#tabs").active == "eno"  # the scenario's main view
        assert app.query_one(MomentTimeline).marks == [m.t for m in app.moments]


async def test_replay_marks_moments_on_the_slider_and_n_jumps_there(tmp_path: Path) -> None:
    live = SimRun(get_scenario("path-failure"), seed=1, speed=None, out_dir=tmp_path / "b")
    live.run_to_end()
    live.close()
    app = LabApp(ReplayRun(tmp_path / "b", speed=None))
    async with app.run_test(size=(80, 24)) as pilot:
        await until_finished(app, pilot)
        keys = ["link-down", "rto-reinjection", "link-up", "delivered"]
        assert [m.key for m in app.moments] == keys  # the same as live
        assert app.query_one(TimeSlider).marks == [m.t for m in app.lab_run.known_moments()]
        app.query_one(TimeSlider).focus()
        for expected in keys[:2]:
            await pilot.press("n")
            await pilot.pause()
            moment = app.moments[app.moment_index]
            assert moment.key == expected
            assert app.lab_run.status().now == moment.t + 1e-9 or abs(app.lab_run.status().now - moment.t) < 1e-6
            assert app.query_one("#tabs").active == "subflows"
        await pilot.press("N")
        await pilot.pause()
        assert app.moments[app.moment_index].key == "link-down"
        await pilot.press("left")  # the slider's key: moves time, never the tab
        await pilot.pause()
        assert app.query_one("#tabs").active == "subflows"
