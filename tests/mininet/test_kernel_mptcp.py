"""Kernel peers placed by a scenario: Linux MPTCP on both ends, and our TCP against an MPTCP listener."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.mininet.run import run_mininet_scenario
from lab.scenario import Scenario, Transfer
from lab.trace import read_jsonl
from tests.mininet.test_endpoint import UNSHAPED, clean_machine  # noqa: F401 - a fixture

pytestmark = pytest.mark.mininet

MIB = 1024 * 1024


def test_kernel_mptcp_to_kernel_mptcp_uses_both_paths(tmp_path: Path, clean_machine: None) -> None:  # noqa: F811
    size = 16 * MIB
    scenario = Scenario(
        name="kernel-mptcp",
        description="Linux MPTCP on both hosts of two-paths",
        topology="two-paths",
        topology_params=UNSHAPED,
        transfers=(Transfer(size_bytes=size, src_stack="kernel-mptcp", dst_stack="kernel-mptcp"),),
        time_limit_s=120.0,
    )
    result = run_mininet_scenario(scenario, out_dir=tmp_path, pcap_interfaces=["h1-eth1"])
    assert result.ok, result.summary()
    (transfer,) = result.transfers
    assert transfer.bytes_received == size and transfer.sha256_received == transfer.sha256_expected
    client = result.endpoints["h1"]["stats"]["mptcp_counters"]
    server = result.endpoints["h2"]["stats"]["mptcp_counters"]
    assert client.get("MPCapableSYNACKRX") == 1 and server.get("MPCapableSYNRX") == 1
    assert client.get("MPJoinSynAckRx", 0) >= 1 and server.get("MPJoinAckRx", 0) >= 1
    # the join went out on h1's second interface (path B)
    assert (tmp_path / "pcaps" / "h1-eth1.pcap").stat().st_size > 1000
    kernel = [r for r in read_jsonl(tmp_path / "trace.jsonl") if r.layer == "kernel"]
    assert {r.data["stack"] for r in kernel} == {"kernel-mptcp"}


def test_user_space_tcp_to_a_kernel_mptcp_listener_falls_back_to_tcp(
    tmp_path: Path,
    clean_machine: None,  # noqa: F811
) -> None:
    size = 4 * MIB
    scenario = Scenario(
        name="user-to-kernel-mptcp",
        description="plain TCP from our stack to a Linux MPTCP listener",
        topology="two-paths",
        topology_params=UNSHAPED,
        transfers=(Transfer(size_bytes=size, dst_stack="kernel-mptcp"),),
        time_limit_s=120.0,
    )
    result = run_mininet_scenario(scenario, out_dir=tmp_path, pcaps=False)
    assert result.ok, result.summary()
    server = result.endpoints["h2"]["stats"]["mptcp_counters"]
    assert "MPCapableSYNRX" not in server  # our SYN asked for plain TCP, and got it
