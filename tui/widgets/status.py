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


def elide_middle(message: str, room: int) -> str:
    """``message`` cut in its middle to ``room`` characters (a path keeps its file name); whole when it
    fits or when there is no room to speak of (a widget not laid out yet)."""
    if len(message) <= room or room < 16:
        return message
    head = room - 1 - room // 4  # a sentence: mostly its start
    name = message[message.rfind("/") :] if "/" in message else ""
    if name and len(name) <= room - 9:  # a path: its file name whole, as much of the start as fits
        head = room - 1 - len(name)
    return message[:head] + "…" + message[len(message) - (room - head - 1) :]


class StatusBar(Static):
    """Scenario, backend, virtual time, speed, paused, transfers, problems."""

    def show(
        self,
        *,
        name: str,
        backend: str,
        status: Any,
        problems: int,
        notice: tuple[str, str] | None = None,
        expected: int = 0,
    ) -> None:
        speed = "max" if status.speed is None else f"×{status.speed:g}"
        actual = (status.extra or {}).get("actual_speed")
        if isinstance(actual, (int, float)) and (status.speed is None or actual < 0.9 * status.speed):
            speed += f" (runs at ×{actual:.2g})"  # the simulator cannot keep up: say what it really does
        text = Text()
        text.append(f" {name} ", style="bold reverse")
        text.append(f" {backend} t={status.now:.3f} s {speed} ")
        if status.paused:
            text.append(" PAUSED ", style="bold reverse")
            text.append(" ")
        if status.finished:
            text.append("finished ", style="bold")
        tail = Text()
        if expected:
            tail.append(f"  as expected: {expected} (tab 6)", style="bold")
        if problems:
            tail.append(f"  problems: {problems} (tab 6)", style="bold reverse")
        if notice is not None:
            message, severity = notice
            mark = {"error": "✗ ", "warning": "! "}.get(severity, "· ")
            room = self.size.width - len(text.plain) - len(tail.plain) - len(mark)
            message = elide_middle(message, room)
            text.append(mark + message, style="bold reverse" if severity in ("error", "warning") else "bold")
        else:
            text.append(status.text)
        text.append_text(tail)
        if text.plain == getattr(self, "_shown", None):
            return
        self._shown = text.plain
        self.update(text, layout=False)  # one line, always: no relayout of the screen
        self.set_class(status.paused, "-paused")
        self.set_class(problems > 0, "-problem")


class ReplayBanner(Static):
    """One line above everything when a replayed bundle is cut off, unfinished or damaged;
    hidden for a whole, intact bundle."""

    DEFAULT_CSS = "ReplayBanner { height: auto; max-height: 2; display: none; text-style: bold reverse; }"

    def show_status(self, status: Any) -> None:
        text = (status.extra or {}).get("banner")
        if text == getattr(self, "_shown", None):
            return
        self._shown = text
        self.display = bool(text)
        if text:
            self.update(Text("⚠ " + text))


class TimeSlider(Widget, can_focus=True):
    """Where a replay is, as a bar with its key moments (◆); while the trace loads, how far
    that has got. ←/→ one second, Shift+←/→ a tenth, PgUp/PgDn ten, Home/End the ends, or a click."""

    BINDINGS = [
        Binding("left", "nudge(-1)", "−1 s", show=False),
        Binding("right", "nudge(1)", "+1 s", show=False),
        Binding("shift+left", "nudge(-0.1)", "−0.1 s", show=False),
        Binding("shift+right", "nudge(0.1)", "+0.1 s", show=False),
        Binding("pageup", "nudge(-10)", "−10 s", show=False),
        Binding("pagedown", "nudge(10)", "+10 s", show=False),
        Binding("home", "seek_to(0)", "start", show=False),
        Binding("end", "seek_to(1)", "end", show=False),
    ]
    DEFAULT_CSS = "TimeSlider { height: 1; }"

    position: reactive[float] = reactive(0.0)
    load_fraction: reactive[float | None] = reactive(None)  # (Widget.loading is taken: a spinner)

    class Seek(Message):
        def __init__(self, t: float) -> None:
            super().__init__()
            self.t = t

    def __init__(self, duration: float, marks: list[float] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.duration = max(duration, 1e-9)
        self.marks = list(marks or [])  # key moments, drawn as ◆

    def show_status(self, status: Any) -> None:
        """Follow a run's status: its position, and (a replay loading in the background) its
        duration, moments and loading progress once they are known."""
        extra = status.extra or {}
        duration = extra.get("duration")
        if isinstance(duration, (int, float)) and duration > 0 and duration != self.duration:
            self.duration = float(duration)
            self.refresh()
        marks = extra.get("marks")
        if isinstance(marks, list) and marks != self.marks:
            self.marks = list(marks)
            self.refresh()
        self.load_fraction = extra.get("loading")
        self.position = status.now

    def _label(self) -> str:
        return f" {self.position:7.3f} / {self.duration:.3f} s "

    def render(self) -> Text:
        if self.load_fraction is not None:
            label = f" loading the trace {self.load_fraction:4.0%} "
            width = max(10, self.size.width - len(label) - 2)
            filled = int(width * max(0.0, min(1.0, self.load_fraction)))
            return Text.assemble("▕", ("█" * filled, "bold"), ("░" * (width - filled), "dim"), "▏", label)
        label = self._label()
        width = max(10, self.size.width - len(label) - 2)
        filled = min(width - 1, int(width * min(1.0, self.position / self.duration)))
        cells = ["━"] * filled + ["●"] + ["─"] * max(0, width - filled - 1)
        styles = ["bold"] * filled + ["bold"] + ["dim"] * max(0, width - filled - 1)
        for t in self.marks:
            x = min(width - 1, int(width * min(1.0, t / self.duration)))
            cells[x], styles[x] = "◆", "bold reverse" if x == filled else "bold"
        text = Text("▕")
        for c, st in zip(cells, styles):
            text.append(c, style=st)
        text.append("▏" + label)
        return text

    def on_click(self, event: events.Click) -> None:
        if self.load_fraction is not None:
            return
        width = max(10, self.size.width - len(self._label()) - 2)
        fraction = max(0.0, min(1.0, (event.x - 1) / width))
        self.post_message(self.Seek(fraction * self.duration))

    def action_nudge(self, seconds: float) -> None:
        if self.load_fraction is None:
            self.post_message(self.Seek(max(0.0, min(self.duration, self.position + seconds))))

    def action_seek_to(self, fraction: float) -> None:
        if self.load_fraction is None:
            self.post_message(self.Seek(fraction * self.duration))
