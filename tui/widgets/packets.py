"""Packets: a filterable list of decoded segments and drops; the selected one with RFC field names."""

from __future__ import annotations

import itertools
from collections import deque
from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
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
        "opt": " ".join(option_summary(o) for o in opts if isinstance(o, dict)),
        "reason": str(data.get("reason", data.get("action", ""))),
    }
    if rec.layer in LAYER_FIELDS:
        fields.update(LAYER_FIELDS[rec.layer](data))
    hay = " ".join(f"{k}={v}" for k, v in fields.items()).lower()
    return Packet(index, rec, direction, fields, hay)


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


def format_packet(item: tuple[int, TraceRecord] | Packet) -> str:
    pkt = item if isinstance(item, Packet) else _packet(*item)
    f = pkt.fields
    extra = f["opt"] if pkt.direction in "→←" else f["reason"]
    return (
        f"{pkt.rec.t:10.6f} {f['node']:<5} {pkt.direction} {short_conn(f['conn']):<31} {f['flags']:<5} "
        f"{f['seq']:>10} {f['ack']:>10} {f['len']:>5} {f['win']:>6}  {extra}"
    )


class PacketTable(RowList):
    """The packet rows; drops and middlebox rewrites are underlined."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(format_packet, marked=_marked, **kw)


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
        self._count = 0
        self._terms: list[tuple[str | None, str]] = []
        self._unshown = 0  # records that arrived since the table last caught up

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: node=h1 flags=S conn=5001 opt=sack drop …", id="packet-filter")
        yield Static(HEADER, id="packet-header")
        yield PacketTable(id="packet-table")
        with VerticalScroll(id="packet-detail-box"):
            yield Static("Select a packet to see its fields.", id="packet-detail")

    def on_mount(self) -> None:
        self.set_interval(self.FLUSH_S, self.catch_up)

    def apply(self, records: list[TraceRecord]) -> None:
        append = self.records.append
        n = self._count
        for rec in records:
            if rec.name in SEGMENT_NAMES:
                n += 1
                append((n, rec))
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
        self._count = 0
        self._unshown = 0
        if self.is_mounted:
            self._fill([])

    def state(self) -> Any:
        return {"packets": self._count, "last": [_packet(i, r).fields for i, r in list(self.records)[-5:]]}


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
