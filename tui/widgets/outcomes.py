"""Outcomes: every transfer of the scenario with what became of it (delivered, corrupted,
refused, aborted) and whether that is what the scenario expects (lab/scenario/outcomes.py).

The app keeps one :class:`~lab.scenario.outcomes.OutcomeTracker` (``app.outcomes``); each
panel draws it, with hanging indents at any width. No ✓ here: a 0-byte or aborted
transfer is never "ok", only "as expected" when the scenario meant it to end that way.
"""

from __future__ import annotations

import textwrap
from typing import Any

from rich.text import Text
from textual.widget import Widget

from lab.scenario.outcomes import OutcomeTracker
from lab.trace import TraceRecord
from tui.widgets.base import TraceView, fmt_bytes

VERDICT_STYLE = {
    "as expected": "bold",
    "unexpected": "bold reverse",
    "running": "dim",
    "started here": "italic",
    "done": "",
}
MARK = {"as expected": "= ", "unexpected": "! ", "running": "… ", "started here": "· ", "done": "· "}


def outcome_words(t: Any) -> str:
    size = fmt_bytes(t.bytes)
    if t.outcome == "delivered":
        return f"delivered {size} {t.detail}" if t.detail else f"delivered {size}"
    if t.outcome == "corrupted":
        return f"CORRUPTED: {size} delivered, {t.detail}"
    if t.outcome == "refused":
        return f"refused {t.detail}" if t.detail else "refused: 0 bytes delivered"
    if t.outcome == "aborted":
        return f"aborted after {size} ({t.detail})" if t.detail else f"aborted after {size}"
    return "running…"


def outcome_lines(tracker: OutcomeTracker) -> list[tuple[str, str, str]]:
    """(head, words, verdict) per transfer and IKE session, in the order declared."""
    out: list[tuple[str, str, str]] = []
    # an IKE session's data through its tunnel (one stream each way) shares the session's line
    tunnelled = {f"{name} {way}": name for name in tracker.ike for way in ("i->r", "r->i")}
    for t in tracker.transfers.values():
        if t.name in tunnelled:
            continue
        verdict = t.verdict
        if verdict in ("as expected", "unexpected") and t.expected is not None and t.outcome != t.expected:
            verdict = f"unexpected (expected {t.expected})"
        out.append((t.name, outcome_words(t), verdict))
    for i in tracker.ike.values():
        if i.transport is None:
            words = f"IKE SA being negotiated over {i.trying}…" if i.trying else "IKE SA being negotiated…"
        else:
            after = f" in {i.after:.2f} s" if i.after is not None else ""
            words = f"IKE SA over {i.transport.upper()} {i.port}{after}"
        verdict = i.verdict
        if verdict == "unexpected":
            verdict = f"unexpected (expected {i.expected.upper() if i.expected else '?'})"
        streams = [t for name, t in tracker.transfers.items() if tunnelled.get(name) == i.name]
        if streams and (i.transport is not None or any(t.done for t in streams)):
            words += "; " + _tunnelled_words(streams)
            wrong = [t for t in streams if t.verdict == "unexpected"]
            if wrong and not verdict.startswith("unexpected"):
                verdict = f"unexpected (expected {wrong[0].expected})"
        out.append((i.name, words, verdict))
    return out


def _tunnelled_words(streams: list[Any]) -> str:
    """The data each way through one IKE session's tunnel, in one phrase."""
    if all(t.outcome == "running" for t in streams):
        return "data not through yet"
    if all(t.outcome == "delivered" for t in streams) and len({t.bytes for t in streams}) == 1:
        return f"{fmt_bytes(streams[0].bytes)} each way"  # the verdict says whether that is expected
    return "data " + ", ".join(f"{t.name.rsplit(' ', 1)[-1]} {outcome_words(t)}" for t in streams)


class OutcomesPanel(Widget, TraceView):
    """The scenario's transfers and their outcomes against what it expects (drawn from ``app.outcomes``)."""

    DEFAULT_CSS = "OutcomesPanel { height: auto; }"

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._shown_version = -1

    @property
    def tracker(self) -> OutcomeTracker | None:
        tracker = getattr(self.app, "outcomes", None)
        return tracker if isinstance(tracker, OutcomeTracker) else None

    def apply(self, records: list[TraceRecord]) -> None:
        pass  # the app's tracker has them; flush redraws

    def flush(self) -> None:
        tracker = self.tracker
        version = getattr(self.app, "outcomes_version", 0)
        if tracker is not None and version != self._shown_version:
            self._shown_version = version
            self.refresh(layout=True)

    def reset(self) -> None:
        self._shown_version = -1

    def text(self, width: int) -> Text:
        tracker = self.tracker
        text = Text()
        if tracker is None:
            return text
        lines = outcome_lines(tracker)
        summary = tracker.expects.summary
        text.append("Outcomes", style="bold")
        if summary:
            head = "Outcomes  expected: "
            wrapped = textwrap.wrap(summary, width=max(20, width - 1), initial_indent=head, subsequent_indent="  ")
            text = Text()
            text.append(wrapped[0][: len("Outcomes")], style="bold")
            text.append(wrapped[0][len("Outcomes") :], style="italic")
            for more in wrapped[1:]:
                text.append("\n" + more, style="italic")
        if not lines:
            text.append("\n  no transfer in this run yet", style="dim")
        name_w = min(18, max((len(n) for n, _, _ in lines), default=4))
        for name, words, verdict in lines:
            key = verdict.split(" (")[0]
            mark = MARK.get(key, "· ")
            head = f"  {mark}{name:<{name_w}} "
            body = f"{words} — {verdict}"
            wrapped = textwrap.wrap(
                body, width=max(20, width - 1), initial_indent=head, subsequent_indent=" " * len(head)
            ) or [head]
            in_verdict = False
            for i, line in enumerate(wrapped):
                text.append("\n")
                if i == 0:
                    text.append(line[: len(head)], style="bold")
                    line = line[len(head) :]
                cut = line.rfind(" — ")
                if not in_verdict and cut >= 0:
                    text.append(line[: cut + 3])
                    line, in_verdict = line[cut + 3 :], True
                body_part = line.lstrip()
                text.append(line[: len(line) - len(body_part)])
                text.append(body_part, style=VERDICT_STYLE.get(key, "bold") if in_verdict else "")
        errors = len(tracker.expected_errors)
        if errors:
            reasons = sorted({f"{r.layer} {r.data.get('reason')}" for r in tracker.expected_errors})
            text.append(f"\n  = {errors} error record(s) the lesson provokes: {', '.join(reasons)}", style="dim")
        return text

    def render(self) -> Text:
        return self.text(self.size.width or 80)

    def get_content_height(self, container: Any, viewport: Any, width: int) -> int:
        return max(1, len(self.text(width).plain.split("\n")))

    def state(self) -> Any:
        tracker = self.tracker
        return tracker.state() if tracker is not None else {}
