"""Snapshots of the main screens (pytest-textual-snapshot). Update with --snapshot-update only
after reading what changed."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import (
    TWO_HOSTS_TOPOLOGY,
    replay_app,
    sim_app,
    synthetic_eno_records,
    synthetic_ike_trace,
    synthetic_mptcp_trace,
    until_finished,
    write_trace,
)

pytest.importorskip("pytest_textual_snapshot")


def _settled(*keys: str):
    async def run_before(pilot) -> None:
        await until_finished(pilot.app, pilot)
        for key in keys:
            await pilot.press(key)
        await pilot.pause(0.3)

    return run_before


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
def test_topology_screen(snap_compare, size: tuple[int, int]) -> None:
    assert snap_compare(sim_app(), terminal_size=size, run_before=_settled())


def test_packets_screen_with_a_filter_and_the_detail(snap_compare) -> None:
    async def run_before(pilot) -> None:
        await until_finished(pilot.app, pilot)
        await pilot.press("5")
        pilot.app.query_one("#packet-filter").value = "flags=S"
        await pilot.pause(0.3)
        table = pilot.app.query_one("#packet-table")
        table.focus()
        table.cursor = 0
        await pilot.pause(0.3)

    assert snap_compare(sim_app(), terminal_size=(120, 40), run_before=run_before)


def test_subflows_screen(snap_compare, tmp_path: Path) -> None:
    app = replay_app(write_trace(tmp_path / "mptcp", synthetic_mptcp_trace(), TWO_HOSTS_TOPOLOGY))
    assert snap_compare(app, terminal_size=(120, 40), run_before=_settled("2"))


def test_eno_screen(snap_compare, tmp_path: Path) -> None:
    app = replay_app(write_trace(tmp_path / "eno", synthetic_eno_records(stripped=False), TWO_HOSTS_TOPOLOGY))
    assert snap_compare(app, terminal_size=(120, 40), run_before=_settled("3"))


def test_iketcp_screen(snap_compare, tmp_path: Path) -> None:
    app = replay_app(write_trace(tmp_path / "ike", synthetic_ike_trace(), TWO_HOSTS_TOPOLOGY))
    assert snap_compare(app, terminal_size=(120, 40), run_before=_settled("4"))


def test_events_screen(snap_compare) -> None:
    assert snap_compare(sim_app(), terminal_size=(100, 30), run_before=_settled("6"))


def test_help_screen(snap_compare) -> None:
    assert snap_compare(sim_app(), terminal_size=(100, 30), run_before=_settled("question_mark"))


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
@pytest.mark.parametrize("name", ["hotspot", "path-failure", "eno-stripped"])
def test_key_moment_screen(snap_compare, name: str, size: tuple[int, int]) -> None:
    """The live lab as it pauses at the scenario's first key moment, no key pressed."""
    from lab.scenario import get_scenario
    from lab.sim.liverun import SimRun
    from tui.app import LabApp

    async def run_before(pilot) -> None:
        app = pilot.app
        for _ in range(1200):
            await pilot.pause(0.05)
            if app.moments and app.lab_run.status().paused:
                break
        await pilot.pause(0.5)
        app.flush_views()
        await pilot.pause(0.2)

    app = LabApp(SimRun(get_scenario(name), seed=1, speed=None, pause_at_moments=True))
    assert snap_compare(app, terminal_size=size, run_before=run_before)
