"""A trace line is what json.dumps of the whole record gives, byte for byte (docs/trace.md),
however the writer builds it."""

from __future__ import annotations

import json
import random

import pytest

from lab.trace import TraceRecord, record_json

CASES = [
    (0.0, "h1", "tcp", "segment_sent", {"conn": "10.0.1.1:1->10.0.2.2:5001", "seq": 1, "options": [{"kind": "TS"}]}),
    (0, "h1", "tcp", "state_updated", {}),
    (
        1e-05,
        "n\u00e9",
        "l\u2014",
        "n",
        {"k": "\u2014", "f": 1e16, "nan": float("nan"), "big": 2**70, "t": (1, 2), 3: "x"},
    ),
    (123.456789123456, "net", "link", "segment_dropped", {"x": None, "b": True, "inf": float("-inf")}),
    (float("inf"), "a", "b", "c", {"l": [1.5, 2.25e-7, -0.0]}),
    (2.5, "h1", "mptcp", "x", {"none": None, "nan": float("nan"), "inf": [float("inf")], "ok": 1}),
    (2.5, "h1", "mptcp", "x", {"none": None, "l": [0.5, {"d": None}], "e": 1e-7, "s": "one-way e+1"}),
    (5, 'q"uote', "back\\slash", "new\nline", {"s": "\x00\x1f"}),
]


def _reference(t: float, node: str, layer: str, name: str, data: dict) -> str:
    record = {"v": 1, "t": round(t, 9), "node": node, "layer": layer, "name": name, "data": data}
    return json.dumps(record, separators=(",", ":"))


@pytest.mark.parametrize("case", CASES)
def test_record_line_matches_json_dumps(case: tuple) -> None:
    assert record_json(*case) == _reference(*case)
    assert TraceRecord(*case).to_json() == _reference(*case)


def test_random_times_and_values_match_json_dumps() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        t = rng.random() * rng.choice([1.0, 1e-6, 1e3, 1e9])
        data = {"v": rng.random() * rng.choice([1e-9, 1.0, 1e20]), "i": rng.getrandbits(64)}
        assert record_json(t, "h2", "mptcp", "metrics_updated", data) == _reference(
            t, "h2", "mptcp", "metrics_updated", data
        )
