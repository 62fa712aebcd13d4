"""Pilot tests: every view and every control of the app."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Log, Static, TabbedContent

from lab.runs import ReplayRun
from lab.sim.liverun import SimRun
from lab.trace import TraceRecord
from tui.app import LabApp
from tui.screens.help import HelpScreen
from tui.screens.pickers import Picker
from tui.widgets.eno import EnoView
from tui.widgets.events import EventLog
from tui.widgets.iketcp import IketcpView
from tui.widgets.outcomes import OutcomesPanel
from tui.widgets.packets import PacketsView, PacketTable
from tui.widgets.subflows import SubflowsView, SubflowTable
from tui.widgets.topology import TopologyView

from .conftest import (
    SINGLE_PATH,
    SMALL_TWO_PATHS,
    TWO_HOSTS_TOPOLOGY,
    eventually,
    replay_app,
    sim_app,
    synthetic_eno_records,
    synthetic_eno_trace,
    synthetic_ike_trace,
    synthetic_mptcp_trace,
    until_finished,
    write_trace,
)

SIZE = (120, 40)
pytestmark = pytest.mark.asyncio


async def test_topology_view_shows_links_rates_and_the_checked_transfer() -> None:
    app = sim_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        view = app.query_one(TopologyView)
        links = app.query_one("#links", DataTable)
        assert links.row_count == 4
        assert all(view.link_up.values())
        assert view.bytes_carried("h1-r1", "ab") > 256 * 1024  # path A carried the transfer
        assert view.bytes_carried("h1-r2", "ab") == 0  # path B idle: plain TCP uses one path
        assert view.rates[("h1-r1", "ab")] == 0.0  # the run is over: nothing flows any more
        assert str(links.get_cell("h1-r1", "state")) == "up"
        transfers = app.query_one("#transfers", OutcomesPanel).text(120).plain
        assert "bulk delivered 256.0 KiB intact (SHA-256 matches) — as expected" in " ".join(transfers.split())
        assert "finished" in str(app.query_one("#status", Static).render())


async def test_link_picker_takes_a_link_down_and_enter_on_the_table_brings_it_up() -> None:
    run = SimRun(SINGLE_PATH, seed=1, speed=1.0)
    run.pause(True)
    app = LabApp(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("l")
        assert isinstance(app.screen, Picker)
        await pilot.press("down", "enter")  # the second link: r1-h2
        view = app.query_one(TopologyView)
        await eventually(pilot, lambda: view.link_up["r1-h2"] is False)
        assert view.link_up["r1-h2"] is False
        assert "DOWN" in str(app.query_one("#links", DataTable).get_cell("r1-h2", "state"))
        assert view.has_class("-link-down")
        table = app.query_one("#links", DataTable)
        table.focus()
        table.move_cursor(row=1)
        await pilot.press("enter")
        await eventually(pilot, lambda: view.link_up["r1-h2"] is True)
        events = app.query_one(EventLog)
        assert any("link r1-h2 DOWN" in line for line in events.lines)


async def test_middlebox_picker_switches_a_policy_on_and_the_table_switches_it_off() -> None:
    run = SimRun(SMALL_TWO_PATHS, seed=1, speed=1.0)
    run.pause(True)
    app = LabApp(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("m")
        picker = app.screen
        assert isinstance(picker, Picker)
        keys = [o.id for o in picker.query_one("#picker-list").options]
        await pilot.press(*["down"] * keys.index("r2/strip_tcp_options:69"), "enter")
        policies = app.query_one("#policies", DataTable)
        await eventually(pilot, lambda: policies.row_count == 1)
        assert policies.row_count == 1
        assert str(policies.get_cell("r2/strip_tcp_options:69", "state")) == "on"
        assert run.net.router("r2").middleboxes
        policies.focus()
        await pilot.press("enter")
        await eventually(pilot, lambda: str(policies.get_cell("r2/strip_tcp_options:69", "state")) == "off")
        assert str(policies.get_cell("r2/strip_tcp_options:69", "state")) == "off"
        assert not run.net.router("r2").middleboxes


async def test_start_and_stop_transfers() -> None:
    run = SimRun(SMALL_TWO_PATHS, seed=1, speed=None)
    app = LabApp(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("t")
        view = app.query_one(TopologyView)
        # the scenario's own transfer may be over before the key is read (a busy machine): the run
        # counts as finished until the new transfer's records arrive, so wait for its end itself
        await eventually(pilot, lambda: (view.transfers.get("tui-1") or {}).get("received"), limit_s=60)
        await until_finished(app, pilot)
        assert sorted(view.transfers) == ["bulk", "tui-1"]
        assert view.transfers["tui-1"]["received"]["sha256_match"] is True
        # a big one, stopped before it can finish
        run.set_speed(0.1)
        await pilot.press("t")
        await pilot.pause(0.3)
        await pilot.press("x")
        await until_finished(app, pilot)
        stopped = [r for r in run.results() if r.name == "tui-2"][0]
        assert stopped.error and not stopped.ok


async def test_pause_step_and_speed_keys() -> None:
    run = SimRun(SINGLE_PATH, seed=1, speed=0.5)  # runs for seconds: the steps land mid-transfer
    app = LabApp(run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("space")
        assert run.status().paused
        await pilot.pause(0.1)
        before = run.status().now
        await pilot.pause(0.2)
        assert run.status().now == before  # paused: virtual time stands still
        await pilot.press("s")
        for _ in range(100):  # a loaded machine may take a while to run the step
            await pilot.pause(0.05)
            if run.status().now != before:
                break
        assert run.status().now == pytest.approx(before + 0.1)
        await pilot.press("plus")
        assert run.status().speed == 1.0
        await pilot.press("minus", "minus")
        assert run.status().speed == 0.2
        await pilot.pause(0.15)
        assert "PAUSED" in str(app.query_one("#status", Static).render())
        await pilot.press("space")
        assert not run.status().paused


async def test_help_screen_lists_every_control() -> None:
    app = sim_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = app.screen.plain_text()
        for words in ("pause", "step", "faster", "link", "middlebox", "transfer", "command palette", "Packets"):
            assert words.lower() in text.lower()
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_command_palette_lists_controls_and_runs_them() -> None:
    run = SimRun(SINGLE_PATH, seed=1, speed=1.0)
    run.pause(True)
    app = LabApp(run)
    async with app.run_test(size=SIZE) as pilot:
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in (
            "Pause / resume",
            "Step",
            "Faster",
            "Slower",
            "Start a transfer",
            "Stop the transfer",
            "Link h1-r1 down",
            "Link r1-h2 down",
            "Show packets",
            "Help",
        ):
            assert title in titles
        assert any(t.startswith("Middlebox r1: strip the MPTCP option") for t in titles)
        await pilot.press("ctrl+p")
        await pilot.press(*"Link r1-h2 down")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await eventually(pilot, lambda: app.query_one(TopologyView).link_up["r1-h2"] is False)


async def test_packets_view_filters_and_names_fields_after_their_rfc() -> None:
    app = sim_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        await pilot.press("5")
        await pilot.pause(0.3)
        view = app.query_one(PacketsView)
        table = app.query_one(PacketTable)
        assert table.row_count > 100
        app.query_one("#packet-filter", Input).value = "flags=S"
        await pilot.pause(0.2)
        assert table.row_count == 4  # SYN and SYN/ACK, each sent and received
        assert all("S" in view.packet_at(i).fields["flags"] for i in range(table.row_count))
        table.focus()
        await pilot.press("home")
        await pilot.pause(0.1)
        detail = app.query_one("#packet-detail", Static).render()
        text = str(detail)
        for name in (
            "Sequence Number",
            "Acknowledgment Number",
            "Control Bits: SYN",
            "Maximum Segment Size",
            "SACK-Permitted",
            "Window Scale: shift.cnt",
            "RFC 9293 §3.1",
            "RFC 7323 §2.2",
            "RFC 2018 §2",
        ):
            assert name in text
        links = {span.style.link for span in detail.spans if getattr(span.style, "link", None)}
        assert "https://www.rfc-editor.org/rfc/rfc9293#section-3.1" in links
        app.query_one("#packet-filter", Input).value = "node=h2 dir=← flags=F"
        await pilot.pause(0.2)
        assert table.row_count == 1
        assert view.state()["packets"] == len(view.records)


async def test_subflows_view_on_a_synthetic_mptcp_trace(tmp_path: Path) -> None:
    app = replay_app(write_trace(tmp_path / "mptcp", synthetic_mptcp_trace(), TWO_HOSTS_TOPOLOGY))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        await pilot.press("2")
        view = app.query_one(SubflowsView)
        table = app.query_one(SubflowTable)
        assert table.row_count == 2
        rows = view.state()["rows"]
        assert rows["h1 10.0.3.1:40001->10.0.4.2:5001"]["backup"] == "backup"
        assert rows["h1 10.0.1.1:40000->10.0.2.2:5001"]["id"] == "0"
        assert all("FALLBACK" in r["conn"] for r in rows.values())
        assert view.reinjections == 1 and view.mappings == 5
        assert view.has_class("-fallback")
        log = "\n".join(app.query_one("#subflow-log", Log).lines)
        assert "DSS data_seq=abs:1000 subflow_seq=1 len=1448" in log  # no keys recorded: not relative
        assert "REINJECTED data_seq=abs:2448" in log
        assert "FALLBACK to TCP — MPTCP option stripped" in log
        assert "MP_JOIN" in log
        trend = str(table.get_cell("h1 10.0.1.1:40000->10.0.2.2:5001", "trend"))
        assert len(trend) == 4 and trend[-1] == "█"  # five samples: a windowed rate needs two


@pytest.mark.parametrize("stripped", [False, True])
async def test_eno_ladder_from_tcp_options_decodes_suboptions(tmp_path: Path, stripped: bool) -> None:
    """Without eno records (another stack), the ladder decodes the ENO options the tcp layer saw."""
    app = replay_app(write_trace(tmp_path / "eno", synthetic_eno_trace(stripped=stripped), TWO_HOSTS_TOPOLOGY))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        await pilot.press("3")
        ladder = app.query_one(EnoView).ladder().plain
        assert "SYN      ──────▶ ENO active (b=0) a=0 TEPs 0x21 0x22" in ladder
        assert "SYN/ACK  ◀────── ENO passive (b=1) a=0 TEPs 0x21" in ladder
        assert ("arrived as: no ENO option" in ladder) is stripped
        assert ("falls back to plain TCP" in ladder) is stripped


async def test_eno_view_from_eno_and_tcpcrypt_records(tmp_path: Path) -> None:
    app = replay_app(write_trace(tmp_path / "eno", synthetic_eno_records(stripped=False), TWO_HOSTS_TOPOLOGY))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        await pilot.press("3")
        ladder = app.query_one(EnoView).ladder().plain
        for expected in (
            "SYN      ──────▶ ENO active (b=0) a=0 TEPs 0x23 0x21",
            "SYN-ACK  ◀────── ENO passive (b=1) a=0 TEPs 0x23",
            "ACK      ──────▶ ENO (non-SYN form 4502)",
            "h1: encrypted  role A  a=0/0 b=0/1 (local/remote)  TEP 0x23 TCPCRYPT_ECDHE_Curve25519",
            "h2: encrypted  role B  a=0/0 b=1/0",
            "why: last TEP in host B's SYN-form option",
            "the same session ID at both ends: the keys were agreed end to end",
        ):
            assert expected in ladder, expected
        assert app.query_one(EnoView).state()["records"] == 12


async def test_eno_view_shows_a_stripped_syn_and_the_fallback_reason(tmp_path: Path) -> None:
    app = replay_app(write_trace(tmp_path / "eno", synthetic_eno_records(stripped=True), TWO_HOSTS_TOPOLOGY))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        await pilot.press("3")
        ladder = app.query_one(EnoView).ladder().plain
        assert "arrived as: no ENO option" in ladder
        assert "h2: fallback" in ladder
        assert "fallback: no_eno_option — the SYN carries no ENO option (opportunistic policy)" in ladder


async def test_iketcp_view_on_a_synthetic_trace(tmp_path: Path) -> None:
    app = replay_app(write_trace(tmp_path / "ike", synthetic_ike_trace(), TWO_HOSTS_TOPOLOGY))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        await pilot.press("4")
        await pilot.pause(0.2)
        view = app.query_one(IketcpView)
        assert view.udp_blocked == 2 and view.blocked == {"r1 UDP 500": 2}
        assert len(view.tcp_4500) == 1
        timeline = view.state()["timelines"]["h1 ike"]
        for expected in (
            "connect (sequential): udp:500 → tcp:4500",
            "→ IKE IKE_SA_INIT #0 260 B over udp:500 retransmission 1",
            "attempt 1 udp:500 timeout after 2.000 s",
            "SA 9697b36b INIT_SENT → FAILED (abandon, udp)",
            "TCP ike/1 connected",
            '→ prefix "IKETCP" (6 B) on TCP ike/1',
            "→ framed IKE message, 264 B, on TCP ike/1",
        ):
            assert any(expected in line for line in timeline), expected
        assert view.sa_states["h1 346fffb14c30aa0c"] == "ESTABLISHED"
        summary = str(app.query_one("#ike-summary", Static).render())
        assert "ESP over tcp at h1: sent 33 pkts / 35144 B" in summary
        head = str(app.query_one(".ike-col-head", Static).render())
        assert head == "h1 ike"  # the session's name stays above its scrolling timeline
        column = str(app.query_one("#ike-col-0", Static).render())
        assert column.startswith("  0.000 connect (sequential)")
        assert app.query_one("#ike-records", DataTable).row_count == 14  # ike, iketcp and esp records


async def test_replay_slider_seeks_back_and_forward(tmp_path: Path) -> None:
    run = SimRun(SMALL_TWO_PATHS, seed=1, speed=None, out_dir=tmp_path / "b")
    run.run_to_end()
    app = LabApp(ReplayRun(tmp_path / "b", speed=None))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        packets = app.query_one(PacketsView)
        total = packets.state()["packets"]
        duration = app.lab_run.duration
        await pilot.press("space")  # paused, a seek stays where it lands
        app.seek(0.05)
        await pilot.pause()
        early = packets.state()["packets"]
        assert 0 < early < total
        assert "received" not in app.query_one(TopologyView).transfers.get("bulk", {})
        await pilot.press("right_square_bracket")
        await pilot.pause()
        assert app.lab_run.status().now == pytest.approx(min(1.05, duration))
        assert packets.state()["packets"] == total
        await pilot.click("#slider", offset=(2, 0))
        await pilot.pause()
        assert app.lab_run.status().now < duration / 2
        assert packets.state()["packets"] < total
        app.query_one("#slider").focus()
        await pilot.press("right")
        await pilot.pause()
        assert app.lab_run.status().now == pytest.approx(min(duration, app.query_one("#slider").position))
        await pilot.press("space")  # play on to the end
        await until_finished(app, pilot)
        assert packets.state()["packets"] == total
        assert "bulk" in app.query_one(TopologyView).transfers


async def test_controls_a_replay_cannot_do_are_refused_without_harm(tmp_path: Path) -> None:
    app = replay_app(write_trace(tmp_path / "r", synthetic_ike_trace(), TWO_HOSTS_TOPOLOGY))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        await pilot.press("l", "m", "t", "x")
        await pilot.pause()
        assert not isinstance(app.screen, Picker)
        assert app.is_running
        assert len(app.notices) >= 3  # each refusal said on the status line
        assert not app._notifications  # and no toast over the content


async def test_tabs_switch_with_number_keys() -> None:
    app = sim_app()
    async with app.run_test(size=SIZE) as pilot:
        tabs = app.query_one(TabbedContent)
        for key, tab in zip("123456", ("topology", "subflows", "eno", "iketcp", "packets", "events"), strict=True):
            await pilot.press(key)
            assert tabs.active == tab


async def test_usable_at_80_by_24() -> None:
    app = sim_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await until_finished(app, pilot)
        for key, widget in (
            ("1", "#links"),
            ("2", "#subflow-table"),
            ("3", "#eno-ladder"),
            ("4", "#ike-columns"),  # at 24 rows the record table gives way to the timelines
            ("5", "#packet-table"),
            ("6", "#events-view"),
        ):
            await pilot.press(key)
            await pilot.pause()
            region = app.query_one(widget).region
            assert region.height >= 2 and region.width >= 40, (widget, region)
        assert app.query_one("#status").region.height == 1


async def test_subflows_view_shows_plain_tcp_connections() -> None:
    app = sim_app()
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        rows = app.query_one(SubflowsView).state()["rows"]
        assert len(rows) == 2  # one connection, seen from each end
        assert {r["conn"] for r in rows.values()} == {"TCP"}
        assert all(r["rtt"] and r["cwnd"] for r in rows.values())


async def test_events_view_describes_records() -> None:
    log = EventLog()
    assert log.describe(TraceRecord(1.0, "net", "link", "state_updated", {"link": "x", "up": False})) == "link x DOWN"
    assert "PROBLEM" in log.describe(TraceRecord(1.0, "h1", "run", "error", {"reason": "boom"}))
    assert log.describe(TraceRecord(1.0, "h1", "warp", "teleported", {})).startswith("unknown record type warp/")
    assert log.describe(TraceRecord(1.0, "h1", "warp", "teleported", {})) is None  # said once
    assert log.describe(TraceRecord(1.0, "h1", "kernel", "state_updated", {"event": "closed"})) == "kernel event=closed"


async def test_the_heap_is_frozen_while_records_stream_and_thawed_once_the_run_ends() -> None:
    import gc

    import tui.app as app_module

    run = SimRun(SMALL_TWO_PATHS, seed=1, speed=0.5)
    app = LabApp(run)
    old = app_module.GC_FREEZE_S
    app_module.GC_FREEZE_S = 0.1
    try:
        async with app.run_test(size=SIZE) as pilot:
            await eventually(pilot, lambda: gc.get_freeze_count() > 0)  # while the run streams
            await until_finished(app, pilot)
            await eventually(pilot, lambda: gc.get_freeze_count() == 0)  # thawed once it ended
    finally:
        app_module.GC_FREEZE_S = old
        gc.unfreeze()
