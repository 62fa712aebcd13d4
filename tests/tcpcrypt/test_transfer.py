"""tcpcrypt over the simulator: byte-exact transfers (also with loss), the ENO scenarios, their traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.eno.extension import EnoConfig
from lab.errors import ConfigError
from lab.scenario import Scenario, registry, run_scenario
from lab.scenario.eno import EncryptedTransfer, SimultaneousOpenTransfer
from lab.tcpcrypt.stream import TcpcryptConfig
from lab.trace import MemoryTracer, read_jsonl

KIB = 1024


def run(*transfers, seed: int = 1, **params: object):  # noqa: ANN002, ANN202
    scenario = Scenario(
        name="test", description="", topology="single-path", topology_params=params, transfers=tuple(transfers)
    )
    return run_scenario(scenario, seed=seed)


def assert_exact(result) -> None:  # noqa: ANN001
    for t in result.transfers:
        assert t.ok, t.to_dict()
        assert t.sha256_received == t.sha256_expected and t.bytes_received == t.bytes_expected


@pytest.mark.parametrize("tep", [0x21, 0x22, 0x23, 0x24])
@pytest.mark.parametrize("aead", [0x0001, 0x0002, 0x0010])
def test_every_tep_and_aead_byte_exact(tep: int, aead: int) -> None:
    cfg = EnoConfig(teps=(tep,), tcpcrypt=TcpcryptConfig(aeads=(aead,)))
    result = run(EncryptedTransfer(size_bytes=96 * KIB, client=cfg, server=cfg))
    assert_exact(result)
    assert result.transfers[0].extra["tep"] == f"0x{tep:02x}"


@pytest.mark.parametrize("seed", [1, 2])
def test_transfer_with_loss_is_byte_exact(seed: int) -> None:
    cfg = EnoConfig(tcpcrypt=TcpcryptConfig(rekey_after_bytes=200 * KIB))
    result = run(EncryptedTransfer(size_bytes=768 * KIB, client=cfg, server=cfg), seed=seed, loss_pct=3.0)
    assert_exact(result)
    dropped = sum(link["dropped"] for link in result.summary()["links"])
    assert dropped > 0  # the loss really happened, and retransmissions repaired the frames


def test_draft02_profile_and_experimental_encoding_over_the_simulator() -> None:
    draft = EnoConfig(teps=(0x21, 0x22), tcpcrypt=TcpcryptConfig(profile="draft02", aeads=(1, 2)))
    experimental = EnoConfig(experimental_encoding=True)
    result = run(
        EncryptedTransfer(name="draft02", port=5001, size_bytes=200 * KIB, client=draft, server=draft),
        EncryptedTransfer(name="kind253", port=5002, size_bytes=200 * KIB, client=experimental, server=EnoConfig()),
    )
    assert_exact(result)


def test_rekeying_shows_in_the_trace() -> None:
    cfg = EnoConfig(tcpcrypt=TcpcryptConfig(rekey_after_bytes=64 * KIB))
    scenario = Scenario(
        name="rekey",
        description="",
        topology="single-path",
        transfers=(EncryptedTransfer(size_bytes=300 * KIB, client=cfg),),
    )
    from lab.scenario import ScenarioRun

    tracer = MemoryTracer()
    run_ = ScenarioRun(scenario, seed=1, tracer=tracer)
    run_.net.run(until=60.0, stop=run_.done)
    assert run_.results[0].ok
    rekeys = [r for r in tracer.select(layer="tcpcrypt", name="key_updated") if r.data.get("rekey")]
    assert {r.node for r in rekeys} == {"h1", "h2"}
    assert max(r.data["generation"] for r in rekeys) == 4  # 300 KiB at 64 KiB per key


# --- the registered scenarios ------------------------------------------------------------------------------


def scenario(name: str) -> Scenario:
    return registry.scenarios()[name]


def test_scenarios_are_registered() -> None:
    names = set(registry.scenarios())
    assert {"eno-basic", "eno-mismatch", "eno-stripped", "tcpcrypt-tamper", "eno-simultaneous-open"} <= names


def test_eno_basic_writes_the_bundle(tmp_path: Path) -> None:
    result = run_scenario(scenario("eno-basic"), seed=1, out_dir=tmp_path)
    assert result.ok
    summary = json.loads((tmp_path / "summary.json").read_text())
    [t] = summary["transfers"]
    assert t["sha256_match"] and t["client_outcome"] == t["server_outcome"] == "encrypted"
    assert t["client_session_id"] == t["server_session_id"]
    records = list(read_jsonl(tmp_path / "trace.jsonl"))
    eno = [r for r in records if r.layer == "eno"]
    offered = [r.data for r in eno if r.name == "segment_sent" and r.data["segment"] == "SYN"]
    assert offered[0]["teps"] == ["0x23", "0x21"]
    answered = [r.data for r in eno if r.name == "segment_sent" and r.data["segment"] == "SYN-ACK"]
    assert answered[0]["teps"] == ["0x23"] and answered[0]["b"] is True
    ids = {r.node: r.data["session_id"] for r in records if r.layer == "tcpcrypt" and r.name == "key_updated"}
    assert ids["h1"] == ids["h2"] == t["client_session_id"]
    assert (tmp_path / "pcaps").is_dir()


def test_eno_mismatch() -> None:
    result = run_scenario(scenario("eno-mismatch"), seed=1)
    assert_exact(result)
    overlap, disjoint = result.transfers
    assert overlap.extra["tep"] == "0x24" and overlap.extra["client_outcome"] == "encrypted"
    assert disjoint.extra["client_outcome"] == disjoint.extra["server_outcome"] == "fallback"
    assert disjoint.extra["client_reason"] == "no_common_tep"


def test_eno_stripped() -> None:
    tracer = MemoryTracer()
    from lab.scenario import ScenarioRun

    run_ = ScenarioRun(scenario("eno-stripped"), seed=1, tracer=tracer)
    run_.net.run(until=60.0, stop=run_.done)
    opportunistic, mandatory_client, mandatory_server = run_.results
    for t in run_.results:
        assert t.ok, t.to_dict()
    assert opportunistic.extra["client_outcome"] == "fallback" and opportunistic.bytes_received == 256 * KIB
    assert mandatory_client.extra["client_outcome"] == "refused" and mandatory_client.bytes_received == 0
    assert mandatory_server.extra["server_outcome"] == "refused" and mandatory_server.bytes_received == 0
    refusals = [r.data for r in tracer.select(layer="eno", name="state_updated") if r.data["to"] == "refused"]
    assert {r["reason"] for r in refusals} == {"no_eno_option"}
    stripped = tracer.select(layer="middlebox", name="segment_sent")
    assert stripped and all(69 in r.data["stripped_kinds"] for r in stripped)


def test_tcpcrypt_tamper_aborts_and_delivers_nothing_corrupted() -> None:
    tracer = MemoryTracer()
    from lab.scenario import ScenarioRun

    run_ = ScenarioRun(scenario("tcpcrypt-tamper"), seed=1, tracer=tracer)
    run_.net.run(until=60.0, stop=run_.done)
    [t] = run_.results
    assert t.extra["server_outcome"] == "aborted"
    assert t.extra["corrupted_bytes_delivered"] == 0
    assert t.bytes_received < t.bytes_expected and "authentication_failed" in (t.error or "")
    [flip] = tracer.select(layer="middlebox", name="segment_sent")
    [error] = tracer.select(layer="tcpcrypt", name="error")
    assert error.node == "h2" and error.data["reason"] == "authentication_failed"
    assert error.t >= flip.t
    # the failing frame's stream offset, as a field: past every byte delivered before it
    offset = error.data["offset"]
    assert isinstance(offset, int) and offset >= t.bytes_received and f"offset {offset} " in error.data["detail"]
    resets = [r for r in tracer.select(layer="tcp", name="state_updated") if r.data.get("reset")]
    assert {r.node for r in resets} == {"h1", "h2"}


def test_eno_simultaneous_open() -> None:
    tracer = MemoryTracer()
    from lab.scenario import ScenarioRun

    run_ = ScenarioRun(scenario("eno-simultaneous-open"), seed=1, tracer=tracer)
    run_.net.run(until=60.0, stop=run_.done)
    [t] = run_.results
    assert t.ok and t.extra["client_outcome"] == "encrypted"
    roles = {r.node: r.data["role"] for r in tracer.select(layer="eno", name="state_updated") if "role" in r.data}
    assert roles == {"h1": "A", "h2": "B"}
    transitions = [
        r.data for r in tracer.select(layer="tcp", name="state_updated") if r.data.get("to") == "SYN-RECEIVED"
    ]
    assert {len(transitions)} == {2}  # both sides went SYN-SENT -> SYN-RECEIVED: a real simultaneous open


def test_workload_config_errors() -> None:
    with pytest.raises(ConfigError):
        EncryptedTransfer(expect="maybe")
    with pytest.raises(ConfigError):
        EncryptedTransfer(port=0)
    with pytest.raises(ConfigError):
        SimultaneousOpenTransfer(src_port=70000)
    with pytest.raises(ConfigError):
        run(EncryptedTransfer(dst="h9"))


def test_wrong_expectation_is_reported() -> None:
    result = run(EncryptedTransfer(size_bytes=10 * KIB, server=None, expect="encrypted"))
    [t] = result.transfers
    assert not t.ok and "expected encryption" in (t.error or "")


def test_benchmarks_are_registered_and_meet_their_targets() -> None:
    benches = registry.benchmarks()
    assert {"sim-tcpcrypt-overhead", "tcpcrypt-first-byte", "tcpcrypt-stream-throughput"} <= set(benches)
    first = benches["tcpcrypt-first-byte"].run()
    assert first["passed"] and 0.9 <= first["extra_rtts"] <= 1.1  # Init1/Init2 cost one round trip
    for key in ("bench", "metric", "value", "unit", "target", "passed"):
        assert key in first
    from lab.bench.tcpcrypt import bench_overhead, bench_stream_throughput

    overhead = bench_overhead(size_bytes=2 * 1024 * 1024)
    assert overhead["sha256_match"] and overhead["value"] >= 0.85
    speed = bench_stream_throughput(size_bytes=1024 * 1024)
    assert speed["byte_exact"] and set(speed["per_aead_mb_s"]) == {
        "AEAD_AES_128_GCM",
        "AEAD_AES_256_GCM",
        "AEAD_CHACHA20_POLY1305",
    }
