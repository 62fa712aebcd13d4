"""Subflows: per MPTCP connection, its subflows (plain TCP connections too), the data-sequence
mapping over time, reinjections and fallback with its reason."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Log, Static

from lab.scenario.rates import WindowRate
from lab.trace import TraceRecord
from tui.widgets.base import BAD_RECORD, TraceView, fmt_bytes, fmt_rate, short_conn, spark
from tui.widgets.follow_log import FollowLog

COLUMNS = (
    ("conn", "Connection", 14),
    ("node", "Node", 4),
    ("subflow", "Subflow", 30),
    ("id", "ID", 2),
    ("state", "State", 11),
    ("backup", "Backup", 6),
    ("rtt", "RTT ms", 7),
    ("cwnd", "cwnd", 8),
    ("bytes", "Bytes", 10),
    ("rate", "Rate", 10),
    ("trend", "Trend", 12),
)

# below NARROW_WIDTH columns the table keeps what the lesson needs (RTT, cwnd, bytes, rate) and
# gives up the backup flag, the address ID and the trend, shortening the rest
NARROW_WIDTH = 110
NARROW_COLUMNS = (
    ("conn", "Conn", 8),
    ("node", "Nd", 2),
    ("subflow", "Subflow", 16),
    ("state", "State", 7),
    ("rtt", "RTT ms", 6),
    ("cwnd", "cwnd", 7),
    ("bytes", "Bytes", 9),
    ("rate", "Rate", 10),
)
STATE_SHORT = {"ESTABLISHED": "ESTAB", "PRE_ESTABLISHED": "PRE-EST", "SYN-RECEIVED": "SYN-RCV", "FIN-WAIT-1": "FIN-W1", "FIN-WAIT-2": "FIN-W2", "LAST-ACK": "LASTACK"}


def narrow_subflow(subflow: str) -> str:
    """``10.0.3.1:43354->10.0.4.2:5001`` as ``:43354→10.0.4.2`` (the local port names the subflow)."""
    local, _, remote = subflow.partition("->")
    port = local.rsplit(":", 1)[-1]
    return f":{port}→{remote.rsplit(':', 1)[0]}" if remote else subflow[:16]


CLOSED_STATES = frozenset({"CLOSED", "TIME-WAIT", "TIME_WAIT", "CLOSING", "LAST-ACK", "RESET"})

MPTCP_EVENTS = (
    "address_added",
    "address_removed",
    "peer_backup",
    "data_fin_received",
    "data_fin_acked",
    "terminated",
    "fastclose",
    "mp_fail",
    "infinite_mapping",
)


class SubflowTable(DataTable):
    pass


class SubflowsView(Vertical, TraceView):
    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.reset_state()

    def reset_state(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.fallbacks: dict[str, str] = {}  # token or conn -> reason
        self.reinjections = 0
        self.mappings = 0
        self._idsn: dict[tuple[str, Any], tuple[int | None, int | None]] = {}  # (node, token) -> IDSNs
        self._history: dict[str, list[float]] = {}
        self._meters: dict[str, WindowRate] = {}  # row -> bytes moved over the last second
        self._clock = 0.0  # the latest record's time: rates decay as it moves on without new bytes
        self._ended = False  # the run is over: nothing flows any more
        self._dirty: set[str] = set()

    def compose(self) -> ComposeResult:
        yield Static("No connections yet.", id="subflow-summary")
        yield SubflowTable(id="subflow-table", cursor_type="row")
        yield Static("[b]Data-sequence mapping, reinjections, fallback[/b]", classes="section")
        yield FollowLog(id="subflow-log", max_lines=1000)

    def on_mount(self) -> None:
        self.narrow = False
        self._set_columns()

    def _columns(self) -> tuple[tuple[str, str, int], ...]:
        return NARROW_COLUMNS if self.narrow else COLUMNS

    def _set_columns(self) -> None:
        table = self.query_one(SubflowTable)
        table.clear(columns=True)
        for key, label, width in self._columns():
            table.add_column(label, key=key, width=width)
        if self.rows:
            self._show(set(self.rows))

    def on_resize(self, event: Any) -> None:
        narrow = event.size.width < NARROW_WIDTH
        if narrow != getattr(self, "narrow", False):
            self.narrow = narrow
            self._set_columns()

    def _row(self, node: str, subflow: str) -> dict[str, Any]:
        key = f"{node} {subflow}"
        row = self.rows.get(key)
        if row is None:
            row = self.rows[key] = {
                "conn": "TCP",
                "node": node,
                "subflow": subflow,
                "id": "",
                "state": "",
                "backup": "",
                "rtt": None,
                "cwnd": None,
                "bytes": None,
                "rate": None,
                "mptcp": False,
                "_new": True,
            }
        return row

    def apply(self, records: list[TraceRecord]) -> None:
        touched: set[str] = set()
        log_lines: list[str] = []
        if records:
            self._clock = max(self._clock, records[-1].t)
        for rec in records:
            try:
                layer, data = rec.layer, rec.data
                if layer == "tcp":
                    conn = data.get("conn")
                    if not isinstance(conn, str):
                        continue
                    if rec.name == "metrics_updated":
                        row = self._row(rec.node, conn)
                        row["state"] = row["state"] if row["mptcp"] and row["state"] else str(data.get("state", ""))
                        row["rtt"] = data.get("srtt_ms")
                        row["cwnd"] = data.get("cwnd")
                        acked = int(data.get("bytes_acked") or 0) + int(data.get("bytes_received") or 0)
                        row["bytes"] = acked
                        self._rate(rec, f"{rec.node} {conn}", acked, row)
                        touched.add(f"{rec.node} {conn}")
                    elif rec.name == "state_updated" and "to" in data:
                        key = f"{rec.node} {conn}"
                        if key in self.rows and not self.rows[key]["mptcp"]:
                            self.rows[key]["state"] = str(data["to"])
                            touched.add(key)
                elif layer == "mptcp":
                    token = data.get("token")
                    label = f"token {token:08x}" if isinstance(token, int) else str(data.get("conn", "MPTCP"))
                    subflow = data.get("subflow")
                    if rec.name == "state_updated":
                        if "fallback" in data:
                            self.fallbacks[label] = str(data["fallback"])
                            log_lines.append(f"{rec.t:9.4f} {rec.node} {label}: FALLBACK to TCP — {data['fallback']}")
                            for key, row in self.rows.items():
                                if row["conn"] == label:
                                    row["conn"] = f"{label} FALLBACK"
                                    touched.add(key)
                        if isinstance(data.get("reinjected"), dict):
                            r = data["reinjected"]
                            self.reinjections += 1
                            log_lines.append(
                                f"{rec.t:9.4f} {rec.node} {label}: reinjected "
                                f"data_seq={self._dsn(rec.node, token, r.get('data_seq'), sent=True)} "
                                f"len={r.get('len')} {r.get('from_subflow')} ⇒ {r.get('to_subflow') or 'any subflow'}"
                                + (f" ({r['why']})" if r.get("why") else "")
                            )
                        for event in MPTCP_EVENTS:
                            if event in data:
                                extra = {k: v for k, v in data.items() if k not in ("token", event)}
                                log_lines.append(
                                    f"{rec.t:9.4f} {rec.node} {label}: {event.replace('_', ' ')} {data[event]}"
                                    + (f" {extra}" if extra else "")
                                )
                        if isinstance(subflow, str):
                            row = self._row(rec.node, subflow)
                            row["mptcp"] = True
                            if data.get("source") == "wire":
                                row["source"] = "wire"
                            row["conn"] = label + (" FALLBACK" if label in self.fallbacks else "")
                            if "to" in data:
                                row["state"] = str(data["to"])
                            if "address_id" in data:
                                row["id"] = str(data["address_id"])
                            if "backup" in data:
                                row["backup"] = "backup" if data["backup"] else "–"
                            touched.add(f"{rec.node} {subflow}")
                    elif rec.name == "metrics_updated" and isinstance(subflow, str):
                        row = self._row(rec.node, subflow)
                        row["mptcp"] = True
                        if data.get("source") == "wire":
                            row["source"] = "wire"
                        row["conn"] = label + (" FALLBACK" if label in self.fallbacks else "")
                        if "state" in data:
                            row["state"] = str(data["state"])
                        if "address_id" in data:
                            row["id"] = str(data["address_id"])
                        if "backup" in data:
                            row["backup"] = "backup" if data["backup"] else "–"
                        row["rtt"] = data.get("srtt_ms", row["rtt"])
                        row["cwnd"] = data.get("cwnd", row["cwnd"])
                        moved = int(data.get("bytes_acked") or 0) + int(data.get("bytes_received") or 0)
                        row["bytes"] = moved
                        key = f"{rec.node} {subflow}"
                        self._rate(rec, key, moved, row)  # one window for senders and receivers alike
                        touched.add(key)
                    elif rec.name == "key_updated":
                        self._idsn[(rec.node, token)] = (_hex(data.get("local_idsn")), _hex(data.get("remote_idsn")))
                        keys = ", ".join(f"{k}={v}" for k, v in data.items() if k != "token")
                        log_lines.append(f"{rec.t:9.4f} {rec.node} {label}: keys {keys}")
                if rec.name in ("segment_sent", "segment_received") and isinstance(data.get("mptcp"), list):
                    for opt in data["mptcp"]:
                        if not isinstance(opt, dict):
                            continue
                        subtype = opt.get("subtype")
                        if subtype == "DSS" and opt.get("data_seq") is not None:
                            self.mappings += 1
                            dsn = self._dsn(
                                rec.node,
                                data.get("token"),
                                opt.get("data_seq"),
                                sent=rec.name == "segment_sent",
                                wide=bool(opt.get("data_seq_64", True)),
                            )
                            log_lines.append(
                                f"{rec.t:9.4f} {rec.node} {'→' if rec.name == 'segment_sent' else '←'} "
                                f"{short_conn(str(data.get('subflow', data.get('conn', ''))))} DSS data_seq={dsn} "
                                f"subflow_seq={opt.get('subflow_seq')} len={opt.get('data_level_length', opt.get('len'))}"
                            )
                        elif subtype in (
                            "MP_CAPABLE",
                            "MP_JOIN",
                            "ADD_ADDR",
                            "REMOVE_ADDR",
                            "MP_PRIO",
                            "MP_FAIL",
                            "MP_FASTCLOSE",
                            "MP_TCPRST",
                        ):
                            rest = ", ".join(f"{k}={v}" for k, v in opt.items() if k != "subtype")
                            log_lines.append(f"{rec.t:9.4f} {rec.node} {subtype} {rest}")
            except BAD_RECORD as exc:
                self.bad_record(rec, exc)
        if not self.is_mounted:
            return
        self._dirty |= touched
        if log_lines:
            self.query_one(Log).write_lines(log_lines)

    def _dsn(self, node: str, token: Any, data_seq: Any, *, sent: bool, wide: bool = True) -> str:
        """``data_seq`` relative to the sender's IDSN (RFC 8684 §3.3.1: the first data byte is
        IDSN+1), when the node's keys are known; else as recorded. A 32-bit DSN (no ``data_seq_64``)
        is taken relative to the IDSN's low 32 bits."""
        local, remote = self._idsn.get((node, token), (None, None))
        base = local if sent else remote
        if base is None or not isinstance(data_seq, int):
            return str(data_seq)
        modulus = 1 << (64 if wide else 32)
        return f"IDSN+{(data_seq - base) % modulus}"

    def flush(self) -> None:
        """Draw the rows that changed since the last flush (the app calls this a few times a second)."""
        touched, self._dirty = self._dirty, set()
        for key, row in self.rows.items():  # rates move with the clock, even without a new sample
            rate = self._current_rate(key)
            if rate != row["rate"]:
                row["rate"] = rate
                touched.add(key)
        if touched and self.is_mounted:
            self._show(touched)

    def _rate(self, rec: TraceRecord, key: str, total: int, row: dict[str, Any]) -> None:
        meter = self._meters.get(key)
        if meter is None:
            meter = self._meters[key] = WindowRate()
        meter.add(rec.t, total)
        row["rate"] = self._current_rate(key)
        sample = meter.rate(rec.t)  # as of this record: the trend does not depend on how records were batched
        if sample is not None:
            self._history.setdefault(key, []).append(sample)
            del self._history[key][:-64]

    def _current_rate(self, key: str) -> float | None:
        """The row's rate as of the clock: 0 on a closed subflow, decaying once no bytes move."""
        row = self.rows.get(key)
        if self._ended or (row is not None and str(row.get("state", "")).upper() in CLOSED_STATES):
            return 0.0
        meter = self._meters.get(key)
        return None if meter is None else meter.rate(self._clock)

    def rates(self) -> dict[str, float | None]:
        """Every row's rate in bit/s as shown (tests hold these against the links' rates)."""
        return {key: self._current_rate(key) for key in self.rows}

    def _cells(self, key: str) -> tuple:
        row = self.rows[key]
        fallback = "FALLBACK" in row["conn"]
        return (
            Text(row["conn"], style="bold reverse" if fallback else ("bold" if row["mptcp"] else "dim")),
            row["node"] + ("*" if row.get("source") == "wire" else ""),
            short_conn(row["subflow"]),
            row["id"],
            Text(row["state"], style="bold" if row["state"] in ("ESTABLISHED", "established") else ""),
            row["backup"],
            "–" if row["rtt"] is None else f"{row['rtt']:.1f}",
            "–" if row["cwnd"] is None else str(row["cwnd"]),
            fmt_bytes(row["bytes"]),
            fmt_rate(row["rate"]),
            spark(self._history.get(key, []), top=self._spark_top()),
        )

    def _spark_top(self) -> float:
        """One scale for every row's trend, so shares can be compared."""
        return max((max(h[-12:]) for h in self._history.values() if h), default=0.0) or 1.0

    def _show(self, keys: set[str]) -> None:
        table = self.query_one(SubflowTable)
        columns = self._columns()
        for key in [k for k in self.rows if k in keys]:  # in the order the records named them
            full = dict(zip((c for c, _, _ in COLUMNS), self._cells(key), strict=True))
            if self.narrow:
                row = self.rows[key]
                conn = row["conn"].removeprefix("token ")
                full["conn"] = Text(conn.replace(" FALLBACK", " FB"), style=full["conn"].style)
                full["subflow"] = narrow_subflow(row["subflow"])
                full["state"] = Text(STATE_SHORT.get(row["state"], row["state"]), style=full["state"].style)
            cells = [full[c] for c, _, _ in columns]
            if key in table.rows:
                for (col, _, _), value in zip(columns, cells, strict=True):
                    table.update_cell(key, col, value)
            else:
                table.add_row(*cells, key=key)
        conns = {row["conn"] for row in self.rows.values()}
        summary = Text(f"{len(self.rows)} subflow(s) in {len(conns)} connection(s)")
        if self.fallbacks:
            summary.append("   fallback: " + "; ".join(f"{k}: {v}" for k, v in self.fallbacks.items()), style="bold")
        if self.reinjections:
            summary.append(f"   reinjections: {self.reinjections}")
        if any(row.get("source") == "wire" for row in self.rows.values()):
            summary.append("   * a kernel peer, as seen on the wire", style="italic")
        if summary.plain != getattr(self, "_summary_shown", None):
            self._summary_shown = summary.plain
            self.query_one("#subflow-summary", Static).update(summary)
        self.set_class(bool(self.fallbacks), "-fallback")

    def run_ended(self) -> None:
        """The record stream ended: every rate is zero from now on."""
        self._ended = True
        self.flush()

    def reset(self) -> None:
        self.reset_state()
        if self.is_mounted:
            self.query_one(SubflowTable).clear()
            self.query_one(Log).clear()
            self.query_one("#subflow-summary", Static).update("No connections yet.")
            self._summary_shown = None
            self.remove_class("-fallback")

    def state(self) -> Any:
        return {
            "rows": {k: {c: v for c, v in r.items() if not c.startswith("_")} for k, r in self.rows.items()},
            "fallbacks": dict(self.fallbacks),
            "reinjections": self.reinjections,
            "mappings": self.mappings,
        }


def _hex(value: Any) -> int | None:
    """A 16-hex-digit IDSN from a ``key_updated`` record, or None."""
    if not isinstance(value, str):
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None
