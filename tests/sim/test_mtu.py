"""No packet the stack sends exceeds the 1500-byte MTU, whatever options it carries (RFC 6691)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from lab.pcap import read_pcap
from lab.scenario import get_scenario, run_scenario


@pytest.mark.parametrize("name", ["lossy-path", "mptcp-checksum-tamper", "path-failure"])
def test_every_packet_fits_the_mtu_even_with_sack_blocks_and_mptcp_options(tmp_path: Path, name: str) -> None:
    sc = get_scenario(name)
    sc = replace(sc, transfers=tuple(replace(t, size_bytes=1024 * 1024) for t in sc.transfers))
    if name == "lossy-path":
        sc = sc.with_params(loss_pct=3.0)  # many holes: SACK blocks on data segments
    run_scenario(sc, seed=4, out_dir=tmp_path)
    sizes = [len(pkt) for pcap in (tmp_path / "pcaps").glob("*.pcap") for _t, pkt in read_pcap(pcap)]
    assert sizes and max(sizes) <= 1500
