"""The key moment on screen: its caption (plain words, the RFC section) and a timeline of marks."""

from __future__ import annotations

import textwrap
from typing import Any

from rich.text import Text
from textual.widget import Widget

from lab.scenario.moments import Moment

MARK = "◆"


class MomentBar(Widget):
    """One caption, wrapped with a hanging indent under its time; says how to go on."""

    DEFAULT_CSS = "MomentBar { height: auto; max-height: 3; }"

    def __init__(self, total: int, *, pausing: bool, **kw: Any) -> None:
        super().__init__(**kw)
        self.total = total  # moments the scenario declares (kinds, not occurrences)
        self.pausing = pausing
        self.moment: Moment | None = None
        self.index = 0
        self.count = 0
        self.paused_here = False

    def show(self, moment: Moment | None, index: int, count: int, *, paused_here: bool) -> None:
        self.moment, self.index, self.count, self.paused_here = moment, index, count, paused_here
        self.set_class(moment is not None, "-moment")
        self.set_class(paused_here, "-paused")
        self.refresh(layout=True)

    def plain(self) -> str:
        return self._text(200).plain

    def _text(self, width: int) -> Text:
        m = self.moment
        if m is None:
            if self.total:
                how = "the lab pauses at each; space resumes" if self.pausing else "n/N: from one to the next"
                return Text(f" {MARK} key moments to come ({how})", style="dim")
            return Text(" no key moments declared for this run", style="dim")
        head = f" {MARK} {self.index + 1}/{self.count}  {m.t:.3f} s  "
        tail = f"  [{m.rfc}]"
        body = m.caption + tail
        indent = " " * len(head)
        lines = textwrap.wrap(body, width=max(20, width - 1), initial_indent=head, subsequent_indent=indent) or [head]
        text = Text()
        for i, line in enumerate(lines[:3]):
            if i:
                text.append("\n")
            if i == 0:
                text.append(line[: len(head)], style="bold reverse")
                text.append(line[len(head) :], style="bold")
            else:
                text.append(line, style="bold")
        return text

    def render(self) -> Text:
        return self._text(self.size.width or 80)

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        return min(3, max(1, len(self._text(width).plain.split("\n"))))


class MomentTimeline(Widget):
    """Where the run is and where its moments were: ``▕──◆────◆──●    ▏``; the shown one is bold."""

    DEFAULT_CSS = "MomentTimeline { height: 1; }"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.marks: list[float] = []
        self.now = 0.0
        self.duration: float | None = None
        self.current: int | None = None

    def update_marks(self, marks: list[float], now: float, current: int | None, duration: float | None = None) -> None:
        if (marks, round(now, 2), current, duration) == (self.marks, round(self.now, 2), self.current, self.duration):
            return
        self.marks, self.now, self.current, self.duration = list(marks), now, current, duration
        self.refresh()

    def line(self, width: int) -> Text:
        label = f" t={self.now:.2f} s  n/N "
        inner = max(10, width - len(label) - 2)
        span = self.duration or max([self.now, *self.marks, 1.0]) * 1.15
        cells = ["─"] * inner
        styles = ["dim"] * inner
        pos = min(inner - 1, int(inner * min(1.0, self.now / span))) if span > 0 else 0
        for i in range(pos):
            cells[i], styles[i] = "━", ""
        cells[pos], styles[pos] = "●", "bold"
        for i, t in enumerate(self.marks):
            x = min(inner - 1, int(inner * min(1.0, t / span))) if span > 0 else 0
            cells[x] = MARK
            styles[x] = "bold reverse" if i == self.current else "bold"
        # one span per run of equal style (a span per cell made this 3-4 ms a frame)
        text = Text("▕")
        start = 0
        for i in range(1, inner + 1):
            if i == inner or styles[i] != styles[start]:
                text.append("".join(cells[start:i]), style=styles[start])
                start = i
        text.append("▏" + label)
        return text

    def render(self) -> Text:
        return self.line(self.size.width or 80)
