"""Outcomes against what each scenario expects, and controls that teach: ``t`` runs the
scenario's own protocol, ``/`` types a Packets filter without firing global keys, one packet
row per segment, one row group per MPTCP connection with both ends' tokens in hex."""

from __future__ import annotations

from dataclasses import replace

import pytest
from textual.widgets import Input, Static

from lab.scenario import get_scenario
from lab.sim.liverun import SimRun
from tui.app import LabApp
from tui.widgets.eno import EnoView
from tui.widgets.outcomes import OutcomesPanel
from tui.widgets.packets import PacketFilter, PacketsView, PacketTable
from tui.widgets.subflows import SubflowsView

from .conftest import eventually, until_finished

pytestmark = pytest.mark.asyncio
SIZE = (80, 24)


def _app(name: str, **changes) -> LabApp:
    scenario = get_scenario(name)
    if changes:
        scenario = replace(scenario, **changes)
    return LabApp(SimRun(scenario, seed=1, speed=None))


def _outcomes(app: LabApp, panel: str, width: int = 200) -> str:
    return " ".join(app.query_one(f"#{panel}", OutcomesPanel).text(width).plain.split())


async def test_eno_stripped_shows_every_outcome_as_expected_and_no_problem() -> None:
    app = _app("eno-stripped")
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        state = app.outcomes.state()["transfers"]
        assert {n: (t["outcome"], t["verdict"]) for n, t in state.items()} == {
            "opportunistic": ("delivered", "as expected"),
            "mandatory-client": ("refused", "as expected"),
            "mandatory-server": ("refused", "as expected"),
        }
        assert app.problems == []  # the refusals' error records are the lesson, not problems
        text = _outcomes(app, "eno-outcomes")
        assert "opportunistic delivered 256.0 KiB in the clear (ENO fell back) — as expected" in text
        assert "mandatory-client refused by the mandatory-ENO client" in text
        assert "unexpected" not in text and "✓" not in text
        status = str(app.query_one("#status", Static).render())
        assert "problems" not in status
        ladder = app.query_one(EnoView).ladder().plain
        assert "ENO never" not in ladder and "falls back to plain TCP (RFC" not in ladder


async def test_tcpcrypt_tamper_lists_its_transfer_as_aborted_as_expected() -> None:
    app = _app("tcpcrypt-tamper")
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        (tampered,) = app.outcomes.transfers.values()
        assert (tampered.name, tampered.outcome, tampered.verdict) == ("tampered", "aborted", "as expected")
        assert tampered.bytes < 1024 * 1024
        text = _outcomes(app, "eno-outcomes", width=400)
        assert "tampered aborted after 15.5 KiB" in text  # the first frame, 11 full segments of data and "— as expected" in text
        assert app.problems == []
        ladder = app.query_one(EnoView).ladder().plain
        assert "✓" not in ladder  # no tick on an aborted connection, not even for its session IDs
        assert "h2 aborted the connection (authentication_failed" in ladder


async def test_payload_tamper_expects_the_corrupted_delivery() -> None:
    app = _app("payload-tamper")
    async with app.run_test(size=(120, 40)) as pilot:
        await until_finished(app, pilot)
        assert app.outcomes.transfers["bulk"].outcome == "corrupted"
        assert "bulk CORRUPTED: 1.0 MiB delivered, SHA-256 does not match what was sent — as expected" in _outcomes(
            app, "transfers"
        )
        assert app.problems == []


async def test_an_unexpected_ending_is_a_problem() -> None:
    # tcpcrypt-tamper's flip, but the scenario told to expect delivery: the abort is now a problem
    scenario = get_scenario("tcpcrypt-tamper")
    app = LabApp(SimRun(replace(scenario, expects=replace(scenario.expects, transfers=())), seed=1, speed=None))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        assert app.outcomes.transfers["tampered"].verdict == "unexpected"
        assert "transfer tampered: aborted, expected delivered" in app.problems
        assert "unexpected (expected delivered)" in _outcomes(app, "eno-outcomes")


async def test_t_after_switching_the_option_stripper_on_records_an_mptcp_fallback() -> None:
    base = get_scenario("mptcp-two-paths")
    app = _app("mptcp-two-paths", transfers=(replace(base.transfers[0], size_bytes=512 * 1024),))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        view = app.query_one(SubflowsView)
        assert view.fallbacks == {}
        app.action_toggle_policy("r1/strip_tcp_options:30")
        await pilot.press("t")
        await eventually(pilot, lambda: "tui-1" in app.outcomes.transfers and app.outcomes.transfers["tui-1"].done)
        await until_finished(app, pilot)
        assert app.outcomes.transfers["tui-1"].outcome == "delivered"
        assert app.outcomes.transfers["tui-1"].verdict == "started here"
        (reasons,) = view.fallbacks.values()  # MPTCP was tried (the scenario's protocol) and fell back
        assert "no MP_CAPABLE in the SYN" in reasons
        tui_port = [r for r in app.lab_run.results() if r.name == "tui-1"]
        assert tui_port and tui_port[0].ok


async def test_t_in_hotspot_after_the_udp_block_is_off_runs_ike_over_udp() -> None:
    app = _app("hotspot")
    async with app.run_test(size=(120, 40)) as pilot:
        await until_finished(app, pilot)
        assert app.outcomes.ike["ike"].transport == "tcp"
        app.action_toggle_policy("r1/block_udp:all")
        await pilot.press("t")
        await eventually(pilot, lambda: "tui-1" in app.outcomes.ike and app.outcomes.ike["tui-1"].transport)
        assert app.outcomes.ike["tui-1"].transport == "udp"
        text = _outcomes(app, "ike-outcomes")
        assert "ike IKE SA over TCP 4500" in text and "as expected" in text
        assert "tui-1 IKE SA over UDP 500" in text


async def test_t_in_eno_basic_with_the_eno_stripper_on_falls_back() -> None:
    app = _app("eno-basic")
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        app.action_toggle_policy("r1/strip_tcp_options:69")
        await pilot.press("t")
        await eventually(pilot, lambda: "tui-1" in app.outcomes.transfers and app.outcomes.transfers["tui-1"].done)
        tui = app.outcomes.transfers["tui-1"]
        assert (tui.outcome, tui.detail) == ("delivered", "in the clear (ENO fell back)")
        assert app.problems == []


async def test_slash_focuses_the_filter_and_typing_there_fires_no_global_key() -> None:
    app = _app("two-paths", transfers=(replace(get_scenario("two-paths").transfers[0], size_bytes=256 * 1024),))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        speed = app.lab_run.status().speed
        await pilot.press("slash")
        assert app._tabs.active == "packets"
        assert isinstance(app.focused, PacketFilter)
        await pilot.press(*"flags=S", "space", *"ltmnq12")
        assert app.query_one("#packet-filter", Input).value == "flags=S ltmnq12"
        assert app.screen is app.screen_stack[0]  # no picker opened ('l', 'm')
        assert app.topology_view.link_up == {name: True for name in app.topology_view.link_up}
        assert app.lab_run.status().speed == speed and not app.lab_run.status().paused
        assert app._tabs.active == "packets" and app.is_running  # neither '1' nor 'q' acted
        assert len(app.lab_run.results()) == 1  # 't' started nothing
        await pilot.press("escape")
        assert not isinstance(app.focused, Input)
        await pilot.press("2")  # global keys act again
        assert app._tabs.active == "subflows"


async def test_an_unknown_filter_term_says_so_in_one_line() -> None:
    app = _app("two-paths", transfers=(replace(get_scenario("two-paths").transfers[0], size_bytes=256 * 1024),))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        await pilot.press("slash", *"colour=red")
        note = app.query_one("#packet-filter-note", Static)
        assert note.display and "unknown filter field 'colour'" in str(note.render())
        assert "\n" not in str(note.render())
        await pilot.press(*["backspace"] * 10, *"flags=Z")
        assert "'Z' is no TCP flag" in str(note.render())
        await pilot.press(*["backspace"] * 7, *"flags=S")
        assert not note.display


async def test_packets_one_row_per_segment_with_mp_capable_on_the_syn() -> None:
    app = _app("two-paths", transfers=(replace(get_scenario("two-paths").transfers[0], size_bytes=256 * 1024),))
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot)
        view = app.query_one(PacketsView)
        layers = {rec.layer for _, rec in view.records}
        assert "mptcp" not in layers  # no separate near-empty mptcp rows
        await pilot.press("slash", *"flags=S")
        await pilot.pause(0.2)
        table = view.query_one(PacketTable)
        syn = [view.packet_at(i) for i in range(table.row_count)]
        first = next(p for p in syn if p.fields["flags"] == "S" and p.fields["node"] == "h1")
        assert first.fields["opt"].startswith("MP_CAPABLE")  # first, so 80 columns show it
        assert table.narrow and "MP_CAPABLE" in table.row_text(syn.index(first))[:80]
        joins = [p for p in syn if p.fields["opt"].startswith("MP_JOIN")]
        assert joins, "the second subflow's SYNs carry MP_JOIN"
        assert isinstance(first.rec.data.get("mptcp"), list) and isinstance(first.rec.data.get("token"), int)


async def test_one_mptcp_connection_is_one_group_with_both_ends_tokens_in_hex() -> None:
    app = _app("two-paths", transfers=(replace(get_scenario("two-paths").transfers[0], size_bytes=256 * 1024),))
    async with app.run_test(size=(160, 48)) as pilot:
        await until_finished(app, pilot)
        view = app.query_one(SubflowsView)
        (label, conn), *more = view.connections().items()
        assert not more and label == "#1 MPTCP"
        assert sorted(conn["tokens"]) == ["h1", "h2"]
        assert all(len(tok) == 8 and int(tok, 16) >= 0 for tok in conn["tokens"].values())
        assert len(conn["rows"]) == 4  # two subflows, each seen from both ends
        summary = view.summary().plain
        assert summary.startswith("#1 MPTCP: h1 token ") and "⇄ h2 token" in summary
        assert "connection(s)" not in summary
        from textual.widgets import Log

        lines = [str(line) for line in app.query_one("#subflow-log", Log).lines]
        keys = [line for line in lines if ": keys " in line]
        assert keys and all("local_token=" in line and "local_token=" + "0x" not in line for line in keys)
        for line in keys:
            token = line.split("local_token=")[1].split(",")[0]
            assert len(token) == 8 and int(token, 16) in {int(t, 16) for t in conn["tokens"].values()}
