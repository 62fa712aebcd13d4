"""Pictures from trace records: per-path throughput over time (stacked, one scale) and the data
sequence of each subflow over time (the tcptrace / mptcpanalyzer picture), drawn with text.

The models here read records and know nothing of Textual; the drawing functions return Rich
``Text`` sized to a given width and height, so a widget draws them and a test reads them.

Throughput: every subflow's bytes received (at its receiver: ``bytes_received`` of ``mptcp``
``metrics_updated``, or of ``tcp`` ``metrics_updated`` for a plain TCP connection), turned into
bits per second over a trailing window exactly as :class:`lab.scenario.rates.WindowRate` does,
so no path stands above its link's rate by more than :func:`lab.scenario.rates.rate_error_bps`
and every rate decays to zero within a window once bytes stop. Paths are named by the first
hop behind the sender's address (``via r1``); a path's rate is the sum of its subflows'.

Data sequence: each data segment a sender's TCP sends (``tcp`` ``segment_sent``), placed at its
data-level sequence number relative to the connection's first data byte (IDSN + 1) through the
DSS mapping that covers it (``mptcp`` ``segment_sent``), or through the infinite mapping after a
fallback. A segment below what its subflow already sent is a retransmission (R); a mapping of
data the connection had already sent on some subflow is a reinjection (◆). Plain TCP
connections are drawn the same way with their own relative sequence numbers.
"""

from __future__ import annotations

import math
from bisect import bisect_right, insort
from dataclasses import dataclass, field
from typing import Any

from rich.text import Text

from lab.scenario.rates import RATE_WINDOW_S
from lab.trace import TraceRecord
from tui.path_names import PathNames, split_subflow

# one colour and one fill per path, so a monochrome terminal still tells them apart
PATH_STYLES = ("bright_cyan", "bright_magenta", "bright_green", "bright_yellow", "bright_blue", "bright_red")
PATH_FILLS = ("█", "▓", "▒", "░", "▚", "▞")
EIGHTHS = " ▁▂▃▄▅▆▇█"
SUBFLOW_GLYPHS = ("•", "+", "o", "*", "x", "=")
RETRANSMITTED = "R"
REINJECTED = "◆"
MARK_RETRANSMITTED = 1
MARK_REINJECTED = 2
AXIS_WIDTH = 7  # "20.0M ┤": every plot's area starts at the same column, so their times line up
SEQ_MODULUS = 1 << 32
MAX_BINS = 6000  # per connection; beyond it the time quantum doubles (a picture is at most ~150 columns wide)
MAX_MAPPINGS = 20000  # per subflow; beyond it the oldest half goes (no retransmission reaches that far back)


SCALE_STEPS = (1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
TICK_STEPS = (1.0, 2.0, 2.5, 5.0, 10.0)


def nice_ceiling(value: float, steps: tuple[float, ...] = SCALE_STEPS) -> float:
    """The smallest of ``steps`` × 10^k at or above ``value``."""
    if value <= 0:
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in steps:
        if step * exp >= value * (1 - 1e-9):
            return step * exp
    return 10 * exp


def short_rate(bps: float) -> str:
    if bps >= 1e9:
        return f"{bps / 1e9:.1f}G"
    if bps >= 1e6:
        return f"{bps / 1e6:.1f}M"
    if bps >= 1e3:
        return f"{bps / 1e3:.0f}k"
    return f"{bps:.0f}"


def short_bytes(n: float) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):.1f}G"
    if n >= 1 << 20:
        return f"{n / (1 << 20):.1f}M"
    if n >= 1 << 10:
        return f"{n / (1 << 10):.0f}K"
    return f"{n:.0f}"


# --- throughput


@dataclass
class _Counter:
    path: str
    times: list[float] = field(default_factory=list)
    totals: list[int] = field(default_factory=list)
    closed: bool = False

    def add(self, t: float, total: int) -> None:
        if self.times and (total < self.totals[-1] or t < self.times[-1]):
            self.times.clear()  # the counter went back: a connection restarted (WindowRate does the same)
            self.totals.clear()
        if self.times and t == self.times[-1]:
            self.totals[-1] = total
            return
        self.times.append(t)
        self.totals.append(total)

    @property
    def total(self) -> int:
        return self.totals[-1] if self.totals else 0

    def bytes_at(self, t: float) -> float:
        """The counter at ``t``, linear between samples (flat before the first and after the last)."""
        times = self.times
        i = bisect_right(times, t) - 1
        if i < 0:
            return float(self.totals[0]) if self.totals else 0.0
        if i >= len(times) - 1:
            return float(self.totals[-1])
        t_a, t_b = times[i], times[i + 1]
        return self.totals[i] + (self.totals[i + 1] - self.totals[i]) * (t - t_a) / (t_b - t_a)

    def rate_at(self, t: float, window_s: float) -> float:
        """Bits per second over the window ending at ``t``.

        With samples every 0.1 s and a window a whole number of sampling intervals long, this
        is a mix of two windows' true rates, so it holds the same bound as WindowRate (the
        link's rate plus one packet per window); and its integral over time is exactly the
        bytes counted, so the picture's area is what was delivered.
        """
        if not self.times:
            return 0.0
        return (self.bytes_at(t) - self.bytes_at(t - window_s)) * 8 / window_s


class ThroughputHistory:
    """Every subflow's received bytes over time, grouped by path."""

    def __init__(self, names: PathNames | None = None, *, window_s: float = RATE_WINDOW_S) -> None:
        self.names = names or PathNames()
        self.window_s = window_s
        self.reset()

    def reset(self) -> None:
        self._counters: dict[tuple[str, str, str], _Counter] = {}  # (receiving node, subflow there, layer)
        self._mptcp: set[tuple[str, str]] = set()  # (node, four-tuple) that are MPTCP subflows
        self._senders: dict[str, str] = {}  # path -> sending node
        self._born: dict[tuple[str, str], float] = {}  # (node, four-tuple) -> its first state record
        self.clock = 0.0
        self.first = None  # type: float | None
        self.ended = False
        self.link_events: list[tuple[float, str, bool]] = []  # (t, link, up)

    def add(self, rec: TraceRecord) -> bool:
        """Take one record; True when it changed what is drawn."""
        if rec.t < self.clock - self.window_s:
            self.reset()  # the records started over (a replay from the beginning)
        self.clock = max(self.clock, rec.t)
        layer, name, data = rec.layer, rec.name, rec.data
        if name == "metrics_updated" and layer in ("mptcp", "tcp"):
            conn = data.get("subflow") if layer == "mptcp" else data.get("conn")
            if not isinstance(conn, str):
                return False
            key = (rec.node, conn, layer)
            if layer == "mptcp":
                self._mptcp.add((rec.node, conn))
            received = int(data.get("bytes_received") or 0)
            counter = self._counters.get(key)
            if counter is None:
                if not received:
                    return False  # a sender's view: its data is counted where it arrives
                _, _, sender_addr, _ = split_subflow(conn)
                path = self.names.path(sender_addr)
                self._senders.setdefault(path, self.names.owner(sender_addr) or "?")
                counter = self._counters[key] = _Counter(path)
                born = self._born.get((rec.node, conn))
                if born is not None and born < rec.t:
                    counter.add(born, 0)  # nothing had arrived when the subflow began
            counter.add(rec.t, received)
            state = str(data.get("state", "")).upper()
            counter.closed = state.endswith(("CLOSED", "TIME-WAIT"))
            if self.first is None or rec.t < self.first:
                self.first = rec.t
            return True
        if name == "state_updated" and layer in ("mptcp", "tcp"):
            conn = data.get("subflow") if layer == "mptcp" else data.get("conn")
            if not isinstance(conn, str):
                return False
            self._born.setdefault((rec.node, conn), rec.t)
            counter = self._counters.get((rec.node, conn, layer))
            if counter is not None and data.get("to") in ("CLOSED", "TIME-WAIT"):
                if isinstance(data.get("bytes_received"), int) and data["bytes_received"] >= counter.total:
                    counter.add(rec.t, data["bytes_received"])  # what arrived since the last sample
                counter.closed = True
                return True
            return False
        if layer == "link" and name == "state_updated" and isinstance(data.get("up"), bool) and "backend" not in data:
            self.link_events.append((rec.t, str(data.get("link", "?")), bool(data["up"])))
            return True
        return False

    def counters(self) -> list[_Counter]:
        """Every counter drawn. A subflow is counted by its tcp and its mptcp records alike; the one
        that counted more is drawn (after a fallback to TCP only the tcp counter keeps growing)."""
        best: dict[tuple[str, str], _Counter] = {}
        for (node, conn, _layer), counter in self._counters.items():
            other = best.get((node, conn))
            if other is None or counter.total > other.total:
                best[(node, conn)] = counter
        return list(best.values())

    def paths(self) -> list[str]:
        """Paths in the order their first bytes arrived."""
        seen: list[str] = []
        for counter in self.counters():
            if counter.path not in seen:
                seen.append(counter.path)
        return seen

    def label(self, path: str) -> str:
        senders = set(self._senders.values())
        return f"{self._senders.get(path, '?')} {path}" if len(senders) > 1 else path

    def span(self) -> tuple[float, float]:
        """The time axis: from the first sample to the clock (and, once the run ended, until rates reach 0)."""
        start = 0.0 if self.first is None else min(0.0, self.first)
        end = self.clock
        if self.ended:
            last = max((c.times[-1] for c in self.counters() if c.times), default=end)
            end = max(end, last + self.window_s)
        return start, max(end, start + 1e-6)

    def rate_at(self, path: str, t: float) -> float:
        return sum(c.rate_at(t, self.window_s) for c in self.counters() if c.path == path)

    def current(self) -> dict[str, float]:
        """Each path's rate now: 0 for closed subflows and once the run has ended (the tables' rule)."""
        out = {path: 0.0 for path in self.paths()}
        if self.ended:
            return out
        for counter in self.counters():
            if not counter.closed:
                out[counter.path] += counter.rate_at(self.clock, self.window_s)
        return out

    def columns(self, t0: float, t1: float, n: int) -> tuple[list[float], dict[str, list[float]]]:
        """``n`` columns over [t0, t1]: each column's middle time and each path's rate there."""
        width = (t1 - t0) / max(n, 1)
        times = [t0 + (i + 0.5) * width for i in range(n)]
        counters = self.counters()
        series: dict[str, list[float]] = {path: [0.0] * n for path in self.paths()}
        for counter in counters:
            values = series[counter.path]
            for i, t in enumerate(times):
                values[i] += counter.rate_at(t, self.window_s)
        return times, series


# --- data sequence


@dataclass
class _Subflow:
    group: tuple[str, Any]
    index: int
    isn: int | None = None
    sent_end: int | None = None  # highest relative subflow sequence number sent, plus one
    keys: list[int] = field(default_factory=list)  # mapping starts (relative subflow seq), sorted
    mappings: dict[int, tuple[int, int, bool]] = field(default_factory=dict)  # start -> (data_seq, len, reinjected)
    infinite: tuple[int, int] | None = None  # (subflow_seq, data_seq) of the infinite mapping


@dataclass
class SequenceGroup:
    """One connection from its sender's side: an MPTCP connection (node, token) or a TCP one."""

    node: str
    label: str
    mptcp: bool
    subflows: list[str] = field(default_factory=list)
    base: int | None = None  # the first data byte's sequence number (IDSN + 1)
    low: int | None = None  # the lowest sequence number seen (when the IDSN is not known)
    sent_end: int = 0  # the highest data sequence number sent, plus one
    bytes_sent: int = 0
    quantum_s: float = 0.01
    bins: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # (subflow, t // quantum) -> [lo, hi, marks]
    _marks: dict[tuple[int, int, int], tuple[float, int]] = field(default_factory=dict)  # (subflow, bin, mark) -> (t, dsn)

    def add(self, t: float, subflow: int, dsn: int, length: int, mark: int) -> None:
        self.bytes_sent += length
        if self.low is None or dsn < self.low:
            self.low = dsn
        key = (subflow, int(t / self.quantum_s))
        entry = self.bins.get(key)
        end = dsn + length
        if entry is None:
            self.bins[key] = [dsn, end, mark]
            if len(self.bins) > MAX_BINS:
                self._coarsen()
        else:
            entry[0] = min(entry[0], dsn)
            entry[1] = max(entry[1], end)
            entry[2] |= mark
        if mark:
            self._marks.setdefault((subflow, int(t / self.quantum_s), mark), (t, dsn))

    @property
    def marks(self) -> list[tuple[float, int, int, int]]:
        """(t, subflow, dsn, mark): the first retransmission and reinjection of each subflow in each bin."""
        return sorted((t, sf, dsn, mark) for (sf, _q, mark), (t, dsn) in self._marks.items())

    def _coarsen(self) -> None:
        self.quantum_s *= 2
        marks: dict[tuple[int, int, int], tuple[float, int]] = {}
        for (sf, q, mark), value in sorted(self._marks.items(), key=lambda item: item[1]):
            marks.setdefault((sf, q // 2, mark), value)
        self._marks = marks
        bins: dict[tuple[int, int], list[int]] = {}
        for (sf, q), (lo, hi, mark) in self.bins.items():
            key = (sf, q // 2)
            entry = bins.get(key)
            if entry is None:
                bins[key] = [lo, hi, mark]
            else:
                entry[0], entry[1], entry[2] = min(entry[0], lo), max(entry[1], hi), entry[2] | mark
        self.bins = bins

    def origin(self) -> int:
        return self.base if self.base is not None else (self.low or 0)


class SequenceHistory:
    """Data segments of every sender, by connection, placed at their data sequence numbers."""

    def __init__(self, names: PathNames | None = None) -> None:
        self.names = names or PathNames()
        self.reset()

    def reset(self) -> None:
        self.groups: dict[tuple[str, Any], SequenceGroup] = {}
        self._subflows: dict[tuple[str, str], _Subflow] = {}  # (node, four-tuple) -> its mappings
        self._isn: dict[tuple[str, str], int] = {}  # (node, four-tuple) -> the ISN its SYN carried
        self._idsn: dict[tuple[str, Any], int] = {}  # (node, token) -> IDSN + 1
        self._reinjected: dict[tuple[str, Any], dict[int, tuple[int, str]]] = {}  # data_seq -> (len, from)
        self._tcp_sent: dict[tuple[str, str], int] = {}  # plain TCP: highest relative sequence number sent, plus one
        self.clock = 0.0

    def add(self, rec: TraceRecord) -> bool:
        """Take one record; True when it changed what is drawn."""
        if rec.t < self.clock - RATE_WINDOW_S:
            self.reset()
        self.clock = max(self.clock, rec.t)
        if rec.name != "segment_sent" and rec.name != "key_updated" and rec.name != "state_updated":
            return False
        layer, data = rec.layer, rec.data
        if layer == "tcp" and rec.name == "segment_sent":
            return self._tcp_segment(rec, data)
        if layer != "mptcp":
            return False
        if rec.name == "segment_sent":
            for opt in data.get("mptcp") or ():
                if not isinstance(opt, dict):
                    continue
                if opt.get("subtype") == "DSS" and opt.get("data_seq") is not None:
                    self._mapping(rec, data, opt, int(opt["data_seq"]), int(opt.get("subflow_seq") or 0))
                elif opt.get("subtype") == "MP_CAPABLE" and opt.get("data_level_length"):
                    # data on the third ACK (RFC 8684 §3.1): the first byte is IDSN + 1, subflow byte 1
                    base = self._idsn.get((rec.node, data.get("token")))
                    if base is not None:
                        self._mapping(rec, data, opt, base, 1)
            return False
        if rec.name == "key_updated":
            idsn = data.get("local_idsn")
            if isinstance(idsn, str):
                base = (int(idsn, 16) + 1) % (1 << 64)
                self._idsn[(rec.node, data.get("token"))] = base
                group = self.groups.get((rec.node, data.get("token")))
                if group is not None:
                    group.base = base
            return False
        info = data.get("reinjected")
        if isinstance(info, dict) and isinstance(info.get("data_seq"), int):
            pending = self._reinjected.setdefault((rec.node, data.get("token")), {})
            pending[info["data_seq"]] = (int(info.get("len") or 1), str(info.get("from_subflow", "")))
            if len(pending) > 4096:
                del pending[next(iter(pending))]
            return False
        if data.get("infinite_mapping") == "sent" and isinstance(data.get("subflow"), str):
            sf = self._subflow(rec.node, data.get("token"), data["subflow"])
            sf.infinite = (int(data["subflow_seq"]), int(data["data_seq"]))
        return False

    def _group(self, node: str, key: Any, *, mptcp: bool) -> SequenceGroup:
        group = self.groups.get((node, key))
        if group is None:
            label = f"{node} token {key:08x}" if mptcp and isinstance(key, int) else f"{node} {key}"
            group = self.groups[(node, key)] = SequenceGroup(node=node, label=label, mptcp=mptcp)
            if mptcp:
                group.base = self._idsn.get((node, key))
        return group

    def _subflow(self, node: str, token: Any, subflow: str) -> _Subflow:
        sf = self._subflows.get((node, subflow))
        if sf is None:
            group = self._group(node, token, mptcp=True)
            group.subflows.append(subflow)
            sf = self._subflows[(node, subflow)] = _Subflow(group=(node, token), index=len(group.subflows) - 1)
            sf.isn = self._isn.get((node, subflow))
        return sf

    def _mapping(self, rec: TraceRecord, data: dict[str, Any], opt: dict[str, Any], data_seq: int, start: int) -> None:
        subflow = data.get("subflow")
        length = int(opt.get("data_level_length") or 0)
        if not isinstance(subflow, str) or length <= 0:
            return  # an infinite mapping (length 0) comes with its own state record
        sf = self._subflow(rec.node, data.get("token"), subflow)
        if start in sf.mappings:
            return  # the mapping again, on the next segment it covers
        group = self.groups[sf.group]
        # a reinjection: data the sender said it sends again (a ``reinjected`` record), on another subflow
        reinjected = False
        pending = self._reinjected.get((rec.node, data.get("token")))
        if pending:
            for seq, (rlen, origin) in list(pending.items()):
                if seq <= data_seq < seq + rlen and origin != subflow:
                    reinjected = True
                    if data_seq + length >= seq + rlen:
                        del pending[seq]
                    break
        group.sent_end = max(group.sent_end, data_seq + length)
        sf.mappings[start] = (data_seq, length, reinjected)
        if not sf.keys or start > sf.keys[-1]:
            sf.keys.append(start)
        else:
            insort(sf.keys, start)
        if len(sf.keys) > MAX_MAPPINGS:
            for old in sf.keys[: MAX_MAPPINGS // 2]:
                del sf.mappings[old]
            del sf.keys[: MAX_MAPPINGS // 2]

    def _tcp_segment(self, rec: TraceRecord, data: dict[str, Any]) -> bool:
        conn = data.get("conn")
        if not isinstance(conn, str):
            return False
        flags = str(data.get("flags", ""))
        seq = int(data.get("seq") or 0)
        key = (rec.node, conn)
        if "S" in flags:
            self._isn[key] = seq
            sf = self._subflows.get(key)
            if sf is not None:
                sf.isn = seq
            return False
        length = int(data.get("len") or 0)
        if length <= 0:
            return False
        isn = self._isn.get(key)
        if isn is None:
            return False  # joined mid-stream (a replay seek): no origin for its numbers
        rel = (seq - isn) % SEQ_MODULUS
        sf = self._subflows.get(key)
        if sf is None:
            # a plain TCP connection: its own relative sequence numbers
            group = self._group(rec.node, conn, mptcp=False)
            if not group.subflows:
                group.subflows.append(conn)
                group.base = 1
            sent_end = self._tcp_sent.get(key)
            mark = MARK_RETRANSMITTED if sent_end is not None and rel < sent_end else 0
            self._tcp_sent[key] = max(sent_end or 0, rel + length)
            group.add(rec.t, 0, rel, length, mark)
            return True
        mark = MARK_RETRANSMITTED if sf.sent_end is not None and rel < sf.sent_end else 0
        sf.sent_end = max(sf.sent_end or 0, rel + length)
        dsn = None
        i = bisect_right(sf.keys, rel) - 1
        if i >= 0:
            start = sf.keys[i]
            data_seq, mlen, reinjected = sf.mappings[start]
            if rel < start + mlen:
                dsn = data_seq + (rel - start)
                if reinjected and not mark:
                    mark = MARK_REINJECTED
        if dsn is None and sf.infinite is not None and rel >= sf.infinite[0]:
            dsn = sf.infinite[1] + (rel - sf.infinite[0])
            group = self.groups[sf.group]
            group.sent_end = max(group.sent_end, dsn + length)
        if dsn is None:
            return False
        self.groups[sf.group].add(rec.t, sf.index, dsn, length, mark)
        return True

    def main_group(self) -> SequenceGroup | None:
        """The connection to draw: the MPTCP one that sent the most, else the TCP one."""
        if not self.groups:
            return None
        return max(self.groups.values(), key=lambda g: (g.mptcp, g.bytes_sent))

    def subflow_name(self, group: SequenceGroup, index: int) -> str:
        return self.names.subflow(group.subflows[index])


# --- drawing


def _time_axis(t0: float, t1: float, width: int, events: list[tuple[float, str, bool]]) -> Text:
    """``       └────0s──────2s──…`` with link events marked (✗ down, ↑ up)."""
    cells = ["─"] * width
    styles: list[str | None] = [None] * width
    span = max(t1 - t0, 1e-9)
    marked: set[int] = set()
    for when, _link, up in events:
        if t0 <= when <= t1:
            x = min(width - 1, int((when - t0) / span * width))
            cells[x] = "↑" if up else "✗"
            styles[x] = "bold green" if up else "bold red"
            marked.add(x)
    step = nice_ceiling(span / max(1, width // 10), TICK_STEPS)
    t = math.ceil(t0 / step) * step
    while t <= t1 + 1e-9:
        x = int((t - t0) / span * width)
        label = f"{t:g}s"
        if x + len(label) <= width and not marked & set(range(x - 1, x + len(label) + 1)):
            for k, ch in enumerate(label):
                cells[x + k] = ch
        t += step
    return _row(" " * (AXIS_WIDTH - 1) + "└", [(ch, style or "dim") for ch, style in zip(cells, styles, strict=True)])


def _row(label: str, cells: list[tuple[str, str | None]], *, label_style: str = "dim") -> Text:
    """One line: the axis label, then the cells, appended in runs of one style (far fewer spans)."""
    line = Text(label, style=label_style, no_wrap=True)
    run: list[str] = []
    style: str | None = None
    for ch, cell_style in cells:
        if cell_style != style and run:
            line.append("".join(run), style=style)
            run = []
        style = cell_style
        run.append(ch)
    if run:
        line.append("".join(run), style=style)
    return line


def _fit(parts: list[tuple[str, str]], width: int) -> Text:
    """Legend parts (text, style), as many as fit in ``width``."""
    text = Text(no_wrap=True, overflow="crop")
    for part, style in parts:
        if text.cell_len + len(part) > width:
            break
        text.append(part, style=style)
    return text


def draw_throughput(history: ThroughputHistory, width: int, height: int) -> tuple[Text, dict[str, Any]]:
    """The stacked per-path throughput picture, ``height`` lines of ``width`` cells.

    Returns the text and what it shows (``top_bps``, ``columns``: per column each path's
    rate, ``heights``: per column the stack's drawn height in eighths of a cell), for tests.
    """
    rows = max(1, height - 2)
    plot_w = max(4, width - AXIS_WIDTH)
    t0, t1 = history.span()
    paths = history.paths()
    _times, series = history.columns(t0, t1, plot_w)
    totals = [sum(series[p][i] for p in paths) for i in range(plot_w)]
    top = nice_ceiling(max(totals, default=0.0))
    current = history.current()
    legend: list[tuple[str, str]] = [("Throughput per path, stacked: ", "bold")] if width >= 100 else []
    for i, path in enumerate(paths):
        style = PATH_STYLES[i % len(PATH_STYLES)]
        legend.append((PATH_FILLS[i % len(PATH_FILLS)] + " ", style))
        legend.append((f"{history.label(path)} {short_rate(current.get(path, 0.0))}b/s  ", ""))
    if paths:
        legend.append((f"Σ {short_rate(sum(current.values()))}b/s  (1-s windows)", "dim"))
    else:
        legend = [("Throughput per path: no data received yet", "dim")]
    lines = [_fit(legend, width)]
    heights: list[int] = []
    grid: list[list[tuple[str, str | None]]] = [[(" ", None)] * plot_w for _ in range(rows)]
    for x in range(plot_w):
        # each path's band in eighths of a cell, stacked from the bottom in path order
        bounds = []
        acc = 0.0
        for p in paths:
            acc += series[p][x]
            bounds.append(acc / top * rows * 8)
        total8 = round(bounds[-1]) if bounds else 0
        heights.append(total8)
        for r in range(rows):
            lo, hi = r * 8, (r + 1) * 8
            if total8 <= lo:
                break
            # the path owning most of this cell
            best, best_share, prev = None, 0.0, 0.0
            for i, b in enumerate(bounds):
                share = max(0.0, min(b, hi) - max(prev, lo))
                if share > best_share:
                    best, best_share = i, share
                prev = b
            if best is None:
                continue
            style = PATH_STYLES[best % len(PATH_STYLES)]
            if total8 >= hi:
                # a whole cell: the path's own fill, except where a band ends inside it
                ch = PATH_FILLS[best % len(PATH_FILLS)]
            else:
                ch = EIGHTHS[total8 - lo]
            grid[rows - 1 - r][x] = (ch, style)
    for r in range(rows):
        if r == 0:
            label = f"{short_rate(top):>5} ┤"
        elif rows >= 4 and rows % 2 == 0 and r == rows // 2:
            label = f"{short_rate(top / 2):>5} ┤"  # the top of this row is half the scale
        else:
            label = "      │"
        lines.append(_row(label, grid[r]))
    lines.append(_time_axis(t0, t1, plot_w, history.link_events))
    text = Text("\n", no_wrap=True).join(lines[:height])
    return text, {"top_bps": top, "columns": series, "heights": heights, "rows": rows, "span": (t0, t1)}


def draw_sequence(
    history: SequenceHistory,
    width: int,
    height: int,
    span: tuple[float, float],
    link_events: list[tuple[float, str, bool]],
) -> tuple[Text, dict[str, Any]]:
    """The data-sequence picture of the main connection, on the time axis ``span``."""
    rows = max(1, height - 2)
    plot_w = max(4, width - AXIS_WIDTH)
    group = history.main_group()
    t0, t1 = span
    if group is None or not group.bins:
        lines = [Text("Data sequence per subflow: no data sent yet", style="dim"), *([Text("")] * (height - 2))]
        lines.append(_time_axis(t0, t1, plot_w, link_events))
        return Text("\n", no_wrap=True).join(lines[:height]), {"cells": {}, "group": None}
    origin = group.origin()
    hi_rel = max(entry[1] for entry in group.bins.values()) - origin
    unit = 1 << 20 if hi_rel >= 1 << 20 else (1 << 10 if hi_rel >= 1 << 10 else 1)
    top = nice_ceiling(max(hi_rel, 1) / unit) * unit  # 20 MiB, not 19.1M
    grid: list[list[tuple[str, str | None]]] = [[(" ", None)] * plot_w for _ in range(rows)]
    span_t = max(t1 - t0, 1e-9)
    cells: dict[tuple[int, int], int] = {}  # (x, row) -> mark, for tests

    def place(t: float, lo: int, hi: int) -> tuple[int, int, int]:
        x = min(plot_w - 1, max(0, int((t - t0) / span_t * plot_w)))
        r_lo = min(rows - 1, max(0, int((lo - origin) / top * rows)))
        r_hi = min(rows - 1, max(0, int((max(hi - 1, lo) - origin) / top * rows)))
        return x, r_lo, r_hi

    paths: list[str] = []
    sf_style: list[str] = []
    for sub in group.subflows:
        la = split_subflow(sub)[0]
        path = history.names.path(la)
        if path not in paths:
            paths.append(path)
        sf_style.append(PATH_STYLES[paths.index(path) % len(PATH_STYLES)])
    for (sf, q), (lo, hi, _mark) in group.bins.items():
        t = (q + 0.5) * group.quantum_s
        x, r_lo, r_hi = place(t, lo, hi)
        glyph = SUBFLOW_GLYPHS[sf % len(SUBFLOW_GLYPHS)]
        for r in range(r_lo, r_hi + 1):
            row = grid[rows - 1 - r]
            if row[x][0] in (RETRANSMITTED, REINJECTED):
                continue
            row[x] = (glyph, sf_style[sf])
            cells.setdefault((x, r), 0)
    for (sf, _q, mark), (t, dsn) in group._marks.items():
        x, r, _ = place(t, dsn, dsn + 1)
        ch = REINJECTED if mark & MARK_REINJECTED else RETRANSMITTED
        row = grid[rows - 1 - r]
        if row[x][0] == REINJECTED:
            continue
        row[x] = (ch, "bold reverse " + sf_style[sf])
        cells[(x, r)] = cells.get((x, r), 0) | mark
    def legend(wide: bool, title: bool = True) -> list[tuple[str, str]]:
        head = (f"Data sequence of {group.label}: " if wide else "DSN: ") if title else ""
        parts: list[tuple[str, str]] = [(head, "bold")]
        for i, sub in enumerate(group.subflows):
            parts.append((SUBFLOW_GLYPHS[i % len(SUBFLOW_GLYPHS)], sf_style[i]))
            name = history.names.subflow(sub)
            parts.append((name + "  " if wide else name.replace(" via ", "/").lstrip(":") + " ", ""))
        parts += [(RETRANSMITTED, "bold reverse"), (" retransmitted " if wide else " retx ", "")]
        parts += [(REINJECTED, "bold reverse"), (" reinjected" if wide else " reinj", "")]
        return parts

    for parts in (legend(True), legend(True, title=False), legend(False)):
        if sum(len(p) for p, _ in parts) <= width:
            break
    lines = [_fit(parts, width)]
    for r in range(rows):
        if r == 0:
            label = f"{short_bytes(top):>5} ┤"
        elif r == rows - 1:
            label = "    0 ┤"
        else:
            label = "      │"
        lines.append(_row(label, grid[r]))
    lines.append(_time_axis(t0, t1, plot_w, link_events))
    return Text("\n", no_wrap=True).join(lines[:height]), {"cells": cells, "group": group.label, "top": top}
