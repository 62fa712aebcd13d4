"""Trace records: the one contract the TUI, the graders and replay read (docs/trace.md).

A record is ``{"v": 1, "t": seconds, "node": "h1", "layer": "tcp", "name":
"segment_sent", "data": {...}}``. Endpoints get a Tracer and call
``record(now, layer, name, data)``; ``tracer.enabled`` lets a hot path skip
building records nobody reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

SCHEMA_VERSION = 1
RECORD_NAMES = frozenset(
    {"segment_sent", "segment_received", "segment_dropped", "state_updated", "metrics_updated", "key_updated", "error"}
)


@dataclass(frozen=True, slots=True)
class TraceRecord:
    t: float
    node: str
    layer: str
    name: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": SCHEMA_VERSION,
                "t": round(self.t, 9),
                "node": self.node,
                "layer": self.layer,
                "name": self.name,
                "data": self.data,
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_dict(cls, obj: dict[str, Any]) -> TraceRecord:
        """Raises ValueError on a record of another schema version or with missing keys."""
        if obj.get("v") != SCHEMA_VERSION:
            raise ValueError(f"trace schema version {obj.get('v')!r}, expected {SCHEMA_VERSION}")
        try:
            return cls(
                float(obj["t"]), str(obj["node"]), str(obj["layer"]), str(obj["name"]), dict(obj.get("data") or {})
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed trace record: {exc}") from None


class Tracer:
    """Receives records. Subclasses decide where they go."""

    enabled = True

    def record(self, now: float, layer: str, name: str, data: dict[str, Any]) -> None:
        self.record_node(now, "", layer, name, data)

    def record_node(self, now: float, node: str, layer: str, name: str, data: dict[str, Any]) -> None:
        raise NotImplementedError

    def bind(self, node: str) -> Tracer:
        """A tracer that stamps records with ``node``."""
        return _NodeTracer(self, node)


class NullTracer(Tracer):
    enabled = False

    def record(self, now: float, layer: str, name: str, data: dict[str, Any]) -> None:
        pass

    def record_node(self, now: float, node: str, layer: str, name: str, data: dict[str, Any]) -> None:
        pass

    def bind(self, node: str) -> Tracer:
        return self


NULL_TRACER = NullTracer()


class _NodeTracer(Tracer):
    __slots__ = ("_node", "_sink", "enabled")

    def __init__(self, sink: Tracer, node: str) -> None:
        self._sink = sink
        self._node = node
        self.enabled = sink.enabled

    def record(self, now: float, layer: str, name: str, data: dict[str, Any]) -> None:
        self._sink.record_node(now, self._node, layer, name, data)

    def record_node(self, now: float, node: str, layer: str, name: str, data: dict[str, Any]) -> None:
        self._sink.record_node(now, node, layer, name, data)

    def bind(self, node: str) -> Tracer:
        return _NodeTracer(self._sink, node)


class MemoryTracer(Tracer):
    """Keeps records in a list (tests, live views); optional listeners see each one."""

    def __init__(self) -> None:
        self.records: list[TraceRecord] = []
        self._listeners: list[Callable[[TraceRecord], None]] = []

    def add_listener(self, fn: Callable[[TraceRecord], None]) -> None:
        self._listeners.append(fn)

    def record_node(self, now: float, node: str, layer: str, name: str, data: dict[str, Any]) -> None:
        rec = TraceRecord(now, node, layer, name, data)
        self.records.append(rec)
        for fn in self._listeners:
            fn(rec)

    def select(
        self, *, layer: str | None = None, name: str | None = None, node: str | None = None
    ) -> list[TraceRecord]:
        return [
            r
            for r in self.records
            if (layer is None or r.layer == layer)
            and (name is None or r.name == name)
            and (node is None or r.node == node)
        ]

    def write_jsonl(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            write_records(fh, self.records)


def write_records(fh: IO[str], records: Iterable[TraceRecord]) -> None:
    for rec in records:
        fh.write(rec.to_json())
        fh.write("\n")


def read_jsonl(path: Path) -> Iterator[TraceRecord]:
    """Read a trace file. Raises ValueError naming the line of a malformed record."""
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield TraceRecord.from_dict(json.loads(line))
            except (ValueError, json.JSONDecodeError) as exc:
                raise ValueError(f"{path}:{lineno}: {exc}") from None


class FileTracer(Tracer):
    """Streams records to a JSON Lines file as they happen; listeners see each record too."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "w", encoding="utf-8", buffering=1 << 20)
        self._listeners: list[Callable[[TraceRecord], None]] = []
        self.count = 0

    def add_listener(self, fn: Callable[[TraceRecord], None]) -> None:
        self._listeners.append(fn)

    def record_node(self, now: float, node: str, layer: str, name: str, data: dict[str, Any]) -> None:
        rec = TraceRecord(now, node, layer, name, data)
        self._fh.write(rec.to_json())
        self._fh.write("\n")
        self.count += 1
        for fn in self._listeners:
            fn(rec)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
