"""A Log that keeps following its tail whatever the record rate, until the reader scrolls up.

Textual's Log follows only when its scroll position already is the maximum at the
moment lines arrive; with pruning (``max_lines``) and batches arriving faster than
the layout settles, or lines written while the tab is hidden, that test fails once
and the log stays behind for good. Here following is a state: it ends when the
reader scrolls up and starts again at the end (scrolling back down, End).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual import events
from textual.binding import Binding
from textual.widgets import Log


class FollowLog(Log):
    BINDINGS = [Binding("end", "follow", "Follow", show=False)]

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.following = True

    def write_lines(self, lines: Iterable[str], scroll_end: bool | None = None) -> FollowLog:  # type: ignore[override]
        super().write_lines(lines, scroll_end=False)
        if self.following and scroll_end is not False:
            self.scroll_end(animate=False, immediate=False, x_axis=False)
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
        if self.following:
            self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)
