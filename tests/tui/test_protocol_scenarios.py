"""The protocol views on the real MPTCP, ENO/tcpcrypt and IKETCP scenarios in the simulator."""

from __future__ import annotations

import pytest
from textual.widgets import Static

from lab.scenario import get_scenario
from lab.sim.liverun import SimRun
from tui.app import LabApp
from tui.widgets.eno import EnoView
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
        assert {r["conn"] for r in mptcp_rows} == {"#1 MPTCP"}  # one connection, both ends inside it
        assert view.mappings > 100  # DSS mappings logged
        assert app.problems == []


async def test_eno_basic_shows_the_agreed_tep_and_one_session_id() -> None:
    app = await _finished_app("eno-basic")
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot, limit_s=120)
        ladder = app.query_one(EnoView).ladder().plain
        assert "SYN      ──────▶ ENO active (b=0)" in ladder
        assert "role A" in ladder and "role B" in ladder
        assert "the same session ID at both ends: the keys were agreed end to end" in ladder
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
        titles = [str(s.render()) for s in app.query(".ike-col-head")]
        assert titles[:2] == ["h1 sequential", "h1 racing"]


async def test_hotspot_packets_list_every_esp_frame_with_rfc_field_names() -> None:
    from textual.widgets import Input

    from tui.widgets.packets import PacketsView, PacketTable

    run = SimRun(get_scenario("hotspot"), seed=1, speed=None)
    app = LabApp(run)
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot, limit_s=120)
        await pilot.press("5")
        await pilot.pause(0.3)
        view = app.query_one(PacketsView)
        table = app.query_one(PacketTable)
        frames = [r for _, r in view.records if r.layer == "iketcp" and r.data.get("kind") == "esp"]
        assert len(frames) > 20
        app.query_one("#packet-filter", Input).value = "layer=iketcp opt=esp"
        await pilot.pause(0.3)
        # one row per ESP frame on the IKETCP connection, each with its ESP sequence number where known
        assert table.row_count == len(frames)
        received = [view.packet_at(i) for i in range(table.row_count) if view.packet_at(i).direction == "←"]
        assert [p.fields["seq"] for p in received] == [
            str(r.data["seq"]) for r in frames if r.name == "segment_received"
        ]
        table.focus()
        table.cursor = table.row_count - 1
        await pilot.pause(0.2)
        text = str(app.query_one("#packet-detail", Static).render())
        assert "RFC 9329 §3.2" in text and "ESP packet (octets)" in text
        app.query_one("#packet-filter", Input).value = "layer=esp"
        await pilot.pause(0.3)
        table.cursor = 0
        await pilot.pause(0.2)
        text = str(app.query_one("#packet-detail", Static).render())
        for name in ("Security Parameters Index (SPI)", "RFC 4303 §2.1", "Sequence Number", "RFC 4303 §2.2"):
            assert name in text
        app.query_one("#packet-filter", Input).value = "layer=ike IKE_SA_INIT tcp:4500"
        await pilot.pause(0.3)
        assert table.row_count >= 2
        table.cursor = 0
        await pilot.pause(0.2)
        text = str(app.query_one("#packet-detail", Static).render())
        for name in ("IKE SA Initiator's SPI", "Exchange Type: IKE_SA_INIT (34)", "Message ID: 0", "RFC 7296 §3.1"):
            assert name in text
        assert "RFC 9329 §3.1" in text  # carried over TCP: Length + Non-ESP Marker
        assert app.problems == []


async def test_mptcp_data_sequence_numbers_are_shown_relative_to_the_idsn() -> None:
    from textual.widgets import Log

    app = await _finished_app("mptcp-two-paths")
    async with app.run_test(size=SIZE) as pilot:
        await until_finished(app, pilot, limit_s=120)
        lines = [str(line) for line in app.query_one("#subflow-log", Log).lines]
        mappings = [line for line in lines if " DSS data_seq=" in line]
        assert mappings and all(line.split("data_seq=")[1].split()[0].isdigit() for line in mappings)
        # relative to the IDSN, as tshark shows them: the first data byte is IDSN+1 (RFC 8684 §3.3.1), so 1;
        # every mapping the log still holds lies within
        # the transfer, at the sender and at the receiver, and the last one ends one past its size: the
        # DATA_FIN takes the sequence number after the last byte (RFC 8684 §3.3.3)
        (result,) = app.lab_run.results()
        for arrow in (" → ", " ← "):
            mine = [line for line in mappings if arrow in line]
            starts = [int(line.split("data_seq=")[1].split()[0]) for line in mine]
            ends = [start - 1 + int(line.rsplit("len=", 1)[1]) for start, line in zip(starts, mine, strict=True)]
            assert mine and min(starts) >= 1 and max(ends) == result.bytes_expected + 1
