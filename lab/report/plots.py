"""The report's figures, drawn with matplotlib as inline SVG (text as paths: no font is fetched).

Every function takes :class:`~lab.report.data.ReportData` and returns an ``<svg>``
element ready to be put in HTML, or ``None`` when the run has nothing to show.
"""

from __future__ import annotations

import io
import re
from itertools import count

import matplotlib

matplotlib.use("Agg")  # never a window, whatever the environment says

from matplotlib.figure import Figure

from lab.report.data import ReportData

_figure_ids = count(1)
_STRIP = [
    re.compile(r"<\?xml[^>]*\?>\s*"),
    re.compile(r"<!DOCTYPE[^>]*>\s*"),
    re.compile(r"<metadata>.*?</metadata>\s*", re.DOTALL),
    re.compile(r'\s+xmlns(:\w+)?="[^"]*"'),
]


def svg_of(fig: Figure) -> str:
    """The figure as an inline ``<svg>``: no XML prolog, DOCTYPE, metadata or namespace URLs
    (HTML5 knows SVG without them), ids unique within the page."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "path", "svg.hashsalt": f"tcplab-fig{next(_figure_ids)}"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    for pattern in _STRIP:
        text = pattern.sub("", text)
    return text.strip()


def _figure(height: float = 3.2) -> Figure:
    fig = Figure(figsize=(9.0, height))
    fig.set_layout_engine("constrained")
    return fig


def throughput(data: ReportData) -> str | None:
    """Per-path throughput over time, stacked on one scale (Mbit/s)."""
    if not data.paths:
        return None
    fig = _figure()
    ax = fig.add_subplot()
    times = [(i + 0.5) * data.bin_s for i in range(len(data.paths[0].bytes_per_bin))]
    rates = [[8 * b / data.bin_s / 1e6 for b in p.bytes_per_bin] for p in data.paths]
    ax.stackplot(times, rates, labels=[p.label for p in data.paths], step="mid", alpha=0.85)
    for ev in data.link_events:
        ax.axvline(ev["t"], color="black", linestyle="--", linewidth=0.8)
        ax.annotate(
            f"{ev.get('link')} {'up' if ev.get('up') else 'down'}",
            (ev["t"], 1.0),
            xycoords=("data", "axes fraction"),
            fontsize=8,
            rotation=90,
            va="top",
            ha="right",
        )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("Mbit/s received in order")
    ax.set_xlim(0, data.duration_s)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title("Throughput per path (stacked)")
    ax.grid(alpha=0.3)
    return svg_of(fig)


def sequence(data: ReportData) -> str | None:
    """Data sequence vs time per subflow (MPTCP data level), then sequence vs time per connection."""
    panels = [("MPTCP data sequence per subflow", data.data_seq, True)] if data.data_seq else []
    if data.subflow_seq:
        panels.append(("Subflow / TCP sequence per connection", data.subflow_seq, False))
    if not panels:
        return None
    fig = _figure(3.2 * len(panels))
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (title, series, data_level) in zip(axes, panels, strict=True):
        for s in series:
            (line,) = ax.plot(s.times, [v / 1e6 for v in s.seqs], drawstyle="steps-post", linewidth=1.2, label=s.label)
            if s.retrans_times:
                ax.scatter(
                    s.retrans_times,
                    [v / 1e6 for v in s.retrans_seqs],
                    marker="x",
                    s=14,
                    color=line.get_color(),
                    label=f"retransmitted on {s.label.split()[-1]}",
                )
        if data_level and data.reinjections:
            ax.scatter(
                [t for t, _d, _n in data.reinjections],
                [d / 1e6 for _t, d, _n in data.reinjections],
                marker="o",
                s=18,
                facecolors="none",
                edgecolors="red",
                label="reinjected",
            )
        for ev in data.link_events:
            ax.axvline(ev["t"], color="black", linestyle="--", linewidth=0.8)
        ax.set_title(title)
        ax.set_xlabel("time (s)")
        ax.set_ylabel("MB sent")
        ax.set_xlim(0, data.duration_s)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", fontsize=7)
    return svg_of(fig)


def congestion(data: ReportData) -> str | None:
    """cwnd and smoothed RTT per sending connection."""
    if not data.metrics:
        return None
    fig = _figure(5.0)
    cwnd, rtt = fig.subplots(2, 1, sharex=True)
    for m in data.metrics:
        cwnd.plot(m.times, m.cwnd, label=m.label, linewidth=1.2)
        rtt.plot(m.times, m.srtt_ms, label=m.label, linewidth=1.2)
    cwnd.set_ylabel("cwnd (KiB)")
    rtt.set_ylabel("smoothed RTT (ms)")
    rtt.set_xlabel("time (s)")
    cwnd.set_title("Congestion window and RTT per connection (sender side)")
    for ax in (cwnd, rtt):
        ax.grid(alpha=0.3)
        ax.set_xlim(0, data.duration_s)
        for ev in data.link_events:
            ax.axvline(ev["t"], color="black", linestyle="--", linewidth=0.8)
    cwnd.legend(loc="upper right", fontsize=7)
    return svg_of(fig)


def ladder(data: ReportData) -> str | None:
    """The ENO ladder: each ENO-carrying segment and tcpcrypt Init message between the two hosts."""
    if not data.ladder:
        return None
    conns = sorted({a.conn for a in data.ladder})
    fig = _figure(max(3.0, 0.45 * len(data.ladder) + 1.0))
    axes = fig.subplots(1, len(conns), squeeze=False)[0]
    for ax, conn in zip(axes, conns, strict=True):
        arrows = [a for a in data.ladder if a.conn == conn]
        hosts = sorted({a.sender for a in arrows} | {a.receiver for a in arrows if a.receiver != "?"})
        x = {h: i for i, h in enumerate(hosts)}
        t_max = max((a.received_at or a.sent_at) for a in arrows)
        t_min = min(a.sent_at for a in arrows)
        for h, i in x.items():
            ax.axvline(i, color="gray", linewidth=1)
            ax.text(i, t_min - 0.06 * (t_max - t_min + 1e-3), h, ha="center", va="bottom", fontsize=9, weight="bold")
        for n, a in enumerate(arrows):
            x0 = x[a.sender]
            other = [h for h in hosts if h != a.sender]
            x1 = x[a.receiver] if a.receiver in x else (x[other[0]] if other else x0 + 1)
            if a.received_at is None:
                x1 = x0 + 0.6 * (x1 - x0)
            t1 = (
                a.received_at
                if a.received_at is not None
                else a.sent_at + 0.3 * (t_max - t_min + 1e-3) / max(len(arrows), 1)
            )
            ax.annotate(
                "",
                xy=(x1, t1),
                xytext=(x0, a.sent_at),
                arrowprops={"arrowstyle": "->", "color": "tab:red" if a.received_at is None else "tab:blue"},
            )
            label = a.label + ("  [not received with ENO]" if a.received_at is None else "")
            f = (0.3, 0.5, 0.7)[n % 3]  # arrows sent together get their labels at different heights
            ax.text(
                x0 + f * (x1 - x0),
                a.sent_at + f * (t1 - a.sent_at),
                label,
                fontsize=7,
                ha="center",
                va="bottom",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            )
        ax.set_ylim(t_max + 0.05 * (t_max - t_min + 1e-3), t_min - 0.1 * (t_max - t_min + 1e-3))
        ax.set_xlim(-0.6, max(len(hosts) - 1, 1) + 0.6)
        ax.set_xticks([])
        ax.set_ylabel("time (s)")
        ax.set_title(conn, fontsize=8)
    return svg_of(fig)


_ROWS = {"udp": "UDP", "tcp": "TCP"}


def iketcp_timeline(data: ReportData) -> str | None:
    """IKE attempts per transport and port, the UDP timeout, the TCP connect, the prefix, framed messages."""
    events = [e for e in data.ike_events if e.get("node") and e.get("layer") in ("ike", "iketcp", "middlebox")]
    if not any(e["layer"] != "middlebox" for e in events):
        return None
    rows: dict[str, int] = {}

    def row(label: str) -> int:
        if label not in rows:
            rows[label] = len(rows)
        return rows[label]

    points: list[tuple[float, int, str, str]] = []
    for e in events:
        who = e["node"]
        if e["layer"] == "ike" and e["name"] in ("segment_sent", "segment_received"):
            transport = _ROWS.get(str(e.get("transport")), str(e.get("transport")))
            r = row(f"{who} IKE {transport} {e.get('port', '')}")
            marker = "x" if e.get("retransmission") else (">" if e["name"] == "segment_sent" else "o")
            points.append((e["t"], r, marker, ""))
        elif e["layer"] == "iketcp" and e["name"] == "segment_sent":
            r = row(f"{who} IKETCP frames")
            points.append(
                (
                    e["t"],
                    r,
                    "s" if e.get("kind") == "prefix" else ("|" if e.get("kind") == "esp" else "D"),
                    "prefix" if e.get("kind") == "prefix" else "",
                )
            )
        elif e["layer"] == "middlebox":  # an IP fragment dropped on the way
            r = row(f"{who} drops IP fragments")
            points.append((e["t"], r, "x", "fragment dropped"))
        elif e["layer"] == "ike" and e["name"] == "state_updated" and e.get("event") == "ip_fragments":
            r = row(f"{who} message size")
            points.append((e["t"], r, "*", f"{e.get('exchange')} {e.get('length')} B: IP fragments"))
        elif e["layer"] == "ike" and e["name"] == "state_updated" and e.get("event") == "reassembled":
            r = row(f"{who} message size")
            points.append((e["t"], r, "P", f"{e.get('exchange')} from {e.get('fragments')} IKE fragments"))
        elif e["layer"] == "ike" and e["name"] == "state_updated" and e.get("exchange") == "IKE_INTERMEDIATE":
            if e.get("event") == "sent":
                r = row(f"{who} IKE_INTERMEDIATE")
                points.append((e["t"], r, "d", f"key share {e.get('ke_len')} B (transform {e.get('additional_ke')})"))
        elif (
            e["layer"] == "ike"
            and e["name"] == "state_updated"
            and e.get("event") in ("started", "timeout", "unanswered", "connect")
        ):
            r = row(f"{who} attempts")
            points.append((e["t"], r, "v", f"{e.get('event')} {e.get('transport', '')}:{e.get('port', '')}".strip(":")))
        elif e["layer"] == "iketcp" and e["name"] == "state_updated" and e.get("event"):
            r = row(f"{who} TCP connection")
            points.append((e["t"], r, "^", str(e.get("event"))))
        elif e["layer"] == "ike" and e["name"] == "state_updated" and e.get("to"):
            r = row(f"{who} IKE SA state")
            points.append((e["t"], r, ".", str(e.get("to"))))
    if not points:
        return None
    fig = _figure(0.45 * len(rows) + 1.6)
    ax = fig.add_subplot()
    for marker in sorted({p[2] for p in points}):
        sel = [p for p in points if p[2] == marker]
        ax.scatter([p[0] for p in sel], [p[1] for p in sel], marker=marker, s=28)
    last_label: dict[int, float] = {}
    span = max(p[0] for p in points) or 1.0
    for t, r, _m, label in points:
        if label and t - last_label.get(r, -1e9) > span / 40:
            ax.annotate(label, (t, r), textcoords="offset points", xytext=(2, 5), fontsize=7, rotation=20)
            last_label[r] = t
    ax.set_yticks(range(len(rows)), list(rows))
    ax.set_ylim(len(rows) - 0.5, -0.7)
    ax.set_xlabel("time (s)")
    ax.set_title(
        "IKE attempts and IKE/ESP over TCP (> sent, o received, x retransmitted or dropped, ◆ IKE frame, | ESP frame)"
    )
    ax.grid(alpha=0.3, axis="x")
    return svg_of(fig)
