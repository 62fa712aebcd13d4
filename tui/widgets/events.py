"""Events: state changes worth reading in order (connections, links, middleboxes, transfers, problems)."""

from __future__ import annotations

from typing import Any

from lab.trace import RECORD_NAMES, TraceRecord
from tui.widgets.base import BAD_RECORD, TraceView
from tui.widgets.follow_log import FollowLog
from tui.widgets.records import summarize


class EventLog(FollowLog, TraceView):
    def __init__(self, **kw: Any) -> None:
        super().__init__(max_lines=5000, **kw)
        self.lines_written = 0
        self.problems: list[str] = []
        self.unknown: set[str] = set()

    def apply(self, records: list[TraceRecord]) -> None:
        lines = []
        for rec in records:
            try:
                line = self.describe(rec)
                if line is not None:
                    lines.append(f"{rec.t:9.4f} {rec.node:<4} {line}")
            except BAD_RECORD as exc:
                self.bad_record(rec, exc)
        if lines:
            self.lines_written += len(lines)
            self.write_lines(lines)

    def describe(self, rec: TraceRecord) -> str | None:
        data = rec.data
        if rec.name == "error":
            reason = str(data.get("reason", summarize(data)))
            self.problems.append(reason)
            return f"PROBLEM {rec.layer}: {reason}"
        if rec.name not in RECORD_NAMES:  # layers grow (docs/trace.md); record names do not
            kind = f"{rec.layer}/{rec.name}"
            if kind not in self.unknown:
                self.unknown.add(kind)
                return f"unknown record type {kind} (ignored from here on)"
            return None
        if rec.name != "state_updated":
            return None
        if rec.layer == "tcp":
            if "to" in data:
                return f"tcp {data.get('conn')} {data.get('from')} → {data['to']} ({data.get('input', '')})"
            if "timeout" in data:
                return f"tcp {data.get('conn')} timeout {data['timeout']} rto {data.get('rto_ms')} ms backoff {data.get('backoff')}"
            if "recovery" in data:
                return f"tcp {data.get('conn')} recovery {data['recovery']} cwnd {data.get('cwnd')}"
            if "terminated" in data:
                return (
                    f"tcp {data.get('conn')} terminated: {data['terminated']}{' (reset)' if data.get('reset') else ''}"
                )
            return None
        if rec.layer == "link":
            return f"link {data.get('link')} {'UP' if data.get('up') else 'DOWN'}"
        if rec.layer == "middlebox":
            if "installed" in data:
                return f"middlebox on: {summarize(data['installed'])}"
            if "removed" in data:
                return f"middlebox off: {summarize(data['removed'])}"
            return None
        if rec.layer == "app":
            return f"transfer {data.get('transfer')} {data.get('event')}: {data.get('bytes')} bytes" + (
                ""
                if data.get("event") != "received"
                else (" SHA-256 match" if data.get("sha256_match") else " SHA-256 MISMATCH")
            )
        return f"{rec.layer} {summarize(data)}"

    def reset(self) -> None:
        self.lines_written = 0
        self.problems = []
        self.unknown = set()
        self.clear()

    def state(self) -> Any:
        return {"lines": self.lines_written, "problems": list(self.problems)}
