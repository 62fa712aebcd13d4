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
        return record_json(self.t, self.node, self.layer, self.name, self.data)

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


# The JSON of a record, built as json.dumps({"v":..,"t":..,"node":..,"layer":..,"name":..,"data":..},
# separators=(",", ":")) would build it, byte for byte, without the outer dict: the text before
# "data" is cached per (node, layer, name), and "t" is a float's repr as json writes it.
_json_encode = json.JSONEncoder(separators=(",", ":")).encode
try:
    from orjson import dumps as _orjson_dumps
except ImportError:  # pragma: no cover - a dependency; the json module writes the same text
    _orjson_dumps = None


def _encode_data(data: Any) -> str:
    """``data`` as json.dumps writes it: through orjson where its text is the same (ASCII, no
    exponent or 0.0000 that json would write otherwise, no null that could be a NaN), else json."""
    if _orjson_dumps is not None:
        try:
            out = _orjson_dumps(data)
        except TypeError:  # ints beyond 64 bits, keys that are no strings...
            return _json_encode(data)
        if (
            out.isascii()
            and b"e-" not in out
            and b"e+" not in out
            and b"0.0000" not in out
            and (b"null" not in out or not _has_float(data))  # orjson writes NaN and infinities as null
        ):
            return out.decode()
    return _json_encode(data)


_PLAIN = frozenset({str, int, bool, type(None)})


def _has_float(obj: Any) -> bool:
    """Whether ``obj`` holds a float (or anything but strings, ints, None, lists and dicts)."""
    t = type(obj)
    if t is dict:
        obj = obj.values()
    elif t is not list and t is not tuple:
        return t not in _PLAIN
    for v in obj:
        if type(v) not in _PLAIN and _has_float(v):
            return True
    return False


_float_repr = float.__repr__
_HEADS: dict[tuple[str, str, str], str] = {}
_START = f'{{"v":{SCHEMA_VERSION},"t":'


def _head(node: str, layer: str, name: str) -> str:
    key = (node, layer, name)
    head = _HEADS.get(key)
    if head is None:
        if not (type(node) is str and type(layer) is str and type(name) is str):
            return (
                "," + json.dumps({"node": node, "layer": layer, "name": name}, separators=(",", ":"))[1:-1] + ',"data":'
            )
        head = f',"node":{json.dumps(node)},"layer":{json.dumps(layer)},"name":{json.dumps(name)},"data":'
        if len(_HEADS) < 4096:
            _HEADS[key] = head
    return head


def record_json(t: float, node: str, layer: str, name: str, data: dict[str, Any]) -> str:
    """One record as its trace line (without the newline): docs/trace.md."""
    t = round(t, 9)
    stamp = _float_repr(t) if type(t) is float and t - t == 0.0 else json.dumps(t)
    return _START + stamp + _head(node, layer, name) + _encode_data(data) + "}"


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
        self._fh.write(record_json(now, node, layer, name, data) + "\n")
        self.count += 1
        if self._listeners:
            rec = TraceRecord(now, node, layer, name, data)
            for fn in self._listeners:
                fn(rec)

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()
