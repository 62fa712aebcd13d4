"""``tcplab run SCENARIO --backend mininet``: the bundle, endpoint failures, bad scenarios, non-root."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.errors import ConfigError
from lab.mininet.run import merge_result, run_mininet_scenario
from lab.scenario import LinkEvent, Scenario, Transfer, Workload
from lab.stack.apps import TransferResult
from lab.trace import TraceRecord, read_jsonl
from tests.mininet.conftest import ROOT
from tests.mininet.test_endpoint import UNSHAPED, clean_machine  # noqa: F401 - a fixture

MIB = 1024 * 1024
TCPLAB = ROOT / ".venv" / "bin" / "tcplab"


@dataclass(frozen=True, kw_only=True)
class CrashingHost(Workload):
    """Kills the endpoint process of ``host`` ``after_s`` seconds into the run."""

    name: str = "crash"
    host: str = "h2"
    after_s: float = 0.3

    def schedule(self, run: Any) -> None:
        if getattr(run, "host", None) == self.host:  # only inside that host's endpoint process
            run.net.call_at(self.after_s, lambda: os._exit(3))


def test_merge_result_takes_each_half_from_the_side_that_knows() -> None:
    result = TransferResult("bulk", 10, "ab")
    sender = {"bytes_received": 0, "started_at": 0.5, "completed_at": None, "sender_done": True, "error": None}
    receiver = {"bytes_received": 10, "sha256_received": "ab", "started_at": 0.6, "first_byte_at": 0.7}
    receiver |= {"completed_at": 2.5, "error": None, "extra": {"x": 1}}
    merge_result(result, [sender, receiver])
    assert (result.started_at, result.first_byte_at, result.completed_at) == (0.5, 0.7, 2.5)
    assert result.ok and result.sender_done and result.extra == {"x": 1}
    assert result.goodput_mbps == pytest.approx(10 * 8 / 2.0 / 1e6)
    # a reset seen by the sender after the receiver had everything does not spoil the result
    merge_result(result, [sender | {"error": "sender: reset"}, receiver])
    assert result.ok
    merge_result(result, [sender | {"error": "sender: reset"}, receiver | {"completed_at": None}])
    assert result.error == "sender: reset" and not result.ok


def test_the_cli_refuses_the_mininet_backend_without_root_in_one_line(tmp_path: Path) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    if os.geteuid() != 0:
        argv = [str(TCPLAB)]
    else:
        argv = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", str(TCPLAB)]
    out_dir = tmp_path / "bundle"
    tmp_path.chmod(0o777)
    proc = subprocess.run(
        [*argv, "run", "single-path", "--backend", "mininet", "--out", str(out_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs root" in lines[0] and "Traceback" not in proc.stderr
    assert not out_dir.exists()


@pytest.mark.mininet
def test_tcplab_run_single_path_on_mininet_writes_a_full_bundle(tmp_path: Path, clean_machine: None) -> None:  # noqa: F811
    out_dir = tmp_path / "bundle"
    proc = subprocess.run(
        [str(TCPLAB), "run", "single-path", "--backend", "mininet", "--out", str(out_dir), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)
    listing = summary.pop("bundle")  # where the bundle went, and its files
    assert summary == json.loads((out_dir / "summary.json").read_text())
    assert listing["path"] == str(out_dir) and "trace.jsonl" in listing["files"]
    assert summary["backend"] == "mininet" and summary["ok"] is True and summary["errors"] == []
    (transfer,) = summary["transfers"]
    assert transfer["sha256_match"] is True and transfer["bytes_received"] == 4 * MIB
    # the path is 20 Mbit/s: the goodput is real, and below the link rate
    assert 5.0 < transfer["goodput_mbps"] <= 20.0
    topology = json.loads((out_dir / "topology.json").read_text())
    assert {n["name"] for n in topology["nodes"]} == {"h1", "r1", "h2"}
    interfaces = ["h1-eth0", "r1-eth0", "r1-eth1", "h2-eth0"]
    assert summary["files"]["pcaps"] == sorted(f"pcaps/{name}.pcap" for name in interfaces)
    for name in interfaces:
        assert (out_dir / "pcaps" / f"{name}.pcap").stat().st_size > 4 * MIB
    links = {(entry["from"], entry["to"]): entry for entry in summary["links"]}
    assert links[("h1-eth0", "r1-eth0")]["bytes"] > 4 * MIB
    records = list(read_jsonl(out_dir / "trace.jsonl"))
    times = [r.t for r in records]
    assert times == sorted(times) and times[0] >= 0.0
    assert {"h1", "h2", "net"} <= {r.node for r in records}
    sent = {r.node for r in records if r.layer == "tcp" and r.name == "segment_sent"}
    assert sent == {"h1", "h2"}
    received = [r for r in records if r.layer == "app" and r.data.get("event") == "received"]
    assert len(received) == 1 and received[0].node == "h2" and received[0].data["sha256_match"] is True
    assert any(r.layer == "tcp" and r.name == "metrics_updated" for r in records)
    # the transfer's records fall within the measured transfer time
    assert received[0].t == pytest.approx(transfer["completed_at"], abs=1e-6)
    assert max(times) < summary["wall_time_s"]


@pytest.mark.mininet
def test_a_crashed_endpoint_is_an_error_record_and_ends_the_run(tmp_path: Path, clean_machine: None) -> None:  # noqa: F811
    scenario = Scenario(
        name="crash",
        description="h2's endpoint dies during a transfer that would take minutes",
        topology="two-paths",
        topology_params={"delay_ms": (0.0, 0.0), "bw_mbps": (1.0, 1.0)},
        transfers=(Transfer(size_bytes=64 * MIB), CrashingHost(after_s=0.5)),
        time_limit_s=120.0,
    )
    started = time.monotonic()
    result = run_mininet_scenario(scenario, out_dir=tmp_path, pcaps=False)
    assert time.monotonic() - started < 30.0
    assert not result.ok and not result.timed_out
    (transfer,) = result.transfers
    assert transfer.error is not None and transfer.error.startswith("endpoint h2 failed")
    assert result.endpoints["h2"]["exit_status"] == 3
    assert result.endpoints["h1"]["exit_status"] == 0
    errors = [r for r in read_jsonl(tmp_path / "trace.jsonl") if r.name == "error" and r.layer == "endpoint"]
    assert len(errors) == 1 and errors[0].node == "h2" and "exited (3)" in errors[0].data["reason"]
    assert 0.4 < errors[0].t < 10.0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["ok"] is False and summary["errors"]


@pytest.mark.mininet
def test_a_scenario_that_does_not_fit_is_a_config_error_and_leaves_nothing(
    tmp_path: Path,
    clean_machine: None,  # noqa: F811
) -> None:
    scenario = Scenario(
        name="clash",
        description="a kernel listener on a port h2's user-space stack owns",
        topology="two-paths",
        topology_params=UNSHAPED,
        transfers=(Transfer(name="a", size_bytes=MIB), Transfer(name="b", port=45000, dst_stack="kernel")),
    )
    with pytest.raises(ConfigError, match="45000"):
        run_mininet_scenario(scenario, out_dir=tmp_path, pcaps=False)
    with pytest.raises(ConfigError, match="live backend"):
        from lab.scenario import run_scenario

        run_scenario(Scenario(name="k", description="", topology="single-path", transfers=(scenario.transfers[1],)))


@pytest.mark.mininet
def test_link_events_take_the_path_down_and_back_with_its_routes(tmp_path: Path, clean_machine: None) -> None:  # noqa: F811
    scenario = Scenario(
        name="flap",
        description="r1-h2 goes down at 0.5 s and comes back at 1.5 s during a 2 Mbit/s transfer",
        topology="single-path",
        topology_params={"delay_ms": 0.0, "bw_mbps": 2.0},
        transfers=(Transfer(size_bytes=MIB),),
        link_events=(LinkEvent(at_s=0.5, link="r1-h2", up=False), LinkEvent(at_s=1.5, link="r1-h2", up=True)),
        time_limit_s=60.0,
    )
    live: list[TraceRecord] = []
    result = run_mininet_scenario(scenario, out_dir=tmp_path, pcaps=False, on_records=live.extend)
    assert result.ok, result.summary()
    records = list(read_jsonl(tmp_path / "trace.jsonl"))
    # the live view saw every endpoint record as it came (one host's records in order)
    assert sorted(live, key=lambda r: (r.node, r.t)) == sorted(
        (r for r in records if r.node in ("h1", "h2") and r.layer != "endpoint"), key=lambda r: (r.node, r.t)
    )
    events = [(r.t, r.data["up"]) for r in records if r.layer == "link" and "realised_by" not in r.data]
    events = [(t, up) for t, up in events if t > 0]
    assert [up for _t, up in events] == [False, True]
    assert 0.5 <= events[0][0] < 1.0 and 1.5 <= events[1][0] < 2.0
    # the sender noticed: a retransmission timeout while the link was down
    timeouts = [r.t for r in records if r.node == "h1" and r.layer == "tcp" and r.data.get("timeout") == "rto"]
    assert any(events[0][0] < t < events[1][0] + 1.0 for t in timeouts)
    # and the transfer finished over the restored routes, well after the link came back
    assert result.transfers[0].completed_at > events[1][0]
