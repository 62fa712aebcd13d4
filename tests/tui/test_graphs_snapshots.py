"""Snapshots of the Graphs view and the Events view with its highlights, at 80×24 and 160×48
(pytest-textual-snapshot). Update with --snapshot-update only after reading what changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import replay_app, until_finished, write_trace
from .test_graphs import scenario_trace

pytest.importorskip("pytest_textual_snapshot")


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("key", ["7", "6"], ids=["graphs", "events"])
def test_path_failure_graphs_and_highlights(snap_compare, tmp_path: Path, key: str, size: tuple[int, int]) -> None:
    records, topology = scenario_trace("path-failure")
    app = replay_app(write_trace(tmp_path / "path-failure", list(records), topology))

    async def run_before(pilot) -> None:
        await until_finished(pilot.app, pilot)
        await pilot.press(key)
        await pilot.pause(0.3)
        pilot.app.flush_views()
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=run_before)
