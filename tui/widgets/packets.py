"""Packets: a filterable list of decoded segments and drops, one row per segment with every option
(MPTCP's decoded with it, not as a row of its own); the selected one with RFC field names.

``/`` (anywhere in the app) focuses the filter, Esc leaves it; while it has the focus, typing
only edits the filter. A term the filter does not know is named in one line under it."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Input, Static

from lab.trace import TraceRecord
from tui.rfc import (
    EXCHANGE_TYPES,
    FLAG_NAMES,
    MPTCP_BY_NAME,
    TCP_HEADER,
    cite_text,
    describe_esp,
    describe_ike,
    describe_iketcp,
    describe_option,
    option_summary,
)
from tui.widgets.base import TraceView, short_conn
from tui.widgets.packet_list import RowList

MAX_KEPT = 100_000  # packets kept for filtering
MAX_SHOWN = 5000  # rows in the list (the newest matching ones)
SEGMENT_NAMES = frozenset({"segment_sent", "segment_received", "segment_dropped"})
FILTER_KEYS = ("node", "layer", "name", "conn", "flags", "dir", "opt", "reason")
TCP_FLAGS = frozenset("SAFRPUEC.")
NARROW_WIDTH = 120  # below this many columns rows leave out seq, ack and window (the detail has them)
FIRST_OPTIONS = ("MP_", "DSS", "ADD_ADDR", "REMOVE_ADDR", "MPTCP", "ENO")  # shown before MSS, SACK, TS...


@dataclass(slots=True)
class Packet:
    index: int
    rec: TraceRecord
    direction: str
    fields: dict[str, str]
    haystack: str


def _packet(index: int, rec: TraceRecord) -> Packet:
    data = rec.data
    direction = {"segment_sent": "→", "segment_received": "←", "segment_dropped": "✗"}.get(rec.name, "?")
    if rec.layer == "middlebox" and rec.name == "segment_sent":
        direction = "✎"
    opts = data.get("options") if isinstance(data.get("options"), list) else []
    fields = {
        "node": rec.node,
        "layer": rec.layer,
        "name": rec.name,
        "dir": direction,
        "conn": str(data.get("conn", data.get("link", ""))),
        "flags": str(data.get("flags", "")),
        "seq": str(data.get("seq", "")),
        "ack": str(data.get("ack", "")),
        "len": str(data.get("len", "")),
        "win": str(data.get("win", "")),
        "opt": _options(opts, data.get("mptcp")),
        "reason": str(data.get("reason", data.get("action", ""))),
    }
    if rec.layer in LAYER_FIELDS:
        fields.update(LAYER_FIELDS[rec.layer](data))
    hay = " ".join(f"{k}={v}" for k, v in fields.items()).lower()
    return Packet(index, rec, direction, fields, hay)


def _options(opts: list[Any], mptcp: Any) -> str:
    """Every option of a segment, the protocol ones (MPTCP subtypes, ENO) first."""
    names = [option_summary(o) for o in opts if isinstance(o, dict)]
    if isinstance(mptcp, list) and mptcp:  # the decoded MPTCP options of the same segment
        decoded = [str(o.get("subtype")) for o in mptcp if isinstance(o, dict)]
        names = [n for n in names if not n.startswith(("MP_", "DSS", "ADD_ADDR", "REMOVE_ADDR", "MPTCP"))] + decoded
    first = [n for n in names if n.startswith(FIRST_OPTIONS)]
    return " ".join(first + [n for n in names if n not in first])


def _ike_fields(data: dict[str, Any]) -> dict[str, str]:
    if data.get("kind") == "nat_keepalive":
        return {"conn": "NAT-Keepalive", "opt": "0xFF"}
    where = f"{data.get('transport')}:{data.get('port')}" if data.get("port") else str(data.get("transport", ""))
    extra = f" retx {data['retransmission']}" if data.get("retransmission") else ""
    return {
        "conn": f"IKE SA {data.get('sa', '?')}",
        "flags": "R" if data.get("response") else "",
        "seq": str(data.get("message_id", "")),
        "len": str(data.get("length", "")),
        "opt": f"{data.get('exchange', '')} {where}{extra}".strip(),
    }


def _esp_fields(data: dict[str, Any]) -> dict[str, str]:
    inner = f" inner={data['inner_length']}" if data.get("inner_length") is not None else ""
    return {
        "conn": f"ESP SPI {data.get('spi', '?')}",
        "seq": str(data.get("seq", "")),
        "len": str(data.get("length", "")),
        "opt": f"ESP {data.get('transport', '')}{inner}".strip(),
    }


def _iketcp_fields(data: dict[str, Any]) -> dict[str, str]:
    kind = str(data.get("kind", ""))
    if kind == "ike" and data.get("exchange_type") is not None:
        what = f"IKE {EXCHANGE_TYPES.get(data['exchange_type'], data['exchange_type'])}"
    elif kind == "esp" and isinstance(data.get("spi"), int):
        what = f"ESP spi={data['spi']:#010x}"
    else:
        what = kind.upper() if kind in ("ike", "esp") else kind
    return {
        "conn": f"IKETCP {data.get('conn', '?')}",
        "flags": "R" if data.get("response") else "",
        "seq": str(data.get("seq", data.get("message_id", ""))),
        "len": str(data.get("length", "")),
        "opt": what,
    }


def _mptcp_fields(data: dict[str, Any]) -> dict[str, str]:
    opts = data.get("mptcp") if isinstance(data.get("mptcp"), list) else []
    subtypes = " ".join(str(o.get("subtype")) for o in opts if isinstance(o, dict))
    return {
        "conn": str(data.get("subflow", data.get("conn", ""))),
        "opt": subtypes + (" (wire)" if data.get("source") == "wire" else ""),
    }


LAYER_FIELDS = {"ike": _ike_fields, "esp": _esp_fields, "iketcp": _iketcp_fields, "mptcp": _mptcp_fields}


def parse_filter(text: str) -> list[tuple[str | None, str]]:
    """``node=h1 flags=S syn`` -> [("node","h1"), ("flags","s"), (None,"syn")]."""
    terms: list[tuple[str | None, str]] = []
    for word in text.split():
        key, sep, value = word.partition("=")
        if sep and key.lower() in FILTER_KEYS:
            terms.append((key.lower(), value.lower()))
        else:
            terms.append((None, word.lower()))
    return terms


def filter_problem(text: str) -> str | None:
    """What the filter ``text`` asks that it cannot (an unknown field, a letter that is no TCP
    flag), in one line, or None."""
    for word in text.split():
        key, sep, value = word.partition("=")
        if not sep:
            continue
        if key.lower() not in FILTER_KEYS:
            return f"unknown filter field {key!r}: fields are {', '.join(FILTER_KEYS)} (or a plain word)"
        if not value:
            return f"{key}= needs a value, e.g. {key}={'S' if key.lower() == 'flags' else 'h1'}"
        if key.lower() == "flags" and not set(value.upper()) <= TCP_FLAGS:
            bad = "".join(sorted(set(value.upper()) - TCP_FLAGS))
            return f"flags={value}: {bad!r} is no TCP flag (S A F R P U E C)"
    return None


def matches(packet: Packet, terms: list[tuple[str | None, str]]) -> bool:
    for key, value in terms:
        if key is None:
            if value not in packet.haystack:
                return False
        elif key == "flags":
            if not all(c in packet.fields["flags"].lower() for c in value):
                return False
        elif value not in packet.fields[key].lower():
            return False
    return True


HEADER = f"{'Time s':>10} {'Node':<5} {'':1} {'Connection / link':<31} {'Flags':<5} {'Seq':>10} {'Ack':>10} {'Len':>5} {'Win':>6}  Options / reason"


NARROW_HEADER = f"{'Time s':>9} {'Node':<4} {'':1} {'Connection':<21} {'Flags':<5} {'Len':>5}  Options / reason"


def format_packet(item: tuple[int, TraceRecord] | Packet) -> str:
    pkt = item if isinstance(item, Packet) else _packet(*item)
    f = pkt.fields
    extra = f["opt"] if pkt.direction in "→←" else f["reason"]
    return (
        f"{pkt.rec.t:10.6f} {f['node']:<5} {pkt.direction} {short_conn(f['conn']):<31} {f['flags']:<5} "
        f"{f['seq']:>10} {f['ack']:>10} {f['len']:>5} {f['win']:>6}  {extra}"
    )


def narrow_conn(conn: str) -> str:
    """``10.0.1.1:43353->10.0.2.2:5001`` as ``:43353→10.0.2.2:5001`` (the local port names it)."""
    local, sep, remote = conn.partition("->")
    if not sep:
        return conn if len(conn) <= 21 else conn[:20] + "…"
    return f":{local.rsplit(':', 1)[-1]}→{remote}"[:21]


def format_packet_narrow(item: tuple[int, TraceRecord] | Packet) -> str:
    """A row for a narrow terminal: seq, ack and window left to the detail, options in view."""
    pkt = item if isinstance(item, Packet) else _packet(*item)
    f = pkt.fields
    extra = f["opt"] if pkt.direction in "→←" else f["reason"]
    return (
        f"{pkt.rec.t:9.4f} {f['node']:<4} {pkt.direction} {narrow_conn(f['conn']):<21} {f['flags']:<5} "
        f"{f['len']:>5}  {extra}"
    )


class PacketTable(RowList):
    """The packet rows; drops and middlebox rewrites are underlined."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(format_packet, marked=_marked, **kw)
        self.narrow = False

    def set_narrow(self, narrow: bool) -> None:
        if narrow != self.narrow:
            self.narrow = narrow
            self._format = format_packet_narrow if narrow else format_packet
            self._lines.clear()
            self._width = 0
            self.refresh()


class PacketFilter(Input):
    """The filter line: Esc gives the focus back to the packet list."""

    BINDINGS = [Binding("escape", "leave", "Leave the filter", show=False)]

    def action_leave(self) -> None:
        self.screen.set_focus(None)
        table = self.parent.query(PacketTable) if self.parent is not None else []
        for t in table:
            t.focus()


def _marked(item: tuple[int, TraceRecord] | Packet) -> bool:
    rec = item.rec if isinstance(item, Packet) else item[1]
    return rec.name == "segment_dropped" or rec.layer == "middlebox"


class PacketsView(Vertical, TraceView):
    """Filter with words (``syn``, ``drop``) or ``node=h1 flags=SA conn=5001 opt=sack dir=←``.

    Records are only queued on arrival; the table catches up at most every
    ``FLUSH_S`` seconds, and only while it is on screen, with the newest
    matching packets, so a busy run never stalls the app.
    """

    FLUSH_S = 0.2

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.records: deque[tuple[int, TraceRecord]] = deque(maxlen=MAX_KEPT)
        self._mptcp_pending: dict[tuple[Any, ...], TraceRecord] = {}
        self._count = 0
        self._terms: list[tuple[str | None, str]] = []
        self._unshown = 0  # records that arrived since the table last caught up

    def compose(self) -> ComposeResult:
        yield PacketFilter(placeholder="/ filter: node=h1 flags=S conn=5001 opt=sack drop … (Esc leaves)", id="packet-filter")
        yield Static("", id="packet-filter-note")
        yield Static(HEADER, id="packet-header")
        yield PacketTable(id="packet-table")
        with VerticalScroll(id="packet-detail-box"):
            yield Static("Select a packet to see its fields.", id="packet-detail")

    def on_mount(self) -> None:
        self.set_interval(self.FLUSH_S, self.catch_up)
        self.query_one("#packet-filter-note", Static).display = False

    def on_resize(self, event: Any) -> None:
        narrow = event.size.width < NARROW_WIDTH
        self.query_one(PacketTable).set_narrow(narrow)
        self.query_one("#packet-header", Static).update(NARROW_HEADER if narrow else HEADER)

    def apply(self, records: list[TraceRecord]) -> None:
        append = self.records.append
        n = self._count
        pending = self._mptcp_pending
        for rec in records:
            if rec.name not in SEGMENT_NAMES:
                continue
            if rec.layer == "mptcp" and rec.name != "segment_dropped" and rec.data.get("source") != "wire":
                # our stack records the segment's decoded MPTCP options beside its tcp record (before
                # it when sent, after it when received): they join that row instead of making one
                key = (rec.node, rec.name, rec.data.get("subflow"))
                last = self.records[-1] if self.records else None
                if (
                    last is not None
                    and last[1].layer == "tcp"
                    and (last[1].node, last[1].name, last[1].data.get("conn")) == key
                    and last[1].t == rec.t
                    and "mptcp" not in last[1].data
                ):
                    self.records[-1] = (last[0], _with_mptcp(last[1], rec))
                else:
                    pending[key] = rec
                continue
            if rec.layer == "tcp" and pending:
                early = pending.pop((rec.node, rec.name, rec.data.get("conn")), None)
                if early is not None and early.t == rec.t:
                    rec = _with_mptcp(rec, early)
            n += 1
            append((n, rec))
        if len(pending) > 64:
            pending.clear()  # options whose segment never came: nothing to join
        self._unshown += n - self._count
        self._count = n

    @property
    def on_screen(self) -> bool:
        return self.is_mounted and self.region.area > 0

    def catch_up(self, *, force: bool = False) -> None:
        """Bring the table up to date with what arrived (when visible, or ``force``)."""
        if not self._unshown or not (force or self.on_screen):
            return
        new = self._matching(MAX_SHOWN, scan_limit=self._unshown)
        self._unshown = 0
        if new:
            self.query_one(PacketTable).extend(new, limit=MAX_SHOWN)

    def _matching(self, newest: int, scan_limit: int = MAX_KEPT) -> list[Any]:
        """Up to ``newest`` of the latest records that pass the filter, oldest first
        (as ``(index, record)``; decoded only for the filter and when drawn)."""
        if not self._terms:
            count = min(newest, scan_limit, len(self.records))
            return list(itertools.islice(self.records, len(self.records) - count, None))
        out: list[Any] = []
        scanned = 0
        for index, rec in reversed(self.records):
            if len(out) >= newest or scanned >= scan_limit:
                break
            scanned += 1
            pkt = _packet(index, rec)
            if not self._terms or matches(pkt, self._terms):
                out.append(pkt)
        out.reverse()
        return out

    def _fill(self, packets: list[Packet]) -> None:
        self.query_one(PacketTable).set_items(packets)

    def packet_at(self, row: int) -> Packet | None:
        items = self.query_one(PacketTable).items
        if not 0 <= row < len(items):
            return None
        item = items[row]
        return item if isinstance(item, Packet) else _packet(*item)

    @on(Input.Changed, "#packet-filter")
    def set_filter(self, event: Input.Changed) -> None:
        problem = filter_problem(event.value)
        note = self.query_one("#packet-filter-note", Static)
        note.update(Text(f"! {problem}", style="bold reverse") if problem else "")
        note.display = problem is not None
        self._terms = parse_filter(event.value)
        self._unshown = 0
        self._fill(self._matching(MAX_SHOWN))
        table = self.query_one(PacketTable)
        if table.row_count:
            table.cursor = table.row_count - 1

    @on(RowList.Highlighted, "#packet-table")
    def show_detail(self, event: RowList.Highlighted) -> None:
        item = event.item
        pkt = item if isinstance(item, Packet) else _packet(*item)
        self.query_one("#packet-detail", Static).update(detail_markup(pkt))

    def on_show(self) -> None:
        self.call_after_refresh(self.catch_up, force=True)

    def reset(self) -> None:
        self.records.clear()
        self._mptcp_pending.clear()
        self._count = 0
        self._unshown = 0
        if self.is_mounted:
            self._fill([])

    def state(self) -> Any:
        return {"packets": self._count, "last": [_packet(i, r).fields for i, r in list(self.records)[-5:]]}


def _with_mptcp(tcp: TraceRecord, mptcp: TraceRecord) -> TraceRecord:
    """The tcp record of a segment with the decoded MPTCP options (and token) of its mptcp record."""
    extra = {"mptcp": mptcp.data.get("mptcp")}
    if "token" in mptcp.data:
        extra["token"] = mptcp.data["token"]
    return TraceRecord(tcp.t, tcp.node, tcp.layer, tcp.name, {**tcp.data, **extra})


def detail_markup(pkt: Packet) -> Text:
    """The packet's fields, each named as in its RFC, with the section linked."""
    rec = pkt.rec
    data = rec.data
    out = Text()
    out.append(f"{rec.node} {rec.layer} {rec.name}", style="bold")
    out.append(f" at {rec.t:.6f} s")

    def line(text: str, citation: tuple[str, str] | None = None) -> None:
        out.append("\n  " + text)
        if citation is not None:
            out.append("  ")
            out.append_text(cite_text(*citation))

    if rec.layer == "tcp" and rec.name != "segment_dropped":
        conn = str(data.get("conn", ""))
        src, _, dst = conn.partition("->")
        if rec.name == "segment_received":
            src, dst = dst, src
        line(f"Source Port: {src.rpartition(':')[2]}    Destination Port: {dst.rpartition(':')[2]}", TCP_HEADER)
        line(f"Sequence Number: {data.get('seq')}    Acknowledgment Number: {data.get('ack')}", TCP_HEADER)
        flags = str(data.get("flags", ""))
        names = " ".join(FLAG_NAMES.get(c, c) for c in flags if c != ".") or "none"
        line(f"Control Bits: {names}    Window: {data.get('win')}", TCP_HEADER)
        line(f"Segment length (data octets): {data.get('len')}", ("9293", "3.4"))
        for opt in data.get("options") or []:
            if isinstance(opt, dict):
                for name, value, (rfc, section) in describe_option(opt):
                    line(f"{name}: {value}", (rfc, section))
        for opt in data.get("mptcp") or []:
            if isinstance(opt, dict):
                sub = str(opt.get("subtype", "?"))
                rest = ", ".join(f"{k}={v}" for k, v in opt.items() if k != "subtype")
                line(f"Multipath TCP {sub}: {rest}", ("8684", MPTCP_BY_NAME.get(sub, "3")))
        if data.get("reason"):
            line(f"reason: {data['reason']}")
    elif rec.layer in ("ike", "esp", "iketcp") or (rec.layer == "mptcp" and rec.name != "segment_dropped"):
        for name, value, citation in LAYER_DETAIL[rec.layer](rec.name, data):
            line(f"{name}: {value}", citation)
    else:
        for key, value in data.items():
            line(f"{key}: {value}")
    return out


def _mptcp_detail(name: str, data: dict[str, Any]) -> list[tuple[str, str, tuple[str, str] | None]]:
    lines: list[tuple[str, str, tuple[str, str] | None]] = [
        ("Subflow", str(data.get("subflow", data.get("conn", ""))), None),
        (
            "Control Bits",
            " ".join(FLAG_NAMES.get(c, c) for c in str(data.get("flags", "")) if c != ".") or "none",
            TCP_HEADER,
        ),
        ("Segment length (data octets)", str(data.get("len", "")), ("9293", "3.4")),
    ]
    for opt in data.get("mptcp") or []:
        if isinstance(opt, dict):
            sub = str(opt.get("subtype", "?"))
            rest = ", ".join(f"{k}={v}" for k, v in opt.items() if k != "subtype")
            lines.append((f"Multipath TCP {sub}", rest, ("8684", MPTCP_BY_NAME.get(sub, "3"))))
    if data.get("source") == "wire":
        lines.append(("Observed", "on the wire of a kernel stack's host (no endpoint record)", None))
    return lines


LAYER_DETAIL = {"ike": describe_ike, "esp": describe_esp, "iketcp": describe_iketcp, "mptcp": _mptcp_detail}
