"""Same scenario, same seed, same bytes: traces and captures of a few scenarios hold the digests
recorded before the restructure into floors (lab/stack, lab/scenario, lab/bench...) moved code.

A change that alters what a run records on purpose (a new record, a new field) updates these
digests in the same commit and says so; a move or a speed-up never does.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from lab.scenario import get_scenario, run_scenario

SEED = 3
# sha256 prefixes of trace.jsonl and each pcap of `tcplab run SCENARIO --seed 3`
DIGESTS = {
    "two-paths": {
        "trace": "2591fe7716cdf671",
        "pcaps/h1-eth0.pcap": "ab2ae3756bd937ed",
        "pcaps/h1-eth1.pcap": "c0518e92e491ac2d",
        "pcaps/h2-eth0.pcap": "30e8b9b19209f537",
        "pcaps/h2-eth1.pcap": "c9136bc3156de99e",
        "pcaps/r1-eth0.pcap": "6a12f4cf8789dfdc",
        "pcaps/r1-eth1.pcap": "af5f251f34e3d1a4",
        "pcaps/r2-eth0.pcap": "f7c8e3ba9c043490",
        "pcaps/r2-eth1.pcap": "c43f732dca6d1755",
    },
    "path-failure": {
        "trace": "a01376580659f024",
        "pcaps/h1-eth0.pcap": "3fc4ead32e3ca526",
        "pcaps/h1-eth1.pcap": "f3323f50d5174d41",
        "pcaps/h2-eth0.pcap": "dc8d729ff3ea4ac0",
        "pcaps/h2-eth1.pcap": "bcec998a03afeebd",
        "pcaps/r1-eth0.pcap": "3266f3d850dfc86b",
        "pcaps/r1-eth1.pcap": "37b0641bfd3196f7",
        "pcaps/r2-eth0.pcap": "cd3712cb2f1b9a05",
        "pcaps/r2-eth1.pcap": "e01cbaa79cd5e7ad",
    },
    "mptcp-mpfail-fallback": {
        "trace": "ed7bca2b5a409518",
        "pcaps/h1-eth0.pcap": "3d119af3f36a9045",
        "pcaps/h2-eth0.pcap": "fe73c3acea46c377",
        "pcaps/r1-eth0.pcap": "9c9301abe7ee6c31",
        "pcaps/r1-eth1.pcap": "62e91ddf0f8c9231",
    },
    "eno-basic": {
        "trace": "8ac6f57e1ca00874",
        "pcaps/h1-eth0.pcap": "e96bb2d21f3b3ec0",
        "pcaps/h2-eth0.pcap": "d706696371d29234",
        "pcaps/r1-eth0.pcap": "2e8dabf68be9088a",
        "pcaps/r1-eth1.pcap": "4fe844daab9ae66b",
    },
    "hotspot": {
        "trace": "04e099650ab7605d",
        "pcaps/h1-eth0.pcap": "1d1d7557e1a0cecd",
        "pcaps/h2-eth0.pcap": "c19259ae1fe29c72",
        "pcaps/r1-eth0.pcap": "8e37905a99ba64e3",
        "pcaps/r1-eth1.pcap": "48aee58c8113c41a",
    },
}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


@pytest.mark.parametrize("name", sorted(DIGESTS))
def test_trace_and_captures_match_the_recorded_digests(name: str, tmp_path: Path) -> None:
    run_scenario(get_scenario(name), seed=SEED, out_dir=tmp_path)
    got = {"trace": _digest(tmp_path / "trace.jsonl")}
    got |= {f"pcaps/{p.name}": _digest(p) for p in sorted((tmp_path / "pcaps").glob("*.pcap"))}
    assert got == DIGESTS[name]
