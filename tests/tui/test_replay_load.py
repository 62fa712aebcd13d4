"""Opening a replay: the trace loads in the background with its progress on screen, the slider
gets the duration and moments once they are known, its keys move time and never the view, and
a bundle that is cut off or unfinished says so in a banner instead of playing as "finished"."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from textual.message import Message

from lab.runs import ReplayRun, RunStatus, load_records
from lab.scenario import get_scenario
from lab.sim.liverun import SimRun
from lab.trace import TraceRecord
from tui.app import LabApp
from tui.widgets.status import ReplayBanner, TimeSlider

from .conftest import SMALL_TWO_PATHS, eventually, until_finished, write_trace


@pytest.fixture(scope="module")
def path_failure_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("replay") / "path-failure"
    live = SimRun(get_scenario("path-failure"), seed=1, speed=None, out_dir=out)
    live.run_to_end()
    live.close()
    return out


def test_loading_reports_its_progress_and_keeps_every_record(tmp_path: Path) -> None:
    records = [TraceRecord(i / 1000, "h1", "app", "state_updated", {"i": i}) for i in range(10_000)]
    trace = write_trace(tmp_path / "b", records) / "trace.jsonl"
    reports: list[tuple[int, int]] = []
    assert load_records(trace, progress=lambda done, total: reports.append((done, total))) == records
    size = trace.stat().st_size
    assert len(reports) >= 3 and all(total == size for _done, total in reports)
    done = [d for d, _total in reports]
    assert done == sorted(done) and 0 < done[0] < size and done[-1] == size


def test_a_deferred_replay_reads_nothing_until_loaded(path_failure_bundle: Path) -> None:
    replay = ReplayRun(path_failure_bundle, defer=True)
    status = replay.status()
    assert replay.records == [] and not replay.loaded
    assert status.text.startswith("loading the trace: 0% of") and not status.finished
    assert status.extra["loading"] == 0.0
    replay.load()
    status = replay.status()
    assert replay.loaded and replay.load_progress() == 1.0 and status.extra["loading"] is None
    assert status.extra["duration"] == replay.duration > 0
    assert status.extra["marks"] == [m.t for m in replay.known_moments()] and len(status.extra["marks"]) == 4
    assert status.extra["banner"] is None  # a whole bundle, verified
    assert replay.records == ReplayRun(path_failure_bundle).records


@pytest.mark.asyncio
async def test_the_app_opens_before_the_trace_is_read_and_then_plays_it(path_failure_bundle: Path) -> None:
    replay = ReplayRun(path_failure_bundle, speed=None, defer=True)
    app = LabApp(replay)
    async with app.run_test(size=(80, 24)) as pilot:
        slider = app.query_one(TimeSlider)
        await until_finished(app, pilot)
        assert replay.loaded and slider.load_fraction is None
        assert slider.duration == replay.duration
        assert slider.marks == [m.t for m in replay.known_moments()]
        assert [m.key for m in app.moments] == ["link-down", "rto-reinjection", "link-up", "delivered"]
        assert "finished" in str(app.query_one("#status").render())
        assert not app.query_one(ReplayBanner).display


@pytest.mark.asyncio
async def test_the_slider_shows_loading_progress_and_ignores_keys_meanwhile() -> None:
    app = LabApp(SimRun(SMALL_TWO_PATHS, seed=1, speed=None))  # any app: the slider alone is driven here
    async with app.run_test(size=(80, 24)) as pilot:
        slider = TimeSlider(0.0, id="test-slider")
        await app.screen.mount(slider)
        seeks: list[float] = []
        post = slider.post_message

        def record_seeks(message: Message) -> bool:
            if isinstance(message, TimeSlider.Seek):
                seeks.append(message.t)
                return True
            return post(message)

        slider.post_message = record_seeks  # type: ignore[method-assign]
        slider.show_status(RunStatus(now=0.0, extra={"duration": 0.0, "loading": 0.4}))
        await pilot.pause()
        text = slider.render().plain
        assert "loading the trace  40%" in text and "█" in text and "░" in text
        slider.action_nudge(1)
        slider.action_seek_to(1)
        assert seeks == []  # nothing to seek in before the trace is read
        slider.show_status(RunStatus(now=2.0, extra={"duration": 8.0, "loading": None, "marks": [1.5, 4.0]}))
        await pilot.pause()
        text = slider.render().plain
        assert "2.000 / 8.000 s" in text and text.count("◆") == 2
        slider.action_nudge(-0.1)
        slider.action_seek_to(1)
        assert seeks == [pytest.approx(1.9), 8.0]


@pytest.mark.asyncio
async def test_slider_keys_move_time_and_never_switch_the_view(path_failure_bundle: Path) -> None:
    app = LabApp(ReplayRun(path_failure_bundle, speed=None))
    async with app.run_test(size=(80, 24)) as pilot:
        await until_finished(app, pilot)
        tab = app.query_one("#tabs").active
        duration = app.lab_run.duration
        await pilot.press("space")  # paused: a seek stays where it lands
        app.query_one(TimeSlider).focus()
        await pilot.press("home")
        await eventually(pilot, lambda: app.lab_run.status().now == 0.0)
        await pilot.press("right", "right", "shift+right")
        await eventually(pilot, lambda: app.lab_run.status().now == pytest.approx(2.1))
        await pilot.press("pagedown")
        await eventually(pilot, lambda: app.lab_run.status().now == pytest.approx(duration))
        await pilot.press("left", "shift+left")
        await eventually(pilot, lambda: app.lab_run.status().now == pytest.approx(duration - 1.1))
        assert app.query_one("#tabs").active == tab
        # elsewhere too: arrows belong to whatever has the focus, the views change with 1-6 only
        app.set_focus(None)
        await pilot.press("left", "right", "left_square_bracket")
        await eventually(pilot, lambda: app.lab_run.status().now == pytest.approx(duration - 2.1))
        assert app.query_one("#tabs").active == tab


def _cut(bundle: Path, dest: Path, *, keep_summary: bool) -> Path:
    dest.mkdir()
    raw = (bundle / "trace.jsonl").read_bytes()
    cut = raw[: len(raw) // 2]
    cut = cut[: cut.rindex(b"\n") + 40]  # forty bytes into a record
    (dest / "trace.jsonl").write_bytes(cut)
    shutil.copy(bundle / "topology.json", dest / "topology.json")
    if keep_summary:
        shutil.copy(bundle / "summary.json", dest / "summary.json")
    return dest


@pytest.mark.asyncio
@pytest.mark.parametrize("keep_summary", [False, True], ids=["bare-trace", "bundle"])
async def test_a_cut_off_trace_plays_with_a_banner_and_never_as_finished(
    path_failure_bundle: Path, tmp_path: Path, keep_summary: bool
) -> None:
    cut = _cut(path_failure_bundle, tmp_path / "cut", keep_summary=keep_summary)
    app = LabApp(ReplayRun(cut, speed=None, defer=True))
    async with app.run_test(size=(80, 24)) as pilot:
        await until_finished(app, pilot)
        status = app.lab_run.status()
        assert status.extra["ended"] and not status.finished
        assert "finished" not in str(app.query_one("#status").render())
        banner = app.query_one(ReplayBanner)
        assert banner.display and banner.region.height >= 1
        text = str(banner.render())
        if keep_summary:  # the summary's digest no longer matches the trace
            assert text.startswith("⚠ BUNDLE NOT INTACT: trace.jsonl: changed")
        else:
            assert text.startswith("⚠ INCOMPLETE RUN: the trace ends in the middle of a record")
        assert app.query_one(TimeSlider).duration < app.lab_run.duration + 1e-9 < 4.0  # half the run


@pytest.mark.asyncio
async def test_a_run_killed_before_it_finalised_its_bundle_plays_with_a_banner(
    path_failure_bundle: Path, tmp_path: Path
) -> None:
    records = [r for r in ReplayRun(path_failure_bundle).records if r.t < 2.0]
    bundle = write_trace(tmp_path / "b", records, json.loads((path_failure_bundle / "topology.json").read_text()))
    (bundle / "summary.json").write_text(json.dumps({"scenario": "path-failure", "finished": False}))
    app = LabApp(ReplayRun(bundle, speed=None))
    async with app.run_test(size=(80, 24)) as pilot:
        await until_finished(app, pilot)
        assert not app.lab_run.status().finished
        assert app.query_one(ReplayBanner).display
        assert str(app.query_one(ReplayBanner).render()).startswith(
            "⚠ BUNDLE NOT INTACT: summary.json: incomplete (the run ended before it finalised its bundle"
        )
