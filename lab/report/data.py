"""What a run report shows, read from a bundle: series and events, no drawing.

Everything comes from the bundle's ``trace.jsonl``, ``summary.json`` and
``topology.json`` (the same files whatever the backend). Throughput per path is
counted at the receiver: each ACK it sends advances the acknowledgment by the
bytes that arrived in order on that connection, so a path's curve integrates to
what crossed it once (retransmitted copies are not counted twice).
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.errors import ConfigError
from lab.trace import SCHEMA_VERSION

SEQ_MOD = 1 << 32
MAX_SEQ_POINTS = 4000  # per series in the sequence plot (a printable SVG stays small)
MAX_LADDER_ARROWS = 16  # per connection in the ENO ladder
_SKIP = ('"layer":"tcp","name":"segment_received"', '"layer":"mptcp","name":"segment_received"')


@dataclass
class Path_:
    """One path's throughput: bytes received in order per bin."""

    label: str
    bytes_per_bin: list[int]


@dataclass
class SeqSeries:
    """Sequence numbers sent over time on one connection (subflow-level) or subflow (data-level)."""

    label: str
    times: list[float] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    retrans_times: list[float] = field(default_factory=list)
    retrans_seqs: list[int] = field(default_factory=list)


@dataclass
class ConnMetrics:
    label: str
    times: list[float] = field(default_factory=list)
    cwnd: list[float] = field(default_factory=list)
    srtt_ms: list[float] = field(default_factory=list)


@dataclass
class LadderArrow:
    conn: str
    sender: str
    receiver: str
    sent_at: float
    received_at: float | None
    label: str


@dataclass
class ReportData:
    run_dir: Path
    summary: dict[str, Any]
    topology: dict[str, Any]
    duration_s: float
    bin_s: float
    paths: list[Path_]
    subflow_seq: list[SeqSeries]
    data_seq: list[SeqSeries]
    reinjections: list[tuple[float, int, int]]  # (t, relative data_seq, len)
    metrics: list[ConnMetrics]
    ladder: list[LadderArrow]
    eno_states: list[dict[str, Any]]
    ike_events: list[dict[str, Any]]
    link_events: list[dict[str, Any]]
    records: list[Any]  # what moments are detected on (no metrics, no per-segment tcp/mptcp receptions)
    damaged_lines: list[int] = field(default_factory=list)  # trace lines that are not JSON, skipped

    @property
    def delivered_bytes(self) -> int:
        return sum(int(t.get("bytes_received") or 0) for t in self.summary.get("transfers", []))


def _number(value: Any, *, as_float: bool = False) -> Any:
    """``value`` as an int (a float with ``as_float``), or None for what is not a number (a field an
    exercise hid as ``"?"``)."""
    try:
        return float(value) if as_float else int(value)
    except (TypeError, ValueError):
        return None


def _conn_parts(conn: str) -> tuple[str, str]:
    local, _, remote = conn.partition("->")
    return local, remote


def _addr(endpoint: str) -> str:
    host, _, _port = endpoint.rpartition(":")
    return host.strip("[]")


def _iface_by_ip(topology: dict[str, Any]) -> dict[str, str]:
    out = {}
    for iface in topology.get("interfaces", []):
        for key in ("ipv4", "ipv6"):
            if iface.get(key):
                out[iface[key]] = iface["name"]
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON ({exc})") from None
    return value if isinstance(value, dict) else {}


def _thin(times: list[float], values: list[int], limit: int) -> tuple[list[float], list[int]]:
    if len(times) <= limit:
        return times, values
    step = len(times) / limit
    idx = sorted({int(i * step) for i in range(limit)} | {len(times) - 1})
    return [times[i] for i in idx], [values[i] for i in idx]


def load(run_dir: Path, *, min_bin_s: float = 0.05, max_bins: int = 150) -> ReportData:
    """Read a bundle; trace lines that are not JSON are skipped and listed in ``damaged_lines``.
    Raises ConfigError when ``run_dir`` holds no trace."""
    run_dir = Path(run_dir)
    trace = run_dir / "trace.jsonl"
    if not trace.is_file():
        raise ConfigError(f"no run bundle at {run_dir} (no trace.jsonl); 'tcplab run' writes one")
    summary = _read_json(run_dir / "summary.json")
    topology = _read_json(run_dir / "topology.json")
    iface_of = _iface_by_ip(topology)

    from lab.trace import TraceRecord

    acks: list[tuple[float, str, str, int]] = []  # (t, node, conn, ack) sent by a receiver
    sent: dict[tuple[str, str], SeqSeries] = {}
    isn: dict[tuple[str, str], int] = {}
    highest: dict[tuple[str, str], int] = {}
    data_series: dict[str, SeqSeries] = {}
    data_high: dict[str, int] = {}
    data_base: dict[str, int] = {}  # per sending node: its first data sequence number (its IDSN + 1)
    reinjections_raw: list[tuple[float, str, int, int]] = []
    metrics: dict[tuple[str, str], ConnMetrics] = {}
    eno_sent: list[dict[str, Any]] = []
    eno_received: list[dict[str, Any]] = []
    eno_states: list[dict[str, Any]] = []
    ike_events: list[dict[str, Any]] = []
    link_events: list[dict[str, Any]] = []
    records: list[Any] = []
    damaged: list[int] = []
    end = 0.0
    with open(trace, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            if '"name":"segment_received"' in line and (_SKIP[0] in line or _SKIP[1] in line):
                continue
            try:
                raw = json.loads(line)
            except ValueError:
                damaged.append(lineno)  # a run killed mid-write leaves half a line: report the rest
                continue
            if not isinstance(raw, dict) or raw.get("v") != SCHEMA_VERSION:
                continue
            t = float(raw.get("t", 0.0))
            end = max(end, t)
            node, layer, name = raw.get("node", ""), raw.get("layer", ""), raw.get("name", "")
            data = raw.get("data") or {}
            if name != "metrics_updated" and not (name == "segment_sent" and layer in ("tcp", "mptcp")):
                # what moments are read from (no moment hinges on a per-segment tcp/mptcp record)
                try:
                    records.append(TraceRecord.from_dict(raw))
                except (ValueError, TypeError, KeyError):
                    pass
            if layer == "tcp" and name == "segment_sent":
                conn = data.get("conn", "")
                key = (node, conn)
                flags = data.get("flags", "")
                seq = int(data.get("seq", 0))
                if "S" in flags:
                    isn[key] = seq
                ack = _number(data.get("ack", 0))
                if "A" in flags and ack is not None:  # a trace handed out with fields hidden ("?") has none
                    acks.append((t, node, conn, ack))
                length = int(data.get("len", 0))
                if length > 0 and key in isn:
                    rel = (seq - isn[key] - 1) % SEQ_MOD
                    series = sent.get(key)
                    if series is None:
                        series = sent[key] = SeqSeries(label=f"{node} {conn}")
                    if rel + length <= highest.get(key, 0):
                        series.retrans_times.append(t)
                        series.retrans_seqs.append(rel)
                    else:
                        series.times.append(t)
                        series.seqs.append(rel + length)
                        highest[key] = rel + length
            elif layer == "mptcp" and name == "segment_sent":
                for opt in data.get("mptcp", []):
                    if opt.get("subtype") == "DSS" and opt.get("data_seq") is not None and opt.get("data_level_length"):
                        dsn = int(opt["data_seq"])
                        rel = dsn - data_base.setdefault(node, dsn)
                        sub = data.get("subflow", "")
                        series = data_series.get(sub)
                        if series is None:
                            series = data_series[sub] = SeqSeries(label=f"{node} {sub}")
                        end_seq = rel + int(opt["data_level_length"])
                        if end_seq <= data_high.get(sub, 0):
                            series.retrans_times.append(t)
                            series.retrans_seqs.append(rel)
                        else:
                            series.times.append(t)
                            series.seqs.append(end_seq)
                            data_high[sub] = end_seq
            elif layer == "mptcp" and name == "state_updated" and isinstance(data.get("reinjected"), dict):
                r = data["reinjected"]
                reinjections_raw.append((t, node, int(r.get("data_seq", 0)), int(r.get("len", 0))))
            elif layer == "tcp" and name == "metrics_updated":
                if (_number(data.get("bytes_sent") or 0) or 0) > 0:
                    key = (node, data.get("conn", ""))
                    m = metrics.get(key)
                    if m is None:
                        m = metrics[key] = ConnMetrics(label=f"{node} {key[1]}")
                    m.times.append(t)
                    m.cwnd.append((_number(data.get("cwnd") or 0, as_float=True) or 0.0) / 1024)
                    m.srtt_ms.append(_number(data.get("srtt_ms") or 0, as_float=True) or 0.0)
            elif layer == "eno" and name in ("segment_sent", "segment_received"):
                (eno_sent if name == "segment_sent" else eno_received).append({"t": t, "node": node, **data})
            elif layer in ("eno", "tcpcrypt") and name in ("state_updated", "key_updated"):
                eno_states.append({"t": t, "node": node, "layer": layer, "name": name, **data})
            elif layer == "tcpcrypt" and name == "segment_sent" and data.get("message"):
                eno_sent.append({"t": t, "node": node, "segment": data["message"], "tcpcrypt": True, **data})
            elif layer == "tcpcrypt" and name == "segment_received" and data.get("message"):
                eno_received.append({"t": t, "node": node, "segment": data["message"], "tcpcrypt": True, **data})
            elif (layer in ("ike", "iketcp") and name != "metrics_updated") or (
                layer == "middlebox" and name == "segment_dropped" and data.get("reason") == "IP fragment dropped"
            ):
                ike_events.append({"t": t, "node": node, "layer": layer, "name": name, **data})
            elif layer == "link" and name == "state_updated" and "backend" not in data:
                link_events.append({"t": t, **data})

    duration = max(end, float(summary.get("sim_time_s") or summary.get("run_time_s") or 0.0), 1e-3)
    bin_s = max(duration / max_bins, min_bin_s)
    bins = int(duration / bin_s) + 1
    paths = _throughput(acks, iface_of, bin_s, bins)
    reinjections = [(t, dsn - data_base.get(node, dsn), n) for t, node, dsn, n in reinjections_raw]
    subflow_seq = [s for s in sent.values() if s.times]
    for s in (*subflow_seq, *data_series.values()):
        s.times, s.seqs = _thin(s.times, s.seqs, MAX_SEQ_POINTS)
    return ReportData(
        run_dir=run_dir,
        summary=summary,
        topology=topology,
        duration_s=duration,
        bin_s=bin_s,
        paths=paths,
        subflow_seq=subflow_seq,
        data_seq=[s for s in data_series.values() if s.times],
        reinjections=reinjections,
        metrics=list(metrics.values()),
        ladder=_ladder(eno_sent, eno_received),
        eno_states=eno_states,
        ike_events=ike_events,
        link_events=link_events,
        records=records,
        damaged_lines=damaged,
    )


def _throughput(
    acks: list[tuple[float, str, str, int]], iface_of: dict[str, str], bin_s: float, bins: int
) -> list[Path_]:
    """Bytes acknowledged in order per path and bin (a path: sender's interface -> receiver's)."""
    last: dict[tuple[str, str], int] = {}
    per_path: dict[str, list[int]] = defaultdict(lambda: [0] * bins)
    for t, node, conn, ack in acks:
        key = (node, conn)
        prev = last.get(key)
        last[key] = ack if prev is None or (ack - prev) % SEQ_MOD < 1 << 31 else prev
        if prev is None:
            continue
        delta = (ack - prev) % SEQ_MOD
        if delta == 0 or delta >= 1 << 31:
            continue
        local, remote = _conn_parts(conn)
        src = iface_of.get(_addr(remote), _addr(remote))
        dst = iface_of.get(_addr(local), _addr(local))
        label = f"{src} → {dst}"
        per_path[label][min(int(t / bin_s), bins - 1)] += delta
    return [Path_(label, counts) for label, counts in sorted(per_path.items()) if sum(counts) > 0]


def _ladder(sent: list[dict[str, Any]], received: list[dict[str, Any]]) -> list[LadderArrow]:
    """Each ENO-carrying segment (and tcpcrypt Init message) sent, with when the other end read it."""
    used: set[int] = set()
    out: list[LadderArrow] = []
    per_conn: dict[str, int] = defaultdict(int)
    for s in sent:
        conn = s.get("conn", "")
        local, remote = _conn_parts(conn)
        conn_key = " ".join(sorted((local, remote)))
        if per_conn[conn_key] >= MAX_LADDER_ARROWS:
            continue
        match = None
        for i, r in enumerate(received):
            if i in used or r["t"] < s["t"] or r.get("segment") != s.get("segment"):
                continue
            if _conn_parts(r.get("conn", "")) == (remote, local) and r.get("option") == s.get("option"):
                match = i
                break
        if match is None and s.get("form") == "non-syn":
            continue  # a receiver records the non-SYN ENO it needs (A's first ACK), not every later copy
        per_conn[conn_key] += 1
        receiver = received[match]["node"] if match is not None else "?"
        if match is not None:
            used.add(match)
        out.append(
            LadderArrow(
                conn=conn_key,
                sender=s["node"],
                receiver=receiver,
                sent_at=s["t"],
                received_at=received[match]["t"] if match is not None else None,
                label=_ladder_label(s),
            )
        )
    return out


def _ladder_label(s: dict[str, Any]) -> str:
    if s.get("tcpcrypt"):
        return f"{s.get('segment')} ({s.get('length', '?')} bytes, {s.get('tep', '')})"
    if s.get("form") == "syn":
        teps = ",".join(s.get("teps", [])) or "none"
        kind = "253/0x454E" if s.get("encoding") == "experimental" else "69"
        return f"{s.get('segment')} ENO {kind} b={int(bool(s.get('b')))} TEPs {teps}"
    return f"{s.get('segment')} ENO (non-SYN)"
