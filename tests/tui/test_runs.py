"""SimRun and ReplayRun: records, bundles, controls and damaged traces (no Textual here)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from lab.errors import ConfigError
from lab.runs import STEP_S, ControlUnavailable, ReplayRun, bundle_digest, faster, load_records
from lab.sim.liverun import SimRun
from lab.trace import TraceRecord, read_jsonl

from .conftest import SINGLE_PATH, SMALL_TWO_PATHS, write_trace


def _records_of(run: SimRun, *, rounds: int = 10_000) -> list[TraceRecord]:
    async def collect() -> list[TraceRecord]:
        out: list[TraceRecord] = []
        async for batch in run.trace_batches(interval=0.0):
            out += batch
        return out

    return asyncio.run(collect())


def test_sim_run_streams_every_record_and_records_a_bundle(bundle_dir: Path) -> None:
    run = SimRun(SMALL_TWO_PATHS, seed=1, speed=None, out_dir=bundle_dir)
    records = _records_of(run)
    assert run.status().finished
    assert [r.ok for r in run.results()] == [True]  # SHA-256 checked end to end
    names = {(r.layer, r.name) for r in records}
    assert {("tcp", "segment_sent"), ("link", "metrics_updated"), ("app", "state_updated")} <= names
    # the bundle holds exactly what was streamed, and replays to the same records
    assert bundle_digest(list(read_jsonl(bundle_dir / "trace.jsonl"))) == bundle_digest(records)
    summary = json.loads((bundle_dir / "summary.json").read_text())
    assert summary["ok"] and summary["scenario"] == "two-paths-small"
    replay = ReplayRun(bundle_dir)
    assert replay.name == "two-paths-small"
    assert bundle_digest(replay.records) == bundle_digest(records)
    assert replay.topology()["links"][0]["name"] == "h1-r1"


def test_same_seed_same_records() -> None:
    a = SimRun(SMALL_TWO_PATHS, seed=3, speed=None).run_to_end()
    b = SimRun(SMALL_TWO_PATHS, seed=3, speed=None).run_to_end()
    assert bundle_digest(a) == bundle_digest(b)


def test_link_down_then_up_is_recorded_and_the_transfer_survives() -> None:
    run = SimRun(SINGLE_PATH, seed=1, speed=None)
    run.advance(0.3)
    run.set_link_up("r1-h2", False)
    run.advance(1.0)
    run.set_link_up("r1-h2", True)
    records = run.run_to_end()
    states = [(r.data["link"], r.data["up"]) for r in records if r.layer == "link" and r.name == "state_updated"]
    assert states == [("r1-h2", False), ("r1-h2", True)]
    assert run.results()[0].ok
    assert any(r.layer == "tcp" and "timeout" in r.data for r in records)  # the outage cost an RTO


def test_bad_controls_are_refused_at_once() -> None:
    run = SimRun(SMALL_TWO_PATHS, seed=1, speed=1.0)
    with pytest.raises(ConfigError, match="no link named"):
        run.set_link_up("nowhere", False)
    with pytest.raises(ConfigError, match="speed"):
        run.set_speed(0)
    with pytest.raises(ConfigError, match="speed"):
        SimRun(SMALL_TWO_PATHS, speed=-1.0)
    with pytest.raises(ConfigError, match="no middlebox policy"):
        run.set_middlebox_enabled("r9/nothing", True)
    with pytest.raises(ConfigError, match="step"):
        run.step(0)
    with pytest.raises(ControlUnavailable):
        run.seek(1.0)


def test_pause_and_step_advance_exactly_one_step() -> None:
    run = SimRun(SMALL_TWO_PATHS, seed=1, speed=1.0)

    async def go() -> tuple[float, float]:
        run.pause(True)
        batches = run.trace_batches(interval=0.01)
        run.step()
        await anext(batches)
        first = run.status().now
        for _ in range(5):  # paused: time stands still
            await asyncio.sleep(0.02)
        second = run.status().now
        await batches.aclose()
        return first, second

    first, second = asyncio.run(go())
    assert first == pytest.approx(STEP_S)
    assert second == first
    assert run.status().paused


def test_speed_ladder() -> None:
    assert faster(1.0, +1) == 2.0
    assert faster(1.0, -1) == 0.5
    assert faster(10.0, +1) is None  # as fast as possible
    assert faster(None, +1) is None
    assert faster(None, -1) == 10.0
    assert faster(0.01, -1) == 0.01


def test_middlebox_switch_on_and_off_at_a_router() -> None:
    run = SimRun(SMALL_TWO_PATHS, seed=1, speed=None)
    keys = {p.key: p for p in run.middlebox_policies()}
    assert "r1/strip_tcp_options:30" in keys and not keys["r1/strip_tcp_options:30"].enabled
    run.set_middlebox_enabled("r1/strip_tcp_options:30", True)
    run.advance(0.05)
    assert [type(b).__name__ for b in run.net.router("r1").middleboxes] == ["StripTcpOptions"]
    run.set_middlebox_enabled("r1/strip_tcp_options:30", False)
    records = run.run_to_end()
    assert run.net.router("r1").middleboxes == []
    mb = [r.data for r in records if r.layer == "middlebox" and r.name == "state_updated"]
    desc = {"policy": "strip_tcp_options", "kinds": [30], "when": "all"}
    assert mb == [{"installed": desc}, {"removed": desc}]


def test_a_scenario_middlebox_is_listed_as_on() -> None:
    from topologies.scenarios import SCENARIOS

    run = SimRun(SCENARIOS["payload-tamper"], seed=1, speed=None)
    on = [p.key for p in run.middlebox_policies() if p.enabled]
    assert on == ["r1/flip_payload"]


def test_started_transfer_is_byte_exact_and_a_stopped_one_is_aborted() -> None:
    run = SimRun(SMALL_TWO_PATHS, seed=1, speed=None)
    name = run.start_transfer(300_000)
    run.run_to_end()
    extra = [r for r in run.results() if r.name == name][0]
    assert extra.ok and extra.bytes_received == 300_000  # SHA-256 end to end
    assert run.stop_transfer() is None  # nothing running any more

    run = SimRun(SMALL_TWO_PATHS, seed=1, speed=None)
    name = run.start_transfer(8 * 1024 * 1024)
    run.advance(0.3)
    assert run.stop_transfer() == name
    run.run_to_end()
    stopped = [r for r in run.results() if r.name == name][0]
    assert not stopped.ok and stopped.error


def test_simulation_failure_becomes_an_error_record() -> None:
    run = SimRun(SMALL_TWO_PATHS, seed=1, speed=None)

    def faulty_timer() -> None:
        raise RuntimeError("endpoint exploded")

    run.net.call_at(0.05, faulty_timer)
    records = run.run_to_end()
    errors = [r for r in records if r.name == "error"]
    assert len(errors) == 1 and errors[0].data["fatal"]
    assert "endpoint exploded" in errors[0].data["reason"]
    assert run.status().finished and "simulation stopped" in run.status().text


def test_damaged_traces_load_with_error_records(tmp_path: Path) -> None:
    good = TraceRecord(0.5, "h1", "tcp", "state_updated", {"conn": "a->b", "from": "LISTEN", "to": "SYN-RECEIVED"})
    lines = [
        good.to_json(),
        "{this is not json",
        json.dumps({"v": 99, "t": 1, "node": "h1", "layer": "tcp", "name": "error", "data": {}}),
        json.dumps({"v": 1, "t": 1.0, "node": "h1", "layer": "tcp", "name": "teleported", "data": {}}),
        json.dumps({"v": 1, "node": "h1"}),
        good.to_json()[:25],  # truncated: no newline at the end
    ]
    path = tmp_path / "trace.jsonl"
    path.write_text("\n".join(lines))
    records = load_records(path)
    reasons = [r.data["reason"] for r in records if r.name == "error"]
    assert records[0] == good
    assert len(reasons) == 5
    assert "trace.jsonl:2: unreadable record" in reasons[0]
    assert "schema version 99" in reasons[1]
    assert "unknown record type tcp/teleported" in reasons[2]
    assert "truncated" in reasons[4]


def test_replay_seek_and_step(tmp_path: Path) -> None:
    records = [TraceRecord(i * 0.5, "h1", "app", "state_updated", {"i": i}) for i in range(10)]
    replay = ReplayRun(write_trace(tmp_path / "b", records))
    assert replay.duration == 4.5
    assert [r.data["i"] for r in replay.seek(1.2)] == [0, 1, 2]
    assert replay.status().now == pytest.approx(1.2)
    with pytest.raises(ControlUnavailable):
        replay.set_link_up("x", False)
    with pytest.raises(FileNotFoundError):
        ReplayRun(tmp_path / "nothing")


def test_a_recorded_run_goes_on_with_a_new_transfer_after_it_finished(bundle_dir: Path) -> None:
    run = SimRun(SMALL_TWO_PATHS, seed=1, speed=None, out_dir=bundle_dir)
    first = run.run_to_end()
    name = run.start_transfer(100_000)
    second = run.run_to_end()
    run.close()
    assert any(r.data.get("transfer") == name and r.data.get("event") == "received" for r in second)
    assert bundle_digest(list(read_jsonl(bundle_dir / "trace.jsonl"))) == bundle_digest(first + second)
    summary = json.loads((bundle_dir / "summary.json").read_text())
    assert [t["name"] for t in summary["transfers"]] == ["bulk", name]
    assert summary["ok"] and summary["finished"]


def test_a_run_closed_early_still_leaves_a_summary(bundle_dir: Path) -> None:
    run = SimRun(SINGLE_PATH, seed=1, speed=None, out_dir=bundle_dir)
    run.advance(0.2)
    run.close()
    summary = json.loads((bundle_dir / "summary.json").read_text())
    assert summary["finished"] is False and summary["ok"] is False
    assert len(load_records(bundle_dir / "trace.jsonl")) > 10
