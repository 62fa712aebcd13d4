"""The status line and the replay time slider."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.reactive import reactive
from textual.widget import Widget
from textual.widgets import Static


class StatusBar(Static):
    """Scenario, backend, virtual time, speed, paused, transfers, problems."""

    def show(self, *, name: str, backend: str, status: Any, problems: int) -> None:
        speed = "max" if status.speed is None else f"×{status.speed:g}"
        text = Text()
        text.append(f" {name} ", style="bold reverse")
        text.append(f" {backend}  t={status.now:8.3f} s  speed {speed}  ")
        if status.paused:
            text.append(" PAUSED ", style="bold reverse")
            text.append("  ")
        if status.finished:
            text.append("finished  ", style="bold")
        text.append(status.text)
        if problems:
            text.append(f"  problems: {problems} (tab 6)", style="bold reverse")
        if text.plain == getattr(self, "_shown", None):
            return
        self._shown = text.plain
        self.update(text, layout=False)  # one line, always: no relayout of the screen
        self.set_class(status.paused, "-paused")
        self.set_class(problems > 0, "-problem")


class TimeSlider(Widget, can_focus=True):
    """Where a replay is, as a bar; ←/→ or click to move."""

    BINDINGS = [
        Binding("left", "nudge(-1)", "−1 s", show=False),
        Binding("right", "nudge(1)", "+1 s", show=False),
    ]
    DEFAULT_CSS = "TimeSlider { height: 1; }"

    position: reactive[float] = reactive(0.0)

    class Seek(Message):
        def __init__(self, t: float) -> None:
            super().__init__()
            self.t = t

    def __init__(self, duration: float, **kw: Any) -> None:
        super().__init__(**kw)
        self.duration = max(duration, 1e-9)

    def render(self) -> Text:
        label = f" {self.position:7.3f} / {self.duration:.3f} s "
        width = max(10, self.size.width - len(label) - 2)
        filled = int(width * min(1.0, self.position / self.duration))
        text = Text("▕")
        text.append("━" * filled, style="bold")
        text.append("●" if filled < width else "")
        text.append("─" * max(0, width - filled - 1), style="dim")
        text.append("▏" + label)
        return text

    def on_click(self, event: events.Click) -> None:
        width = max(10, self.size.width - 22)
        fraction = max(0.0, min(1.0, (event.x - 1) / width))
        self.post_message(self.Seek(fraction * self.duration))

    def action_nudge(self, seconds: float) -> None:
        self.post_message(self.Seek(max(0.0, min(self.duration, self.position + seconds))))
