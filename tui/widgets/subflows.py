"""Subflows: per MPTCP connection, its subflows (plain TCP connections too), the data-sequence
mapping over time, reinjections and fallback with its reason.

One MPTCP connection is one group of rows (``#1``), its subflows as each end sees them, both
ends' tokens named together (hex, as on the wire); data sequence numbers are relative to the
sender's IDSN, as tshark shows them (the first data byte is 1, RFC 8684 §3.3.1)."""

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
from tui.widgets.outcomes import OutcomesPanel

def _delivered(data: dict[str, Any]) -> int:
    """Bytes known to have crossed the path: acknowledged plus SACKed (a sender's view), or
    received in or out of order (a receiver's). Acknowledged bytes alone jump when the ACK
    that ends a loss recovery covers what was SACKed long before, and a rate taken from
    them read up to 16 % above the path."""
    return int(data.get("bytes_acked") or 0) + int(data.get("bytes_sacked") or 0) + int(data.get("bytes_received") or 0)


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
    ("conn", "Conn", 4),  # "#1": connections are numbered
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
        self._conn_no: dict[Any, int] = {}  # token -> connection number (both ends' tokens: one number)
        self._conn_tokens: dict[int, dict[str, Any]] = {}  # number -> {node: token}
        self._next_no = 1
        self._subflow_token: dict[tuple[str, ...], tuple[str, int]] = {}  # a subflow's ends -> first (node, token)
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
        yield OutcomesPanel(id="subflow-outcomes", classes="outcomes")
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
                        acked = _delivered(data)
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
                    if rec.name == "key_updated":
                        touched |= self._pair(rec.node, token, data.get("remote_token"))
                    label = self._label(rec.node, token, data)
                    subflow = data.get("subflow")
                    if rec.name == "state_updated":
                        if "fallback" in data:
                            why = f"{rec.node}: {data['fallback']}"
                            before = self.fallbacks.get(label)
                            self.fallbacks[label] = f"{before}; {why}" if before and why not in before else why
                            log_lines.append(f"{rec.t:9.4f} {rec.node} {label}: FALLBACK to TCP — {data['fallback']}")
                            for key, row in self.rows.items():
                                if row["conn"] == label:
                                    row["conn"] = f"{label} FALLBACK"
                                    touched.add(key)
                        if isinstance(data.get("reinjected"), dict):
                            r = data["reinjected"]
                            self.reinjections += 1
                            log_lines.append(
                                f"{rec.t:9.4f} {rec.node} {label}: REINJECTED "
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
                            touched |= self._pair_by_subflow(rec.node, token, subflow)
                            label = self._label(rec.node, token, data)
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
                        moved = _delivered(data)
                        row["bytes"] = moved
                        key = f"{rec.node} {subflow}"
                        self._rate(rec, key, moved, row)  # one window for senders and receivers alike
                        touched.add(key)
                    elif rec.name == "key_updated":
                        self._idsn[(rec.node, token)] = (_hex(data.get("local_idsn")), _hex(data.get("remote_idsn")))
                        keys = ", ".join(f"{k}={_token_text(k, v)}" for k, v in data.items() if k != "token")
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
                        elif subtype == "DSS" and opt.get("data_ack") is not None and rec.name == "segment_sent":
                            pass  # acknowledgements alone: not a mapping
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
                            rest = ", ".join(f"{k}={_token_text(k, v)}" for k, v in opt.items() if k != "subtype")
                            log_lines.append(f"{rec.t:9.4f} {rec.node} {subtype} {rest}")
            except BAD_RECORD as exc:
                self.bad_record(rec, exc)
        if not self.is_mounted:
            return
        self._dirty |= touched
        if log_lines:
            self.query_one(Log).write_lines(log_lines)

    def _dsn(self, node: str, token: Any, data_seq: Any, *, sent: bool, wide: bool = True) -> str:
        """``data_seq`` relative to the sender's IDSN, as tshark shows it (RFC 8684 §3.3.1: the
        first data byte is IDSN+1, so 1), when the node's keys are known; else the absolute
        value with ``abs:``. A 32-bit DSN (no ``data_seq_64``) is taken relative to
        the IDSN's low 32 bits."""
        local, remote = self._idsn.get((node, token), (None, None))
        base = local if sent else remote
        if not isinstance(data_seq, int):
            return str(data_seq)
        if base is None:
            return f"abs:{data_seq}"
        modulus = 1 << (64 if wide else 32)
        return str((data_seq - base) % modulus)

    # --- one connection, both ends

    def _number(self, token: Any) -> int:
        no = self._conn_no.get(token)
        if no is None:
            no = self._conn_no[token] = self._next_no
            self._next_no += 1
        return no

    def _pair(self, node: str, token: Any, remote: Any) -> set[str]:
        """Both ends' tokens of one connection get one number; the rows relabelled."""
        if not isinstance(token, int):
            return set()
        no = self._number(token)
        self._conn_tokens.setdefault(no, {})[node] = token
        if not isinstance(remote, int):
            return set()
        other = self._conn_no.get(remote)
        if other is None:
            self._conn_no[remote] = no
            return set()
        if other == no:
            return set()
        keep, gone = min(no, other), max(no, other)
        for t, n in self._conn_no.items():
            if n == gone:
                self._conn_no[t] = keep
        self._conn_tokens.setdefault(keep, {}).update(self._conn_tokens.pop(gone, {}))
        old, new = f"#{gone} MPTCP", f"#{keep} MPTCP"
        touched = set()
        for key, row in self.rows.items():
            if row["conn"].startswith(old):
                row["conn"] = new + row["conn"][len(old) :]
                touched.add(key)
        if old in self.fallbacks:
            merged = self.fallbacks.pop(old)
            self.fallbacks[new] = f"{self.fallbacks[new]}; {merged}" if new in self.fallbacks else merged
        return touched

    def _pair_by_subflow(self, node: str, token: Any, subflow: str) -> set[str]:
        """The two ends of one subflow belong to one connection, whatever their tokens (a
        fallback on the SYN exchanges no keys)."""
        if not isinstance(token, int):
            return set()
        local, _, remote = subflow.partition("->")
        key = tuple(sorted((local, remote)))
        seen = self._subflow_token.setdefault(key, (node, token))
        if seen[0] == node or self._conn_no.get(seen[1]) == self._conn_no.get(token):
            return set()
        self._number(token)
        return self._pair(node, token, seen[1])

    def _label(self, node: str, token: Any, data: dict[str, Any]) -> str:
        if not isinstance(token, int):
            return str(data.get("conn", "MPTCP"))
        no = self._number(token)
        self._conn_tokens.setdefault(no, {}).setdefault(node, token)
        return f"#{no} MPTCP"

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
                conn = row["conn"].replace(" MPTCP", "")
                full["conn"] = Text(conn.replace(" FALLBACK", " FB"), style=full["conn"].style)
                full["subflow"] = narrow_subflow(row["subflow"])
                full["state"] = Text(STATE_SHORT.get(row["state"], row["state"]), style=full["state"].style)
            cells = [full[c] for c, _, _ in columns]
            if key in table.rows:
                for (col, _, _), value in zip(columns, cells, strict=True):
                    table.update_cell(key, col, value)
            else:
                table.add_row(*cells, key=key)
        if len(keys) and getattr(self, "_grouped_rows", -1) != len(self.rows):
            self._grouped_rows = len(self.rows)
            table.sort("conn", key=lambda cell: _conn_order(str(cell)))  # one connection's rows together
        summary = self.summary()
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

    def summary(self) -> Text:
        """``MPTCP #1: h1 token 9198d83a ⇄ h2 token 63cb4cfd, 4 subflow ends``; plain TCP counted."""
        text = Text()
        numbers = sorted({self._conn_no[t] for t in self._conn_no if isinstance(t, int)})
        for no in numbers:
            label = f"#{no} MPTCP"
            ends = sum(1 for row in self.rows.values() if row["conn"].startswith(label))
            if not ends:
                continue
            tokens = " ⇄ ".join(f"{node} token {tok:08x}" for node, tok in sorted(self._conn_tokens.get(no, {}).items()))
            if text:
                text.append("\n")
            text.append(f"{label}", style="bold")
            text.append(f": {tokens}, {ends} subflow end(s)")
        plain = sum(1 for row in self.rows.values() if not row["mptcp"])
        if plain:
            if text:
                text.append("\n")
            text.append(f"{plain} plain TCP connection end(s)")
        return text or Text("No connections yet.")

    def connections(self) -> dict[str, dict[str, Any]]:
        """Per MPTCP connection: both ends' tokens (hex) and its rows (tests, state)."""
        out: dict[str, dict[str, Any]] = {}
        for no in sorted(set(self._conn_no.values())):
            label = f"#{no} MPTCP"
            rows = [k for k, row in self.rows.items() if row["conn"].startswith(label)]
            if rows:
                out[label] = {
                    "tokens": {n: f"{t:08x}" for n, t in self._conn_tokens.get(no, {}).items()},
                    "rows": rows,
                }
        return out

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
            "connections": self.connections(),
            "reinjections": self.reinjections,
            "mappings": self.mappings,
        }


def _conn_order(label: str) -> tuple[int, str]:
    """Rows sort by connection number (MPTCP ``#n``), plain TCP after."""
    head = label.split()[0] if label else ""
    if head.startswith("#") and head[1:].isdigit():
        return (int(head[1:]), "")
    return (1 << 30, label)


def _token_text(key: str, value: Any) -> Any:
    """Tokens in hex, as every view shows them."""
    if "token" in key and isinstance(value, int) and not isinstance(value, bool):
        return f"{value:08x}"
    return value


def _hex(value: Any) -> int | None:
    """A 16-hex-digit IDSN from a ``key_updated`` record, or None."""
    if not isinstance(value, str):
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None
