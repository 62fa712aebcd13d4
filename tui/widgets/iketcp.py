"""IKETCP fallback: per initiator session a timeline of UDP attempts and retransmissions, the
timeout, the TCP connect, the prefix and each framed IKE message; SA states; ESP counters per
transport. Two sessions (sequential and racing) appear side by side."""

from __future__ import annotations

import textwrap
from typing import Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Static

from lab.ike.mlkem import ML_KEM_METHODS
from lab.trace import TraceRecord
from tui.widgets.base import BAD_RECORD, TraceView
from tui.widgets.outcomes import OutcomesPanel
from tui.widgets.records import RecordTable

IKE_LAYERS = frozenset({"ike", "esp", "iketcp"})
MAX_COLUMNS = 3
MAX_LINES = 200
NARROW_COLUMNS = 100  # below this width the session timelines stack instead of standing side by side
SHORT_ROWS = 30  # below this height the record table gives way to the timelines
INDENT = " " * 8  # wrapped timeline lines hang under the text, past the time


def _method_name(method: Any) -> str:
    """An additional key exchange's IANA name (ML-KEM-768), or its transform ID."""
    known = ML_KEM_METHODS.get(method) if isinstance(method, int) else None
    return known.name.upper() if known is not None else f"group {method}"


class TailScroll(VerticalScroll):
    """A timeline column's body. Columns mounted while the view is hidden get their size only
    when it is first shown, after the view's own resize (whose fill found them still without a
    width and gave up: the column stayed blank); so the body's own resize fills it, at its end."""

    def on_resize(self, event: events.Resize) -> None:
        view = next((a for a in self.ancestors if isinstance(a, IketcpView)), None)
        if view is not None and event.size.width > 0:
            view.call_after_refresh(view._fill_columns)


class IketcpView(Vertical, TraceView):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.reset_state()

    def reset_state(self) -> None:
        self.timelines: dict[str, list[tuple[str, str]]] = {}  # column -> [(line, style)]
        self.sa_states: dict[str, str] = {}  # "node sa" -> state
        self.esp: dict[tuple[str, str, str], dict[str, Any]] = {}  # (node, session, transport) -> latest counters
        self.frames: dict[tuple[str, str], int] = {}  # (node, kind) -> IKETCP frames sent
        self.udp_blocked = 0
        self.tcp_4500: set[str] = set()
        self._sa_column: dict[str, str] = {}
        self.blocked: dict[str, int] = {}  # "r1 UDP 500" -> datagrams dropped there
        self.fragments_dropped: dict[str, int] = {}  # router -> IP fragments it dropped
        self._columns_shown: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static("No IKE, ESP or IKETCP records yet.", id="ike-summary")
        yield OutcomesPanel(id="ike-outcomes", classes="outcomes")
        yield Horizontal(id="ike-columns")
        yield RecordTable(IKE_LAYERS, id="ike-records")

    # --- records

    def _column(self, rec: TraceRecord) -> str:
        data = rec.data
        session = data.get("session")
        if isinstance(session, str):
            column = f"{rec.node} {session}"
        else:
            sa = data.get("sa")
            column = self._sa_column.get(f"{rec.node} {sa}") if sa else None
            if column is None:
                conn = str(data.get("conn", ""))
                prefix = conn.split("/", 1)[0] if "/" in conn else None
                column = f"{rec.node} {prefix}" if prefix else f"{rec.node}"
        return column

    def _line(self, column: str, t: float, text: str, style: str = "") -> None:
        lines = self.timelines.setdefault(column, [])
        if len(lines) < MAX_LINES:
            lines.append((f"{t:7.3f} {text}", style))

    def apply(self, records: list[TraceRecord]) -> None:
        wanted = []
        changed = False
        for rec in records:
            try:
                if rec.layer in IKE_LAYERS:
                    wanted.append(rec)
                    changed = self._record(rec) or changed
                elif (
                    rec.layer == "middlebox"
                    and rec.name == "segment_dropped"
                    and rec.data.get("reason") == "IP fragment dropped"
                ):
                    self.fragments_dropped[rec.node] = self.fragments_dropped.get(rec.node, 0) + 1
                    changed = True
                elif (
                    rec.layer == "middlebox"
                    and rec.name == "segment_dropped"
                    and (rec.data.get("policy") == "block_udp" or "UDP" in str(rec.data.get("reason", "")))
                ):
                    self.udp_blocked += 1
                    where = f"{rec.node} UDP {rec.data.get('dport')}"
                    self.blocked[where] = self.blocked.get(where, 0) + 1
                    changed = True
                elif rec.layer == "tcp" and rec.name == "state_updated" and rec.data.get("to") == "ESTABLISHED":
                    conn = str(rec.data.get("conn", ""))
                    if conn.endswith(":4500") or ":4500->" in conn:
                        self.tcp_4500.add(f"{rec.node} {conn}")
            except BAD_RECORD as exc:
                self.bad_record(rec, exc)
        if not self.is_mounted:
            return
        if wanted:
            self.query_one(RecordTable).add_records(wanted)
        if changed:
            self._redraw()

    def _record(self, rec: TraceRecord) -> bool:
        data, layer, name = rec.data, rec.layer, rec.name
        column = self._column(rec)
        if layer == "ike" and name == "state_updated":
            event = data.get("event")
            if event == "connect":
                plan = " → ".join(str(p) for p in data.get("plan") or [])
                self._line(column, rec.t, f"connect ({data.get('fallback', data.get('transport'))}): {plan}", "bold")
            elif event == "ip_fragments":
                self._line(
                    column,
                    rec.t,
                    f"⚠ {data.get('exchange')} is {data.get('length')} B, over the {data.get('max_length')} B a "
                    f"{data.get('path_mtu')} B path carries, no IKE fragmentation: it goes as IP fragments",
                    "bold reverse",
                )
            elif event == "too_big_for_udp":
                self._line(
                    column,
                    rec.t,
                    f"⚠ {data.get('exchange')} is {data.get('length')} B, too big for the path: straight to TCP",
                    "bold",
                )
            elif event == "smaller_fragments":
                self._line(
                    column,
                    rec.t,
                    f"{data.get('exchange')} unanswered after {data.get('after_tries')} retransmissions: again in "
                    f"{data.get('fragments')} fragments for a {data.get('path_mtu')} B path (RFC 7383 PMTU discovery)",
                    "bold",
                )
            elif event == "reassembled":
                self._line(
                    column,
                    rec.t,
                    f"{data.get('exchange')} reassembled from {data.get('fragments')} IKE fragments (RFC 7383)",
                    "bold",
                )
            elif event == "sent" and data.get("exchange") == "IKE_INTERMEDIATE":
                self._line(
                    column,
                    rec.t,
                    f"IKE_INTERMEDIATE {data.get('round')}/{data.get('of')}: additional key exchange "
                    f"{_method_name(data.get('additional_ke'))}, key share {data.get('ke_len')} B",
                )
            elif event in (
                "started",
                "timeout",
                "unanswered",
                "failed",
                "connection_closed",
                "connect_failed",
                "won",
                "abandoned",
            ):
                where = f"{data.get('transport')}:{data.get('port')}"
                after = f" after {data['after_s']:.3f} s" if isinstance(data.get("after_s"), (int, float)) else ""
                style = (
                    "bold"
                    if event == "won"
                    else ("bold reverse" if event in ("timeout", "unanswered", "failed") else "")
                )
                reason = f" ({data['reason']})" if data.get("reason") else ""
                self._line(column, rec.t, f"attempt {data.get('attempt', '')} {where} {event}{after}{reason}", style)
            elif "from" in data and "to" in data and data.get("sa"):
                self.sa_states[f"{rec.node} {data['sa']}"] = str(data["to"])
                key = f"{rec.node} {data['sa']}"
                if key not in self._sa_column and column != rec.node:
                    self._sa_column[key] = column
                elif key not in self._sa_column:
                    self._sa_column[key] = self._last_column_of(rec.node) or column
                column = self._sa_column[key]
                style = "bold reverse" if data["to"] == "FAILED" else ("bold" if data["to"] == "ESTABLISHED" else "")
                self._line(
                    column,
                    rec.t,
                    f"SA {str(data['sa'])[:8]} {data['from']} → {data['to']} ({data.get('input')}, {data.get('transport')})",
                    style,
                )
            elif data.get("event") == "floated":
                self._line(column, rec.t, f"SA floated to port {data.get('port')}")
            elif "exchange" in data and "result" in data:
                self._line(
                    column,
                    rec.t,
                    f"{data['exchange']}: {data['result']}",
                    "bold" if data["result"] == "ok" else "bold reverse",
                )
            else:
                return False
            return True
        if layer == "ike" and name in ("segment_sent", "segment_received"):
            arrow = "→" if name == "segment_sent" else "←"
            retrans = f" retransmission {data['retransmission']}" if data.get("retransmission") else ""
            if data.get("fragments"):
                retrans = f" in {data['fragments']} IKE fragments" + retrans
            self._line(
                self._sa_column.get(f"{rec.node} {data.get('sa')}", column),
                rec.t,
                f"{arrow} IKE {data.get('exchange')} #{data.get('message_id')}{' resp' if data.get('response') else ''} "
                f"{data.get('length')} B over {data.get('transport')}:{data.get('port')}{retrans}",
                "italic" if retrans else "",
            )
            return True
        if layer == "iketcp" and name == "state_updated" and "event" in data:
            detail = " ".join(f"{k}={v}" for k, v in data.items() if k in ("remote", "after_s", "reason", "attempt"))
            self._line(
                column,
                rec.t,
                f"TCP {data.get('conn')} {data['event']} {detail}".rstrip(),
                "bold" if data["event"] == "connected" else "",
            )
            return True
        if layer == "iketcp" and name == "segment_sent":
            kind = str(data.get("kind"))
            self.frames[(rec.node, kind)] = self.frames.get((rec.node, kind), 0) + 1
            if kind == "prefix":
                self._line(column, rec.t, f'→ prefix "IKETCP" ({data.get("length")} B) on TCP {data.get("conn")}')
            elif kind == "ike":
                self._line(column, rec.t, f"→ framed IKE message, {data.get('length')} B, on TCP {data.get('conn')}")
            return kind in ("prefix", "ike")
        if layer == "esp" and name == "metrics_updated":
            self.esp[(rec.node, str(data.get("session", "")), str(data.get("transport")))] = dict(data)
            return True
        if layer == "esp" and name == "segment_dropped":
            self._line(column, rec.t, f"✗ ESP dropped: {data.get('reason')} seq {data.get('seq')}", "bold reverse")
            return True
        if name == "error":
            self._line(column, rec.t, f"error: {data.get('reason')} {data.get('detail', '')}", "bold reverse")
            return True
        return False

    def _esp_totals(self) -> dict[tuple[str, str], dict[str, int]]:
        """(node, transport) -> ESP counters summed over the node's IKE sessions (each records its own)."""
        fields = ("packets_sent", "bytes_sent", "packets_received", "bytes_received", "packets_dropped")
        totals: dict[tuple[str, str], dict[str, int]] = {}
        for (node, _session, transport), c in self.esp.items():
            total = totals.setdefault((node, transport), dict.fromkeys(fields, 0))
            for f in fields:
                total[f] += int(c.get(f) or 0)
        return totals

    def _last_column_of(self, node: str) -> str | None:
        cols = [c for c in self.timelines if c.split(" ", 1)[0] == node and " " in c]
        return cols[-1] if cols else None

    # --- drawing

    def on_resize(self, event: events.Resize) -> None:
        narrow = event.size.width < NARROW_COLUMNS
        changed = narrow != self.has_class("-narrow")
        self.set_class(narrow, "-narrow")
        self.set_class(event.size.height < SHORT_ROWS, "-short")
        if changed and self.timelines:
            self._redraw()
        elif self._columns_shown:
            self.call_after_refresh(self._fill_columns)

    def _redraw(self) -> None:
        summary = Text()
        summary.append(f"UDP blocked: {self.udp_blocked}", style="bold reverse" if self.udp_blocked else "")
        if self.blocked:
            summary.append(" (" + ", ".join(f"{k}: {v}" for k, v in sorted(self.blocked.items())) + ")")
        if self.fragments_dropped:
            summary.append(
                " · IP fragments dropped: " + ", ".join(f"{k}: {v}" for k, v in sorted(self.fragments_dropped.items())),
                style="bold reverse",
            )
        summary.append(f" · TCP to 4500: {len(self.tcp_4500)}")
        if self.frames:
            nodes = sorted({n for n, _ in self.frames})
            summary.append(
                " · IKETCP frames "
                + "; ".join(
                    f"{n}: " + ", ".join(f"{k} {v}" for (m, k), v in sorted(self.frames.items()) if m == n)
                    for n in nodes
                )
            )
        for (node, transport), c in sorted(self._esp_totals().items()):
            summary.append(
                f"\nESP over {transport} at {node}: sent {c['packets_sent']} pkts / {c['bytes_sent']} B, "
                f"received {c['packets_received']} / {c['bytes_received']} B, dropped {c['packets_dropped']}"
            )
        if self.sa_states:
            summary.append("\nSA states: " + "  ".join(f"{k}: {v}" for k, v in sorted(self.sa_states.items())))
        self.query_one("#ike-summary", Static).update(summary)
        columns = [c for c in self.timelines if self.timelines[c]]
        if self.has_class("-narrow"):
            columns = [c for c in columns if " " in c] or columns  # the initiators' sessions first
        columns = columns[:MAX_COLUMNS]
        box = self.query_one("#ike-columns", Horizontal)
        if columns != self._columns_shown:
            box.remove_children()
            box.mount_all(
                Vertical(
                    Static(column, classes="ike-col-head"),
                    TailScroll(Static(id=f"ike-col-{i}"), classes="ike-col-body"),
                    classes="ike-column",
                )
                for i, column in enumerate(columns)
            )
            self._columns_shown = columns
            self.call_after_refresh(self._fill_columns)
        else:
            self._fill_columns()

    def _fill_columns(self) -> None:
        for i, column in enumerate(self._columns_shown):
            for static in self.query(f"#ike-col-{i}"):
                body = static.parent
                if body is None or body.size.width <= 0:
                    # not laid out yet (or on a hidden tab): try again after a refresh or two,
                    # then leave it to on_resize, which comes when the view is shown
                    self._fill_retries = getattr(self, "_fill_retries", 0) + 1
                    if self._fill_retries <= 3:
                        self.call_after_refresh(self._fill_columns)
                    return
                self._fill_retries = 0
                width = max(20, body.size.width - 2)
                text = Text()
                for line, style in self.timelines[column]:
                    parts = textwrap.wrap(line, width=width, subsequent_indent=INDENT, drop_whitespace=False)
                    for part in parts or [line]:
                        text.append(part.rstrip() + "\n", style=style)
                static.update(text)
                if body is not None:
                    body.call_after_refresh(body.scroll_end, animate=False)

    def reset(self) -> None:
        self.reset_state()
        if self.is_mounted:
            self.query_one(RecordTable).reset()
            self.query_one("#ike-columns", Horizontal).remove_children()
            self.query_one("#ike-summary", Static).update("No IKE, ESP or IKETCP records yet.")

    def state(self) -> Any:
        return {
            "timelines": {k: [line for line, _ in v] for k, v in self.timelines.items()},
            "sa_states": dict(self.sa_states),
            "esp": {f"{node} {transport}": c for (node, transport), c in self._esp_totals().items()},
            "udp_blocked": self.udp_blocked,
            "blocked": dict(self.blocked),
            "fragments_dropped": dict(self.fragments_dropped),
            "tcp_4500": sorted(self.tcp_4500),
        }
