"""lab.bench.ike.TunnelledBulk in the simulator: an inner TCP stream through ESP in UDP and in TCP."""

from __future__ import annotations

import pytest

from lab.bench.ike import TunnelledBulk
from lab.errors import ConfigError
from lab.scenario import Scenario, run_scenario
from lab.trace import MemoryTracer

KIB = 1024


def bulk_scenario(workload: TunnelledBulk, *, loss_pct: float = 0.0) -> Scenario:
    return Scenario(
        name="esp-bulk",
        description="tunnelled bulk sessions back to back",
        topology="single-path",
        topology_params={"delay_ms": 10.0, "bw_mbps": 20.0, "loss_pct": loss_pct},
        transfers=(workload,),
        time_limit_s=120.0,
    )


@pytest.mark.parametrize("loss_pct", [0.0, 2.0])
def test_sessions_run_back_to_back_each_on_its_transport_byte_exact(loss_pct: float) -> None:
    workload = TunnelledBulk(size_bytes=256 * KIB, transports=("udp", "tcp", "udp"), gap_s=0.3)
    result = run_scenario(bulk_scenario(workload, loss_pct=loss_pct), seed=3)
    assert result.ok, [t.to_dict() for t in result.transfers]
    assert [t.name for t in result.transfers] == ["esp-bulk udp-1", "esp-bulk tcp-1", "esp-bulk udp-2"]
    for t, transport in zip(result.transfers, ("udp", "tcp", "udp"), strict=True):
        assert t.extra["transport"] == transport and t.bytes_received == 256 * KIB
        assert 0 < t.goodput_mbps < 20.0
    for before, after in zip(result.transfers, result.transfers[1:], strict=False):
        assert after.started_at >= before.completed_at + 0.3  # never sharing the path
    esp = [r for r in result.network.tracer.records if r.layer == "esp" and r.name == "segment_sent" and r.node == "h1"]
    assert {r.data["transport"] for r in esp} == {"udp", "tcp"}
    assert all(r.data["inner_length"] <= 1412 and r.data["length"] <= 1448 for r in esp)  # fits a 1500-byte MTU


def test_every_session_keeps_to_its_own_ike_sa() -> None:
    result = run_scenario(bulk_scenario(TunnelledBulk(size_bytes=64 * KIB, transports=("tcp", "tcp"))), seed=1)
    assert result.ok
    tracer = result.network.tracer
    assert isinstance(tracer, MemoryTracer)
    established = [
        r for r in tracer.records if r.node == "h1" and r.layer == "ike" and r.data.get("to") == "ESTABLISHED"
    ]
    assert len(established) == 2 and established[0].data["sa"] != established[1].data["sa"]
    deleted = [r for r in tracer.records if r.node == "h1" and r.layer == "ike" and r.data.get("input") == "close"]
    assert len(deleted) >= 1  # the first session's IKE SA is deleted once its stream is through


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"transports": ("quic",)}, "transports"),
        ({"transports": ()}, "transports"),
        ({"size_bytes": 0}, "size_bytes"),
        ({"gap_s": -1.0}, "gap_s"),
        ({"inner_tcp": {"mss": 10}}, "mss"),
        ({"inner_tcp": {"no_such_field": 1}}, "inner TCP"),
        ({"initiator_config": {"fallback": "sideways"}}, "fallback"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TunnelledBulk(**kwargs)


def test_unknown_hosts_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="no host 'h9'"):
        run_scenario(bulk_scenario(TunnelledBulk(responder="h9", size_bytes=KIB)), seed=1)
