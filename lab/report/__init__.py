"""``tcplab report``: one self-contained HTML file per run bundle, to take home.

The page holds the topology and its link settings, the scenario's moments and
the run's verdicts, per-path throughput (stacked, one scale), sequence numbers
over time (MPTCP data level per subflow with reinjections, and per connection
with retransmissions), cwnd and RTT, the ENO ladder with TEPs, roles and session
IDs, the IKE/IKETCP timeline, and each transfer with its digests. Plots are
inline SVG drawn by matplotlib; there is no script, font or image fetched from
anywhere, so the file reads offline and prints.
"""

from __future__ import annotations

import html
import time
from pathlib import Path
from typing import Any

from lab.report import plots
from lab.report.data import ReportData, load

__all__ = ["build_html", "load", "write_report"]

CSS = """
body { font-family: sans-serif; max-width: 1000px; margin: 1.5em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ccc; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
td, th { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; } .ok { color: #1a7f37; font-weight: bold; } .bad { color: #c62828; font-weight: bold; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; } code, .mono { font-family: monospace; font-size: 0.85em; }
figure { margin: 0.8em 0; } svg { max-width: 100%; height: auto; }
@media print { h2 { page-break-before: auto; } figure { page-break-inside: avoid; } }
"""


def write_report(run_dir: Path, out: Path | None = None) -> Path:
    """Write the report of the bundle at ``run_dir`` (default ``RUN_DIR.html`` beside it: a file added
    inside would make ``tcplab verify`` find the bundle changed); returns its path. Raises ConfigError
    for a directory without a trace, OSError when the file cannot be written."""
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else default_out(run_dir)
    page = build_html(load(run_dir))
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out)
    return out


def default_out(run_dir: Path) -> Path:
    """Where a bundle's report goes unless told: ``runs/NAME.html`` for ``runs/NAME``."""
    run_dir = Path(run_dir).resolve()
    return run_dir.with_name(run_dir.name + ".html")


def _e(value: Any) -> str:
    return html.escape(str(value))


def _verdict(ok: Any) -> str:
    if ok is None:  # a bare trace (an exercise's trace.jsonl): nothing says how the run ended
        return "<em>no verdict (no summary.json)</em>"
    return '<span class="ok">OK</span>' if ok else '<span class="bad">FAILED</span>'


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _figure(svg: str | None, caption: str, empty: str) -> str:
    if svg is None:
        return f"<p><em>{_e(empty)}</em></p>"
    return f"<figure>{svg}<figcaption>{_e(caption)}</figcaption></figure>"


def _scenario(name: str) -> Any:
    from lab.errors import LabError
    from lab.scenario import get_scenario

    try:
        return get_scenario(name)
    except (LabError, KeyError, ValueError):
        return None


def _topology(data: ReportData) -> str:
    topo = data.topology
    if not topo:
        return "<p><em>The bundle has no topology.json.</em></p>"
    parts = [f"<p>Topology <b>{_e(topo.get('name', '?'))}</b> {_e(topo.get('params') or '')}</p>"]
    if topo.get("diagram"):
        parts.append(f"<pre>{_e(topo['diagram'])}</pre>")
    rows = []
    for link in topo.get("links", []):
        bw = "unshaped" if link.get("bw_mbps") is None else f"{link['bw_mbps']:g} Mbit/s"
        rows.append(
            [
                _e(link.get("name")),
                _e(f"{link.get('a')} – {link.get('b')}"),
                _e(bw),
                _e(f"{link.get('delay_ms', 0):g} ms"),
                _e(f"{link.get('loss_pct', 0):g} %"),
                _e(link.get("queue_packets", "")),
                _e(link.get("mtu_bytes", "")),
            ]
        )
    parts.append(_table(["link", "between", "rate", "one-way delay", "loss", "queue (packets)", "MTU"], rows))
    rows = [
        [_e(i.get("name")), _e(i.get("node")), _e(i.get("ipv4")), _e(i.get("ipv6")), _e(i.get("link"))]
        for i in topo.get("interfaces", [])
    ]
    parts.append(_table(["interface", "node", "IPv4", "IPv6", "link"], rows))
    return "".join(parts)


def _moments(data: ReportData, scenario: Any) -> str:
    from lab.scenario.moments import detect_moments

    summary = data.summary
    parts = [f"<p>Run verdict: {_verdict(summary.get('ok'))}"]
    if summary.get("timed_out"):
        parts.append(' <span class="bad">(timed out)</span>')
    if summary.get("interrupted"):
        parts.append(' <span class="bad">(interrupted)</span>')
    parts.append("</p>")
    if scenario is not None and getattr(scenario, "description", ""):
        parts.append(f"<p>{_e(scenario.description)}</p>")
    specs = tuple(getattr(scenario, "moments", ()) or ())
    if specs:
        found = detect_moments(specs, data.records)
        seen = {m.key for m in found}
        rows = [
            [_e(f"{m.t:.3f} s"), _e(m.node), _e(m.caption), _e(m.rfc), '<span class="ok">seen</span>'] for m in found
        ]
        rows += [
            ["–", "–", _e(s.key), _e(s.rfc), '<span class="bad">not seen</span>'] for s in specs if s.key not in seen
        ]
        parts.append(_table(["time", "node", "moment", "RFC", "verdict"], rows))
    else:
        parts.append("<p><em>The scenario declares no moments (or is not known here).</em></p>")
    errors = summary.get("errors") or []
    if errors:
        parts.append("<p>Errors:</p><ul>" + "".join(f"<li>{_e(e)}</li>" for e in errors) + "</ul>")
    return "".join(parts)


def _transfers(data: ReportData) -> str:
    summary = data.summary
    rows = []
    for t in summary.get("transfers", []):
        goodput = "–" if t.get("goodput_mbps") is None else f"{t['goodput_mbps']:.2f} Mbit/s"
        rows.append(
            [
                _e(t.get("name")),
                _e(f"{t.get('bytes_received')}/{t.get('bytes_expected')}"),
                _e(goodput),
                _e(f"{t.get('duration_s', 0) or 0:.3f} s"),
                f'<span class="mono">{_e(t.get("sha256_expected", ""))}<br>{_e(t.get("sha256_received", ""))}</span>',
                _verdict(t.get("sha256_match")),
                _e(t.get("error") or ""),
            ]
        )
    parts = [_table(["transfer", "bytes", "goodput", "duration", "SHA-256 sent / received", "match", "error"], rows)]
    digests = summary.get("digests") or {}
    if digests:
        rows = [[_e(name), f'<span class="mono">{_e(d)}</span>'] for name, d in sorted(digests.items())]
        parts.append("<p>The bundle's files (<code>tcplab verify</code> checks them):</p>")
        parts.append(_table(["file", "SHA-256"], rows))
    return "".join(parts)


def _eno_table(data: ReportData) -> str:
    rows = []
    for s in data.eno_states:
        if s["name"] == "key_updated" and s.get("session_id"):
            rows.append(
                [
                    _e(f"{s['t']:.4f} s"),
                    _e(s["node"]),
                    _e(s.get("conn", "")),
                    _e(s.get("role", "")),
                    _e(s.get("tep", "")),
                    f'<span class="mono">{_e(s["session_id"])}</span>',
                ]
            )
    outcomes = [
        [
            _e(f"{s['t']:.4f} s"),
            _e(s["node"]),
            _e(s.get("conn", "")),
            _e(s.get("to", "")),
            _e(s.get("input", "")),
            _e(s.get("why", "") or s.get("reason", "")),
        ]
        for s in data.eno_states
        if s["layer"] == "eno" and s["name"] == "state_updated" and s.get("to") not in (None, "syn-sent", "listen")
    ]
    parts = []
    if outcomes:
        parts.append(_table(["time", "node", "connection", "ENO state", "because", "why"], outcomes))
    if rows:
        parts.append("<p>Session IDs (the same at both ends: nobody in between holds the keys):</p>")
        parts.append(_table(["time", "node", "connection", "role", "TEP", "session ID"], rows))
    return "".join(parts)


def build_html(data: ReportData) -> str:
    """The whole page for ``data``."""
    summary = data.summary
    name = summary.get("scenario") or data.topology.get("name") or data.run_dir.name
    scenario = _scenario(str(name)) if summary.get("scenario") else None
    backend = summary.get("backend", "?")
    sections = [
        ("Topology and link settings", _topology(data)),
        ("Moments and outcomes", _moments(data, scenario)),
        (
            "Throughput per path",
            _figure(
                plots.throughput(data),
                "Bytes each receiver acknowledged in order, per path (sender's interface → receiver's), "
                f"in {data.bin_s * 1000:.1f} ms bins, stacked on one scale; dashed lines: link events.",
                "No TCP data crossed the network in this run.",
            ),
        ),
        (
            "Sequence numbers over time",
            _figure(
                plots.sequence(data),
                "Highest sequence number sent over time; x: retransmitted (subflow level), red circles: data "
                "reinjected on another subflow (MPTCP data level).",
                "No data was sent.",
            ),
        ),
        (
            "Congestion window and RTT",
            _figure(plots.congestion(data), "Sampled every 0.1 s at the sender.", "No sender metrics in this trace."),
        ),
        (
            "TCP-ENO ladder",
            _figure(
                plots.ladder(data),
                "Segments that carried an ENO option, and tcpcrypt's Init1/Init2, from sender to receiver; red: it "
                "never arrived with ENO (stripped or lost).",
                "No TCP-ENO in this run.",
            )
            + _eno_table(data),
        ),
        (
            "IKE and IKETCP timeline",
            _figure(plots.iketcp_timeline(data), "Initiator and responder events over time.", "No IKE in this run."),
        ),
        ("Transfers and digests", _transfers(data)),
    ]
    created = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    damaged = ""
    if data.damaged_lines:
        lines = ", ".join(str(n) for n in data.damaged_lines[:10]) + (" ..." if len(data.damaged_lines) > 10 else "")
        damaged = (
            f'<p class="bad">The trace is damaged: {len(data.damaged_lines)} line(s) are not JSON and were '
            f"skipped (line {_e(lines)}). <code>tcplab verify</code> says more.</p>"
        )
    toc = "".join(f'<li><a href="#s{i}">{_e(title)}</a></li>' for i, (title, _b) in enumerate(sections))
    body = "".join(f'<h2 id="s{i}">{_e(title)}</h2>{content}' for i, (title, content) in enumerate(sections))
    clock = (
        f"{summary['sim_time_s']:.3f} s virtual"
        if "sim_time_s" in summary
        else (f"{summary.get('run_time_s', 0):.3f} s" if summary.get("run_time_s") is not None else "")
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>tcplab report: {_e(name)}</title><style>{CSS}</style></head><body>"
        f"<h1>tcplab run report: {_e(name)}</h1>"
        f"<p>Seed {_e(summary.get('seed', '?'))}, backend {_e(backend)}, {_e(clock)}; bundle "
        f"<code>{_e(data.run_dir)}</code>; written {_e(created)}. {_verdict(summary.get('ok'))}</p>"
        f"{damaged}<ul>{toc}</ul>{body}</body></html>\n"
    )
