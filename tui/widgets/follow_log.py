"""A Log that keeps following its tail whatever the record rate, until the reader scrolls up.

Textual's Log follows only when its scroll position already is the maximum at the
moment lines arrive; with pruning (``max_lines``) and batches arriving faster than
the layout settles, or lines written while the tab is hidden, that test fails once
and the log stays behind for good. Here following is a state: it ends when the
reader scrolls up and starts again at the end (scrolling back down, End).

Lines are written to the screen a few times a second, and only while the log is
on screen: every write grows the log's virtual size, which costs a layout of the
whole screen (11-35 ms at 120x40), and at thousands of records a second those
layouts were what a key press waited behind. A hidden log keeps at most
``max_lines`` lines waiting and shows them when its view opens.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from textual import events
from textual.binding import Binding
from textual.widgets import Log


class FollowLog(Log):
    BINDINGS = [Binding("end", "follow", "Follow", show=False)]

    DRAIN_S = 0.25  # how often waiting lines reach the screen

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.following = True
        self._pending: deque[str] = deque(maxlen=self.max_lines)

    @property
    def lines(self) -> Sequence[str]:
        """Every line, the ones still waiting for the screen included."""
        if not self._pending:
            return super().lines
        return [*super().lines, *self._pending]

    def on_mount(self) -> None:
        self.set_interval(self.DRAIN_S, self.drain)

    def write_lines(self, lines: Iterable[str], scroll_end: bool | None = None) -> FollowLog:  # type: ignore[override]
        self._pending.extend(lines)
        return self

    def drain(self) -> None:
        """Write the waiting lines, if the log is on screen."""
        if not self._pending or not self.is_on_screen:
            return
        lines = list(self._pending)
        self._pending.clear()
        super().write_lines(lines, scroll_end=False)
        if self.following:
            self.scroll_end(animate=False, immediate=False, x_axis=False)

    def clear(self) -> FollowLog:  # type: ignore[override]
        self._pending.clear()
        super().clear()
        return self

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.following = False

    def on_key(self, event: events.Key) -> None:
        if event.key in ("up", "pageup", "home"):
            self.following = False

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if new >= self.max_scroll_y and self.max_scroll_y > 0:
            self.following = True

    def action_follow(self) -> None:
        self.following = True
        self.scroll_end(animate=False)

    def on_resize(self, event: events.Resize) -> None:
        if self.following:  # shown after being hidden, or the terminal resized: the tail at the new size
            self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)

    def on_show(self) -> None:
        self.call_after_refresh(self.drain)
        if self.following:
            self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)
