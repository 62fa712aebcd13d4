"""Highlights: the few records a lesson turns on, kept for the whole run (never pruned).

Reinjections (from which subflow to which, why, how long after the data was first sent),
fallbacks to TCP, resets, MP_FAIL and the infinite mapping, ENO stripped or refused, middlebox
actions, tcpcrypt authentication failures, IKE moving from UDP to TCP, links going down and up,
transfers delivered or corrupted, and errors. Each line has a colour and a word in capitals
(``REINJECT``, ``FALLBACK``, ``RESET``...), so a monochrome terminal or a washed-out projector
still tells them apart. Everything comes from trace records, so a live run, its replay and a
Mininet run list the same highlights.

Bursts are folded: the reinjections one retransmission timeout causes at one instant become one
line with their count and bytes, and a middlebox dropping the same kind of packet again and again
counts up on its line; nothing is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from lab.trace import TraceRecord
from tui.path_names import PathNames
from tui.widgets.base import BAD_RECORD, TraceView

# kind -> (the word shown, its style). Words are what a monochrome terminal shows.
KINDS: dict[str, tuple[str, str]] = {
    "reinject": ("REINJECT", "bold magenta"),
    "fallback": ("FALLBACK", "bold yellow"),
    "reset": ("RESET", "bold red"),
    "mp_fail": ("MP_FAIL", "bold red reverse"),
    "infinite": ("INF-MAP", "bold yellow"),
    "fastclose": ("FASTCLOSE", "bold red"),
    "strip": ("STRIPPED", "bold yellow reverse"),
    "middlebox": ("MIDDLEBOX", "bold cyan"),
    "eno": ("ENO", "bold yellow"),
    "aead": ("AEAD-FAIL", "bold red reverse"),
    "ike": ("IKE", "bold blue"),
    "link_down": ("LINK-DOWN", "bold red"),
    "link_up": ("LINK-UP", "bold green"),
    "delivered": ("DELIVERED", "bold green"),
    "corrupted": ("CORRUPTED", "bold red reverse"),
    "error": ("ERROR", "bold red"),
}
TAG_WIDTH = max(len(word) for word, _ in KINDS.values())
FOLD_S = 0.05  # records of one burst closer than this fold into one line
MAX_SENT_TIMES = 200_000  # first-send times remembered per node for "after ... s"


@dataclass
class Highlight:
    t: float
    node: str
    kind: str
    text: str
    fold: tuple[Any, ...] | None = None  # records with the same fold key, close in time, share the line
    count: int = 1
    bytes: int = 0
    last_t: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)
    index: int = 0  # its place in the list

    def body(self) -> str:
        if self.kind == "reinject":
            x = self.extra
            what = f"{self.count} mappings, {self.bytes} B" if self.count > 1 else f"{self.bytes} B"
            to = x.get("to") or "another subflow"
            after = f", {x['after']:.2f} s after first sent" if x.get("after") is not None else ""
            since = x.get("since_down", "")
            return f"{what} from {x['from']} → {to}: {x['why']}{after}{since}"
        if self.count > 1:
            return f"{self.text} (×{self.count}, until {self.last_t:.3f} s)"
        return self.text

    def plain(self) -> str:
        return f"{self.t:8.3f} {self.node:<3} {KINDS[self.kind][0]:<{TAG_WIDTH}} {self.body()}"


class HighlightFinder:
    """Turns records into highlights; remembers what it needs (first-send times, link state)."""

    def __init__(self, names: PathNames | None = None) -> None:
        self.names = names or PathNames()
        self.reset()

    def reset(self) -> None:
        self.items: list[Highlight] = []
        self.changed_from: int | None = None  # the first item changed since the last take_changes()
        self._sent_at: dict[tuple[str, int], float] = {}  # (node, data_seq) -> when first sent
        self._pending: dict[
            tuple[str, int], Highlight
        ] = {}  # (node, data_seq) -> a reinjection waiting for its subflow
        self._down_at: float | None = None
        self._subflows: set[tuple[str, str]] = set()
        self._clock = 0.0

    def take_changes(self) -> int | None:
        changed, self.changed_from = self.changed_from, None
        return changed

    def _mark(self, index: int) -> None:
        if self.changed_from is None or index < self.changed_from:
            self.changed_from = index

    def _add(self, h: Highlight) -> None:
        h.last_t = h.t
        last = self.items[-1] if self.items else None
        if h.fold is not None and last is not None and last.fold == h.fold and h.t - last.last_t <= FOLD_S:
            last.count += 1
            last.bytes += h.bytes
            last.last_t = h.t
            self._mark(len(self.items) - 1)
            return
        h.index = len(self.items)
        self.items.append(h)
        self._mark(h.index)

    def feed(self, rec: TraceRecord) -> None:
        if rec.t < self._clock - 1.0:
            self.reset()  # the records started over
        self._clock = max(self._clock, rec.t)
        layer, name, data = rec.layer, rec.name, rec.data
        if name == "segment_sent":
            if layer == "mptcp":
                self._dss_sent(rec, data)
            elif layer == "middlebox":
                self._middlebox_rewrote(rec, data)
            return
        if name == "segment_received" or name == "metrics_updated":
            return
        if name == "segment_dropped":
            if layer == "middlebox":
                what = ", ".join(f"{k}={v}" for k, v in data.items() if k not in ("policy", "reason"))
                self._add(
                    Highlight(
                        rec.t,
                        rec.node,
                        "middlebox",
                        f"{data.get('policy', 'policy')} dropped a packet: {data.get('reason', '?')} ({what})",
                        fold=("drop", rec.node, data.get("policy"), data.get("reason")),
                    )
                )
            return
        if name == "error":
            self._error(rec, layer, data)
            return
        if name != "state_updated":
            return
        if layer == "mptcp":
            if isinstance(data.get("subflow"), str):
                self._subflows.add((rec.node, data["subflow"]))  # its tcp reset is told as the subflow's
            self._mptcp_state(rec, data)
        elif layer == "tcp":
            if data.get("terminated") and data.get("reset") and (rec.node, data.get("conn")) not in self._subflows:
                self._add(Highlight(rec.t, rec.node, "reset", f"{data.get('conn')}: {data['terminated']}"))
        elif layer == "link" and isinstance(data.get("up"), bool) and "backend" not in data:
            up = data["up"]
            self._down_at = None if up else rec.t
            self._add(Highlight(rec.t, rec.node, "link_up" if up else "link_down", f"link {data.get('link')}"))
        elif layer == "middlebox":
            if "installed" in data:
                self._add(Highlight(rec.t, rec.node, "middlebox", f"on: {_describe(data['installed'])}"))
            elif "removed" in data:
                self._add(Highlight(rec.t, rec.node, "middlebox", f"off: {_describe(data['removed'])}"))
        elif layer == "eno":
            to = data.get("to")
            if to in ("fallback", "refused", "aborted"):
                why = data.get("detail") or data.get("reason") or ""
                kind = "fallback" if to == "fallback" else "eno"
                self._add(
                    Highlight(
                        rec.t, rec.node, kind, f"ENO {to} on {data.get('conn')}: {why} ({data.get('policy', '')})"
                    )
                )
        elif layer == "ike":
            self._ike_state(rec, data)
        elif layer == "app" and data.get("event") == "received":
            ok = data.get("sha256_match")
            kind = "delivered" if ok else "corrupted"
            check = "SHA-256 matches" if ok else "SHA-256 does NOT match"
            self._add(
                Highlight(rec.t, rec.node, kind, f"transfer {data.get('transfer')}: {data.get('bytes')} bytes, {check}")
            )

    def _mptcp_state(self, rec: TraceRecord, data: dict[str, Any]) -> None:
        info = data.get("reinjected")
        if isinstance(info, dict):
            origin = str(info.get("from_subflow", "?"))
            to = info.get("to_subflow")
            why = str(info.get("why", "?"))
            seq = info.get("data_seq")
            first = self._sent_at.get((rec.node, seq)) if isinstance(seq, int) else None
            since = f"; link down {rec.t - self._down_at:.2f} s before" if self._down_at is not None else ""
            h = Highlight(
                rec.t,
                rec.node,
                "reinject",
                "",
                fold=("reinject", rec.node, origin, why, to),
                bytes=int(info.get("len") or 0),
                extra={
                    "from": self.names.subflow(origin),
                    "to": self.names.subflow(to) if isinstance(to, str) else None,
                    "why": why,
                    "after": None if first is None else rec.t - first,
                    "since_down": since,
                },
            )
            self._add(h)
            if not isinstance(to, str) and isinstance(seq, int):
                self._pending[(rec.node, seq)] = self.items[-1]
            return
        if data.get("fallback"):
            self._add(Highlight(rec.t, rec.node, "fallback", f"MPTCP → plain TCP: {data['fallback']}"))
        elif "mp_fail" in data:
            direction = data.get("direction", "?")
            self._add(
                Highlight(
                    rec.t,
                    rec.node,
                    "mp_fail",
                    f"{direction} on {self.names.subflow(str(data.get('subflow', '?')))}"
                    + (": the DSS checksum failed here" if direction == "sent" else ""),
                )
            )
        elif "infinite_mapping" in data:
            self._add(
                Highlight(
                    rec.t,
                    rec.node,
                    "infinite",
                    f"infinite mapping {data['infinite_mapping']}: the subflow carries the data as plain TCP",
                )
            )
        elif "fastclose" in data:
            self._add(Highlight(rec.t, rec.node, "fastclose", f"MP_FASTCLOSE {data.get('fastclose')}"))
        elif data.get("to") == "CLOSED" and data.get("reset"):
            self._add(
                Highlight(
                    rec.t,
                    rec.node,
                    "reset",
                    f"subflow {self.names.subflow(str(data.get('subflow', '?')))}: {data.get('reason', 'reset')}",
                )
            )
        elif "terminated" in data and data.get("reset"):
            self._add(Highlight(rec.t, rec.node, "reset", f"MPTCP connection: {data['terminated']}"))

    def _dss_sent(self, rec: TraceRecord, data: dict[str, Any]) -> None:
        subflow = data.get("subflow")
        for opt in data.get("mptcp") or ():
            if not isinstance(opt, dict) or opt.get("subtype") != "DSS":
                continue
            seq = opt.get("data_seq")
            if not isinstance(seq, int) or not opt.get("data_level_length"):
                continue
            key = (rec.node, seq)
            if key not in self._sent_at:
                if len(self._sent_at) >= MAX_SENT_TIMES:
                    self._sent_at.clear()
                self._sent_at[key] = rec.t
            pending = self._pending.pop(key, None) if self._pending else None
            if pending is not None and isinstance(subflow, str):
                name = self.names.subflow(subflow)
                if pending.extra.get("to") is None:
                    pending.extra["to"] = name
                elif name not in str(pending.extra["to"]):
                    pending.extra["to"] = f"{pending.extra['to']}, {name}"
                self._mark(pending.index)

    def _middlebox_rewrote(self, rec: TraceRecord, data: dict[str, Any]) -> None:
        if data.get("action") != "rewritten":
            return
        kinds = data.get("stripped_kinds")
        policy = data.get("policy", "policy")
        if kinds:
            names = ", ".join(_option_name(k) for k in kinds)
            self._add(
                Highlight(
                    rec.t,
                    rec.node,
                    "strip",
                    f"{policy} removed {names} from a segment (in at {data.get('ingress', '?')})",
                    fold=("strip", rec.node, tuple(kinds)),
                )
            )
        else:
            what = ", ".join(f"{k}={v}" for k, v in data.items() if k not in ("action", "policy"))
            self._add(
                Highlight(
                    rec.t,
                    rec.node,
                    "middlebox",
                    f"{policy} rewrote a packet ({what})",
                    fold=("rewrite", rec.node, policy),
                )
            )

    def _error(self, rec: TraceRecord, layer: str, data: dict[str, Any]) -> None:
        reason = str(data.get("reason", "?"))
        if layer == "tcpcrypt" and reason == "authentication_failed":
            self._add(
                Highlight(
                    rec.t,
                    rec.node,
                    "aead",
                    f"a tcpcrypt frame failed authentication at stream offset {data.get('offset', '?')}: "
                    "the connection is reset",
                )
            )
            return
        detail = data.get("detail")
        self._add(Highlight(rec.t, rec.node, "error", f"{layer}: {reason}" + (f" ({detail})" if detail else "")))

    def _ike_state(self, rec: TraceRecord, data: dict[str, Any]) -> None:
        event = data.get("event")
        session = f"{data['session']}: " if data.get("session") else ""
        where = f"{data.get('transport', '?')} {data.get('port', '')}".strip()
        after = data.get("after_s")
        after_text = f" after {after:.2f} s" if isinstance(after, (int, float)) else ""
        if event == "timeout":
            self._add(Highlight(rec.t, rec.node, "ike", f"{session}no answer over {where}{after_text}: moving on"))
        elif event in ("connect_failed", "failed", "abandoned", "connection_closed"):
            why = f": {data['reason']}" if data.get("reason") else ""
            self._add(Highlight(rec.t, rec.node, "ike", f"{session}attempt over {where} {event}{after_text}{why}"))
        elif event == "won":
            self._add(Highlight(rec.t, rec.node, "ike", f"{session}IKE SA up over {where}{after_text}"))


def _option_name(kind: Any) -> str:
    return {
        30: "MPTCP (30)",
        69: "ENO (69)",
        253: "experimental (253)",
        2: "MSS (2)",
        4: "SACK_PERM (4)",
        8: "TS (8)",
    }.get(kind, f"option {kind}")


def _describe(desc: Any) -> str:
    if not isinstance(desc, dict):
        return str(desc)
    return " ".join(f"{k}={v}" for k, v in desc.items() if k not in ("backend",))


class HighlightsPane(ScrollView, TraceView, can_focus=True):
    """Every highlight of the run, newest last, each wrapped with a hanging indent under its time.

    Follows its tail whatever the record rate, until the reader scrolls up; End (or scrolling
    back to the bottom) follows again.
    """

    DEFAULT_CSS = "HighlightsPane { height: 1fr; }"
    BINDINGS = [Binding("end", "follow", "Follow", show=False)]

    def __init__(self, topology: dict[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.finder = HighlightFinder(PathNames(topology))
        self.following = True
        self._lines: list[Strip] = []
        self._starts: list[int] = []  # the first line of each item
        self._wrap_width = 0
        self._dirty = False

    # --- records in

    def apply(self, records: list[TraceRecord]) -> None:
        feed = self.finder.feed
        for rec in records:
            try:
                feed(rec)
            except BAD_RECORD as exc:
                self.bad_record(rec, exc)
        if self.finder.changed_from is not None:
            self._dirty = True

    def flush(self) -> None:
        if self._dirty:
            self._dirty = False
            self._relayout(self.finder.take_changes())

    def run_ended(self) -> None:
        self.flush()

    def reset(self) -> None:
        self.finder.reset()
        self._lines, self._starts = [], []
        self._dirty = False
        self.virtual_size = Size(self._width(), 0)
        self.refresh()

    def state(self) -> Any:
        return [h.plain() for h in self.finder.items]

    @property
    def items(self) -> list[Highlight]:
        return self.finder.items

    # --- drawing

    def _width(self) -> int:
        width = self.scrollable_content_region.width
        return width if width >= 20 else 80

    def _relayout(self, start: int | None) -> None:
        width = self._width()
        if width != self._wrap_width:
            start = 0
            self._wrap_width = width
        if start is None:
            return
        start = max(0, min(start, len(self._starts)))
        if start < len(self._starts):
            del self._lines[self._starts[start] :]
            del self._starts[start:]
        console = self.app.console if self.is_attached else Console(width=width)
        for h in self.finder.items[start:]:
            self._starts.append(len(self._lines))
            self._lines.extend(self._wrap(h, width, console))
        self.virtual_size = Size(width, len(self._lines))
        if self.following:
            self.scroll_end(animate=False, immediate=False, x_axis=False)
        self.refresh()

    def _wrap(self, h: Highlight, width: int, console: Console) -> list[Strip]:
        word, style = KINDS[h.kind]
        head = Text(f"{h.t:8.3f} {h.node:<3} ", style="dim")
        head.append(f"{word:<{TAG_WIDTH}}", style=style)
        head.append(" ")
        indent = head.cell_len if width - head.cell_len >= 30 else 4
        body = Text(h.body(), style="bold" if h.kind in ("mp_fail", "aead", "corrupted", "strip") else "")
        lines = body.wrap(console, max(10, width - indent))
        strips = []
        for i, line in enumerate(lines or [Text("")]):
            row = head.copy() if i == 0 else Text(" " * indent)
            if i == 0 and indent < head.cell_len:
                strips.append(Strip(list(row.render(console))).adjust_cell_length(width))
                row = Text(" " * indent)
            row.append_text(line)
            strips.append(Strip(list(row.render(console))).adjust_cell_length(width))
        return strips

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        if index >= len(self._lines):
            width = self.scrollable_content_region.width
            if index == 0 and not self.finder.items:
                hint = Text(
                    " Highlights: reinjections, fallbacks, resets, MP_FAIL, middlebox actions... as they happen",
                    style="dim",
                )
                return Strip(list(hint.render(self.app.console))).adjust_cell_length(width)
            return Strip.blank(width, self.rich_style)
        return self._lines[index].crop(scroll_x, scroll_x + self.scrollable_content_region.width)

    def on_resize(self, event: events.Resize) -> None:
        if self._width() != self._wrap_width and self.finder.items:
            self._relayout(0)
        elif self.following:
            # shown after being hidden (or the terminal resized): the tail again, now that the size is known
            self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)

    def on_show(self) -> None:
        self.flush()
        if self.following:
            self.call_after_refresh(self.scroll_end, animate=False, x_axis=False)

    # --- following the tail

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
