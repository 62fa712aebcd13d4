"""A generic timeline of one or more layers' records (for layers without a dedicated drawing yet)."""

from __future__ import annotations

import json
from typing import Any

from textual.widgets import DataTable

from lab.trace import TraceRecord

MAX_ROWS = 2000


def summarize(data: dict[str, Any], width: int = 90) -> str:
    parts = []
    for key, value in data.items():
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
        parts.append(f"{key}={text}")
    out = " ".join(parts)
    return out if len(out) <= width else out[: width - 1] + "…"


class RecordTable(DataTable):
    """Rows of ``t node layer name data`` for records whose layer is in ``layers``."""

    def __init__(self, layers: frozenset[str], **kw: Any) -> None:
        super().__init__(cursor_type="row", **kw)
        self.record_layers = layers
        self.count = 0

    def on_mount(self) -> None:
        for key, label, width in (
            ("t", "Time s", 9),
            ("node", "Node", 5),
            ("layer", "Layer", 8),
            ("name", "Record", 16),
            ("data", "Fields", 90),
        ):
            self.add_column(label, key=key, width=width)

    def wanted(self, rec: TraceRecord) -> bool:
        return rec.layer in self.record_layers

    def add_records(self, records: list[TraceRecord]) -> None:
        rows = [(f"{r.t:9.4f}", r.node, r.layer, r.name, summarize(r.data)) for r in records]
        if not rows:
            return
        self.count += len(rows)
        if self.row_count + len(rows) > MAX_ROWS:
            self.clear()
            rows = rows[-MAX_ROWS:]
        self.add_rows(rows)

    def reset(self) -> None:
        self.count = 0
        self.clear()
