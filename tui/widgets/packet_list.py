"""A fast list of rows with a cursor: appending costs nothing until a row is on screen
(the Packets view gets thousands of rows a second; a DataTable measures every cell)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

CURSOR = Style(reverse=True, bold=True)
MARKED = Style(bold=True, underline=True)


class RowList(ScrollView, can_focus=True):
    """Rows of plain text (``format_row(item)``) with a cursor; ``Highlighted`` names the item."""

    DEFAULT_CSS = """
    RowList {
        background: $surface;
        overflow-y: scroll;
        overflow-x: auto;
    }
    """
    BINDINGS = [
        Binding("up", "move(-1)", "Up", show=False),
        Binding("down", "move(1)", "Down", show=False),
        Binding("pageup", "move(-20)", "Page up", show=False),
        Binding("pagedown", "move(20)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
    ]

    cursor: reactive[int] = reactive(-1, always_update=True)

    class Highlighted(Message):
        def __init__(self, row_list: RowList, index: int, item: Any) -> None:
            super().__init__()
            self.row_list = row_list
            self.index = index
            self.item = item

        @property
        def control(self) -> RowList:
            return self.row_list

    def __init__(
        self, format_row: Callable[[Any], str], *, marked: Callable[[Any], bool] | None = None, **kw: Any
    ) -> None:
        super().__init__(**kw)
        self._format = format_row
        self._marked = marked
        self.items: list[Any] = []
        self._lines: dict[int, str] = {}
        self._width = 0

    @property
    def row_count(self) -> int:
        return len(self.items)

    def row_text(self, index: int) -> str:
        line = self._lines.get(index)
        if line is None:
            line = self._lines[index] = self._format(self.items[index])
            self._width = max(self._width, cell_len(line))
        return line

    def set_items(self, items: Sequence[Any]) -> None:
        self.items = list(items)
        self._lines.clear()
        self._width = 0
        self.cursor = min(self.cursor, len(self.items) - 1)
        self._resize()

    def extend(self, items: Sequence[Any], *, limit: int) -> None:
        """Append ``items``; beyond ``limit`` rows the oldest go. Follows the end when the cursor was on it."""
        follow = self.cursor >= len(self.items) - 1
        self.items.extend(items)
        if len(self.items) > limit:
            drop = len(self.items) - limit
            del self.items[:drop]
            self._lines = {i - drop: line for i, line in self._lines.items() if i >= drop}
            if not follow:
                self.cursor = max(0, self.cursor - drop)
        self._resize()
        if follow and self.items:
            self.cursor = len(self.items) - 1
            self.scroll_end(animate=False, immediate=False, x_axis=False)
        else:
            self.refresh()

    def _resize(self) -> None:
        self.virtual_size = Size(max(self._width, 160), len(self.items))

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        base = self.rich_style
        if not 0 <= index < len(self.items):
            return Strip.blank(width, base)
        text = self.row_text(index)
        style = base + CURSOR if index == self.cursor else base
        if self._marked is not None and index != self.cursor and self._marked(self.items[index]):
            style = base + MARKED
        visible = text[scroll_x : scroll_x + width]
        visible += " " * max(0, width - cell_len(visible))
        return Strip([Segment(visible, style)], width)

    def watch_cursor(self, old: int, new: int) -> None:
        if 0 <= new < len(self.items):
            self.scroll_to_region_if_needed(new)
            self.post_message(self.Highlighted(self, new, self.items[new]))
        self.refresh()

    def scroll_to_region_if_needed(self, index: int) -> None:
        top = self.scroll_offset.y
        height = max(1, self.size.height)
        if index < top:
            self.scroll_to(y=index, animate=False, immediate=True)
        elif index >= top + height:
            self.scroll_to(y=index - height + 1, animate=False, immediate=True)

    def action_move(self, delta: int) -> None:
        if self.items:
            self.cursor = max(0, min(len(self.items) - 1, (self.cursor if self.cursor >= 0 else 0) + delta))

    def action_jump(self, index: int) -> None:
        if self.items:
            self.cursor = index if index >= 0 else len(self.items) - 1

    def on_click(self, event: events.Click) -> None:
        index = self.scroll_offset.y + event.y
        if 0 <= index < len(self.items):
            self.cursor = index
