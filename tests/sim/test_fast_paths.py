"""Every fast path keeps the segments: a run with it and a run without it write the same
trace and the same captures (bytes and nanosecond timestamps), for plain TCP, MPTCP and
ENO/tcpcrypt, traced, with and without loss."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lab.scenario import Scenario, Transfer, run_scenario
from lab.scenario.eno import EncryptedTransfer
from lab.scenario.mptcp import MptcpTransfer
from lab.tcp.connection import TcpConnection

KIB = 1024
PAIRED = {"path_manager": "paired"}


def _scenarios() -> dict[str, Scenario]:
    def two_paths(transfer: object, loss_pct: float) -> Scenario:
        return Scenario(
            name="fast-path-two-paths",
            description="test",
            topology="two-paths",
            topology_params={"delay_ms": (10.0, 30.0), "bw_mbps": (20.0, 10.0), "loss_pct": loss_pct},
            transfers=(transfer,),
            time_limit_s=120.0,
        )

    def one_path(transfer: object, loss_pct: float) -> Scenario:
        return Scenario(
            name="fast-path-single",
            description="test",
            topology="single-path",
            topology_params={"delay_ms": 20.0, "bw_mbps": 20.0, "loss_pct": loss_pct},
            transfers=(transfer,),
            time_limit_s=120.0,
        )

    out = {}
    for loss in (0.0, 2.0):
        out[f"tcp-loss{loss:g}"] = one_path(Transfer(size_bytes=768 * KIB), loss)
        out[f"mptcp-loss{loss:g}"] = two_paths(MptcpTransfer(size_bytes=768 * KIB, client=PAIRED, server=PAIRED), loss)
        out[f"tcpcrypt-loss{loss:g}"] = one_path(EncryptedTransfer(size_bytes=768 * KIB), loss)
    return out


SCENARIOS = _scenarios()


def _run(scenario: Scenario, out: Path, monkeypatch: pytest.MonkeyPatch, *, prediction: bool) -> tuple[dict, int]:
    monkeypatch.setattr(TcpConnection, "header_prediction", prediction)
    full_path = 0
    receive_full = TcpConnection._receive_full

    def counting(self: TcpConnection, segment: bytes, now: float, verified: bool = False) -> None:
        nonlocal full_path
        full_path += 1
        receive_full(self, segment, now, verified)

    monkeypatch.setattr(TcpConnection, "_receive_full", counting)
    result = run_scenario(scenario, seed=5, out_dir=out)
    assert result.ok
    digests = {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in out.rglob("*.pcap")}
    digests["trace.jsonl"] = hashlib.sha256((out / "trace.jsonl").read_bytes()).hexdigest()
    return digests, full_path


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_header_prediction_gives_the_same_segments(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fast, fast_full = _run(SCENARIOS[name], tmp_path / "fast", monkeypatch, prediction=True)
    slow, slow_full = _run(SCENARIOS[name], tmp_path / "slow", monkeypatch, prediction=False)
    assert fast == slow
    # the fast path did carry segments (not all: loss recovery takes the full one)
    assert fast_full < slow_full * 0.9
