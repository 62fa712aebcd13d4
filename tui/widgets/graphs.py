"""Graphs: per-path throughput over time (stacked, one scale), the data sequence of each subflow
over time with retransmissions and reinjections marked, and the run's highlights.

Both pictures share one time axis (and one left margin), so a link going down (✗ on the axis),
the throughput moving to the other path and the reinjected data (◆) line up in one column.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget

from lab.trace import TraceRecord
from tui.path_names import PathNames
from tui.plots import SequenceHistory, ThroughputHistory, draw_sequence, draw_throughput
from tui.widgets.base import BAD_RECORD, TraceView
from tui.widgets.highlights import HighlightsPane

SHORT_SCREEN = 36  # on a terminal this short (the view gets ~29 rows) the highlights give their room to the
# pictures; they are on the Events view too


class ThroughputPlot(Widget):
    DEFAULT_CSS = "ThroughputPlot { height: 1fr; min-height: 5; }"

    def __init__(self, history: ThroughputHistory, **kw: Any) -> None:
        super().__init__(**kw)
        self.history = history
        self.shown: dict[str, Any] = {}  # what the last drawing showed (tests read it)

    def render(self) -> Text:
        text, self.shown = draw_throughput(self.history, self.size.width, self.size.height)
        return text


class SequencePlot(Widget):
    DEFAULT_CSS = "SequencePlot { height: 1fr; min-height: 5; }"

    def __init__(self, history: SequenceHistory, throughput: ThroughputHistory, **kw: Any) -> None:
        super().__init__(**kw)
        self.history = history
        self.throughput = throughput
        self.shown: dict[str, Any] = {}

    def render(self) -> Text:
        span = self.throughput.span()
        lo, hi = span
        hi = max(hi, self.history.clock)
        text, self.shown = draw_sequence(
            self.history, self.size.width, self.size.height, (lo, hi), self.throughput.link_events
        )
        return text


class GraphsView(Vertical, TraceView):
    def __init__(self, topology: dict[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        names = PathNames(topology)
        self.throughput = ThroughputHistory(names)
        self.sequence = SequenceHistory(names)
        self._topology = topology
        self._dirty = False

    def compose(self) -> ComposeResult:
        yield ThroughputPlot(self.throughput, id="throughput-plot")
        yield SequencePlot(self.sequence, self.throughput, id="sequence-plot")
        yield HighlightsPane(self._topology, id="graphs-highlights")

    def on_mount(self) -> None:
        self._fit_height()
        # the app feeds the highlights pane itself (it is a TraceView of its own)
        self._plots = [self.query_one(ThroughputPlot), self.query_one(SequencePlot)]
        self._highlights = self.query_one(HighlightsPane)

    def apply(self, records: list[TraceRecord]) -> None:
        add_rate, add_seq = self.throughput.add, self.sequence.add
        changed = False
        for rec in records:
            try:
                changed = add_rate(rec) | changed
                changed = add_seq(rec) | changed
            except BAD_RECORD as exc:
                self.bad_record(rec, exc)
        if records:
            changed = True  # the clock moved: rates decay
        self._dirty = self._dirty or changed

    def flush(self) -> None:
        if not self.is_mounted:
            return
        self._fit_height()
        if self._dirty:
            self._dirty = False
            for plot in self._plots:
                plot.refresh()  # drawn only when on screen

    def run_ended(self) -> None:
        self.throughput.ended = True
        self._dirty = True
        self.flush()

    def reset(self) -> None:
        self.throughput.reset()
        self.sequence.reset()
        self._dirty = True

    def _fit_height(self) -> None:
        """On a short terminal the pictures take the whole view. Decided from the terminal's
        height, so it holds before the view is first drawn; checked again as the app flushes."""
        self.set_class(self.app.size.height < SHORT_SCREEN, "-short")

    def on_resize(self, event: Any) -> None:
        self._fit_height()

    def state(self) -> Any:
        group = self.sequence.main_group()
        return {
            "paths": self.throughput.paths(),
            "rates": self.throughput.current(),
            "connection": None if group is None else group.label,
            "highlights": self._highlights.state() if self.is_mounted else [],
        }
