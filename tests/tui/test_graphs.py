"""The Graphs view and the highlights pane: pictures whose numbers hold (the stacked throughput
integrates to the bytes delivered, its top is the sum of the paths, no path above its link), the
data sequence with reinjections where the trace has them, and highlights that name the failure's
reinjections with their subflows, live, replayed and in a real terminal."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from lab.scenario import get_scenario
from lab.scenario.backend import get_backend
from lab.scenario.rates import rate_error_bps
from lab.trace import TraceRecord
from tui.path_names import PathNames
from tui.plots import (
    EIGHTHS,
    MARK_REINJECTED,
    MARK_RETRANSMITTED,
    PATH_FILLS,
    REINJECTED,
    SequenceHistory,
    ThroughputHistory,
    draw_sequence,
    draw_throughput,
)
from tui.widgets.follow_log import FollowLog
from tui.widgets.graphs import GraphsView, SequencePlot, ThroughputPlot
from tui.widgets.highlights import HighlightFinder, HighlightsPane

from .conftest import replay_app, until_finished, write_trace

MIB = 1024 * 1024
# subflow counters are bytes received in or out of order (tests/tui/test_rates.py states the same
# tolerance for the Subflows view)
SUBFLOW_TOLERANCE = 0.05
LINK_DOWN_S = 1.5  # path-failure takes r1-h2 down at 1.5 s


@functools.cache
def scenario_trace(name: str) -> tuple[tuple[TraceRecord, ...], dict]:
    run = get_backend("sim").live_run(get_scenario(name), seed=1, speed=None, pause_at_moments=False)
    records = run.run_to_end()
    topology = run.topology()
    run.close()
    return tuple(records), topology


def histories(name: str) -> tuple[ThroughputHistory, SequenceHistory, dict]:
    records, topology = scenario_trace(name)
    names = PathNames(topology)
    throughput, sequence = ThroughputHistory(names), SequenceHistory(names)
    for rec in records:
        throughput.add(rec)
        sequence.add(rec)
    throughput.ended = True
    return throughput, sequence, topology


def delivered_bytes(name: str) -> int:
    records, _ = scenario_trace(name)
    return sum(
        int(r.data["bytes"])
        for r in records
        if r.layer == "app" and r.name == "state_updated" and r.data.get("event") == "received"
    )


@pytest.mark.parametrize("name", ["path-failure", "mptcp-two-paths"])
def test_throughput_integrates_to_the_delivered_bytes(name: str) -> None:
    throughput, _, _ = histories(name)
    t0, t1 = throughput.span()
    for columns in (70, 150):
        _, series = throughput.columns(t0, t1, columns)
        area_bytes = sum(sum(values) for values in series.values()) * (t1 - t0) / columns / 8
        assert area_bytes == pytest.approx(delivered_bytes(name), rel=0.02), (columns, area_bytes)


@pytest.mark.parametrize("name", ["path-failure", "mptcp-two-paths"])
def test_no_path_above_its_link_and_every_rate_ends_at_zero(name: str) -> None:
    throughput, _, topology = histories(name)
    bandwidth = {link["name"]: float(link["bw_mbps"]) * 1e6 for link in topology["links"]}
    first_hop_link = {"via r1": bandwidth["h1-r1"], "via r2": bandwidth["h1-r2"]}
    assert throughput.paths() == ["via r1", "via r2"]
    t0, t1 = throughput.span()
    _, series = throughput.columns(t0, t1, 400)
    for path, values in series.items():
        limit = first_hop_link[path] * (1 + SUBFLOW_TOLERANCE) + rate_error_bps()
        assert max(values) <= limit, (path, max(values), limit)
        assert max(values) > 0.5 * first_hop_link[path]  # both paths carried data
        assert throughput.rate_at(path, t1) == 0.0  # a window after the last byte: decayed to zero
        assert values[-1] < 0.05 * max(values)
    assert throughput.current() == {"via r1": 0.0, "via r2": 0.0}  # the run is over


def test_path_failure_shows_the_handover_on_one_scale() -> None:
    throughput, _, _ = histories("path-failure")
    # while r1-h2 is down (a window after 1.5 s until 4 s) path A carries nothing; path B carries on
    for t in (2.6, 3.0, 3.9):
        assert throughput.rate_at("via r1", t) == 0.0
        assert throughput.rate_at("via r2", t) > 5e6
    assert throughput.rate_at("via r1", 1.0) > 5e6


def _column_height_eighths(lines: list[str], x: int) -> int:
    """The drawn height of column ``x`` (from the bottom of the plot rows), in eighths of a cell."""
    height = 0
    for line in reversed(lines):
        ch = line[x] if x < len(line) else " "
        if ch in PATH_FILLS:
            height += 8
        elif ch in EIGHTHS and ch != " ":
            return height + EIGHTHS.index(ch)
        else:
            return height
    return height


@pytest.mark.parametrize("size", [(80, 9), (160, 20)])
def test_the_stacked_top_is_the_sum_of_the_paths(size: tuple[int, int]) -> None:
    throughput, _, _ = histories("path-failure")
    width, height = size
    text, shown = draw_throughput(throughput, width, height)
    lines = text.plain.split("\n")
    assert len(lines) == height and all(len(line) <= width for line in lines)
    assert "via r1" in lines[0] and "via r2" in lines[0]
    plot_rows = lines[1 : 1 + shown["rows"]]
    axis = 7
    top, rows = shown["top_bps"], shown["rows"]
    columns = shown["columns"]
    checked = 0
    for x, drawn in enumerate(shown["heights"]):
        total = sum(values[x] for values in columns.values())
        assert drawn == round(total / top * rows * 8)  # the stack's top is the sum of the paths
        assert _column_height_eighths([row[axis:] for row in plot_rows], x) == drawn
        checked += drawn > 0
    assert checked > width // 2
    assert "✗" in lines[-1] and "↑" in lines[-1]  # the link down and up on the time axis


def test_the_data_sequence_marks_the_failure_driven_reinjections() -> None:
    throughput, sequence, _ = histories("path-failure")
    group = sequence.main_group()
    assert group is not None and group.mptcp and group.node == "h1"
    # every byte of the transfer is on the picture (relative DSNs from IDSN + 1)
    assert max(hi for _, hi, _ in group.bins.values()) - group.origin() == 16 * MIB
    reinjected = [(t, group.subflows[sf]) for t, sf, _, mark in group.marks if mark & MARK_REINJECTED]
    retransmitted = [t for t, _, _, mark in group.marks if mark & MARK_RETRANSMITTED]
    assert retransmitted
    failure = [(t, sf) for t, sf in reinjected if LINK_DOWN_S < t < 4.0]
    assert failure, reinjected[:5]
    assert all(sf.startswith("10.0.3.1:") for _, sf in failure)  # resent over path B, where h1's address is 10.0.3.1
    text, shown = draw_sequence(sequence, 120, 16, throughput.span(), throughput.link_events)
    assert REINJECTED in text.plain and "reinjected" in text.plain
    assert any(mark & MARK_REINJECTED for mark in shown["cells"].values())


def test_highlights_name_the_failure_driven_reinjections() -> None:
    records, topology = scenario_trace("path-failure")
    finder = HighlightFinder(PathNames(topology))
    for rec in records:
        finder.feed(rec)
    lines = [h.plain() for h in finder.items]
    kinds = [h.kind for h in finder.items]
    assert kinds.index("link_down") < kinds.index("reinject") < kinds.index("link_up")
    rto = [h for h in finder.items if h.kind == "reinject" and h.extra["why"] == "retransmission timeout"]
    assert rto and all(LINK_DOWN_S < h.t < 4.0 for h in rto)
    for h in rto:
        assert "via r1" in h.extra["from"] or "via r2" in h.extra["from"]
        assert h.extra["to"] and "via r2" in h.extra["to"]  # where the data went: the path still up
    line = next(line for line in lines if "REINJECT" in line and "retransmission timeout" in line)
    assert " → :" in line and "link down" in line
    assert sum(h.count for h in rto) == sum(
        1
        for r in records
        if r.layer == "mptcp" and (r.data.get("reinjected") or {}).get("why") == "retransmission timeout"
    )  # folded, not lost
    assert any(h.kind == "delivered" for h in finder.items)


def test_highlights_of_mp_fail_and_the_fallback() -> None:
    records, topology = scenario_trace("mptcp-mpfail-fallback")
    finder = HighlightFinder(PathNames(topology))
    for rec in records:
        finder.feed(rec)
    words = [h.plain().split()[2] for h in finder.items]
    assert words.index("MIDDLEBOX") < words.index("MP_FAIL") < words.index("INF-MAP") < words.index("FALLBACK")


def test_highlights_of_eno_ike_and_tcpcrypt_records() -> None:
    conn = "10.0.1.1:40000->10.0.2.2:5001"
    records = [
        TraceRecord(
            0.1,
            "r1",
            "middlebox",
            "segment_sent",
            {"action": "rewritten", "stripped_kinds": [69], "ingress": "r1-eth0", "policy": "strip_tcp_options"},
        ),
        TraceRecord(
            0.1,
            "r1",
            "middlebox",
            "segment_sent",
            {"action": "rewritten", "stripped_kinds": [69], "ingress": "r1-eth0", "policy": "strip_tcp_options"},
        ),
        TraceRecord(
            0.2,
            "h2",
            "eno",
            "state_updated",
            {
                "conn": conn,
                "from": "listen",
                "to": "fallback",
                "reason": "no_eno_option",
                "detail": "the SYN carries no ENO option",
                "policy": "opportunistic",
            },
        ),
        TraceRecord(
            0.3, "h1", "tcpcrypt", "error", {"reason": "authentication_failed", "detail": "tag", "offset": 4096}
        ),
        TraceRecord(
            2.0,
            "h1",
            "ike",
            "state_updated",
            {"attempt": 1, "event": "timeout", "transport": "udp", "port": 500, "after_s": 2.0},
        ),
        TraceRecord(
            2.1,
            "h1",
            "ike",
            "state_updated",
            {"attempt": 2, "event": "won", "transport": "tcp", "port": 4500, "after_s": 2.1},
        ),
    ]
    finder = HighlightFinder()
    for rec in records:
        finder.feed(rec)
    lines = [h.plain() for h in finder.items]
    assert "STRIPPED" in lines[0] and "ENO (69)" in lines[0] and "×2" in lines[0]  # a burst folds, counted
    assert "FALLBACK" in lines[1] and "no ENO option" in lines[1]
    assert "AEAD-FAIL" in lines[2] and "4096" in lines[2]
    assert "IKE" in lines[3] and "no answer over udp 500" in lines[3]
    assert "IKE SA up over tcp 4500" in lines[4]


@pytest.fixture
def path_failure_bundle(tmp_path: Path) -> Path:
    records, topology = scenario_trace("path-failure")
    return write_trace(tmp_path / "path-failure", list(records), topology)


@pytest.mark.asyncio
@pytest.mark.parametrize("size", [(80, 24), (160, 48)])
async def test_graphs_and_highlights_in_the_app(path_failure_bundle: Path, size: tuple[int, int]) -> None:
    app = replay_app(path_failure_bundle)
    async with app.run_test(size=size) as pilot:
        await until_finished(app, pilot)
        await pilot.press("7")
        await pilot.pause(0.3)
        view = app.query_one(GraphsView)
        plot, seq = app.query_one(ThroughputPlot), app.query_one(SequencePlot)
        assert plot.region.height >= 7 and seq.region.height >= 7, (plot.region, seq.region)
        shown = plot.shown
        for x, drawn in enumerate(shown["heights"]):
            total = sum(values[x] for values in shown["columns"].values())
            assert drawn == round(total / shown["top_bps"] * shown["rows"] * 8)
        assert view.state()["paths"] == ["via r1", "via r2"]
        assert any(mark & MARK_REINJECTED for mark in seq.shown["cells"].values())
        await pilot.press("6")
        await pilot.pause(0.3)
        pane = app.query_one("#events-highlights", HighlightsPane)
        lines = pane.state()
        assert any("REINJECT" in line and "retransmission timeout" in line and "→ :" in line for line in lines)
        assert pane.region.height >= 3
        assert pane.scroll_y == pane.max_scroll_y  # at its tail
        footer = app.query_one("Footer")
        assert footer.region.height == 1


@pytest.mark.asyncio
async def test_every_log_follows_its_tail_whatever_the_record_rate(path_failure_bundle: Path) -> None:
    """80 000 records as fast as the replay gives them, the views hidden or shown: each log ends at its last line."""
    app = replay_app(path_failure_bundle)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("2")  # the subflow log on screen from the start
        await until_finished(app, pilot)
        app.flush_views()
        await pilot.pause(0.3)
        for tab, selector in (("2", "#subflow-log"), ("6", "#events-view"), ("6", "#events-highlights")):
            await pilot.press(tab)
            await pilot.pause(0.3)
            log = app.query_one(selector)
            assert isinstance(log, (FollowLog, HighlightsPane))
            assert log.max_scroll_y > 0, selector
            assert log.scroll_y == log.max_scroll_y, (selector, log.scroll_y, log.max_scroll_y)
        # scrolling up stops following; End follows again, and new lines keep it at the tail
        pane = app.query_one("#events-highlights", HighlightsPane)
        pane.focus()
        await pilot.press("up")
        await pilot.pause()
        assert not pane.following
        await pilot.press("end")
        await pilot.pause()
        assert pane.following and pane.scroll_y == pane.max_scroll_y


@pytest.mark.parametrize("name", ["path-failure", "mptcp-mpfail-fallback"])
def test_live_and_replayed_records_give_the_same_highlights_and_pictures(name: str, tmp_path: Path) -> None:
    """The replay reads trace.jsonl (JSON round trip): what the live run's records showed, it shows."""
    from lab.runs import load_records

    records, topology = scenario_trace(name)
    # a bundle of just trace.jsonl and topology.json replays with a note that it is incomplete (a
    # ``run`` record); the rest is the live run's records read back
    replayed = [
        r
        for r in load_records(write_trace(tmp_path / name, list(records), topology) / "trace.jsonl")
        if r.layer != "run"
    ]

    def shown(recs: list[TraceRecord]) -> tuple[list[str], str, str]:
        names = PathNames(topology)
        finder, throughput, sequence = HighlightFinder(names), ThroughputHistory(names), SequenceHistory(names)
        for rec in recs:
            finder.feed(rec)
            throughput.add(rec)
            sequence.add(rec)
        throughput.ended = True
        rates, _ = draw_throughput(throughput, 100, 12)
        seq, _ = draw_sequence(sequence, 100, 12, throughput.span(), throughput.link_events)
        return [h.plain() for h in finder.items], rates.plain, seq.plain

    # trace.jsonl keeps times to the nanosecond (docs/trace.md): the live records at that resolution, so
    # that a segment a few 1e-17 s from a column's edge is drawn in the same column both ways
    live = shown([TraceRecord(round(r.t, 9), r.node, r.layer, r.name, r.data) for r in records])
    assert live == shown(replayed)
    assert live[0]  # something to compare
