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
        "trace": "0d350964d3717382",
        "pcaps/h1-eth0.pcap": "da88a36597472287",
        "pcaps/h1-eth1.pcap": "53c3056fb6418f07",
        "pcaps/h2-eth0.pcap": "8573759ddcb3e63d",
        "pcaps/h2-eth1.pcap": "e492b235e6661b7d",
        "pcaps/r1-eth0.pcap": "8809df6f81a3e855",
        "pcaps/r1-eth1.pcap": "173489fbe50807f4",
        "pcaps/r2-eth0.pcap": "b7c41d58d41f90ab",
        "pcaps/r2-eth1.pcap": "c481ef9ec4b6a836",
    },
    "path-failure": {
        "trace": "603a9253c89d92b3",
        "pcaps/h1-eth0.pcap": "fc167bb2c143e1f0",
        "pcaps/h1-eth1.pcap": "664cf558a250eaba",
        "pcaps/h2-eth0.pcap": "8d117aa1039433c0",
        "pcaps/h2-eth1.pcap": "99026248d38bbb85",
        "pcaps/r1-eth0.pcap": "83a83ce7012ef322",
        "pcaps/r1-eth1.pcap": "55253cbdfb2dae55",
        "pcaps/r2-eth0.pcap": "d79951ad2c62f87d",
        "pcaps/r2-eth1.pcap": "f49a25d64dc6c6cb",
    },
    "mptcp-mpfail-fallback": {
        "trace": "4f4528145a5ae711",
        "pcaps/h1-eth0.pcap": "ce9433198eb08e96",
        "pcaps/h2-eth0.pcap": "fe73c3acea46c377",
        "pcaps/r1-eth0.pcap": "9c9301abe7ee6c31",
        "pcaps/r1-eth1.pcap": "f1b0ddf9a652c25e",
    },
    # tcpcrypt frames sized to fill whole segments (15,864 data bytes, not 16,384): new frame bytes
    "eno-basic": {
        "trace": "1680d406e5e63d05",
        "pcaps/h1-eth0.pcap": "9bcdf3ab96ee6173",
        "pcaps/h2-eth0.pcap": "2f11ebd406d398ab",
        "pcaps/r1-eth0.pcap": "3b2dc9d2a1209f45",
        "pcaps/r1-eth1.pcap": "44873f35783a784b",
    },
    "hotspot": {
        "trace": "0bf3ba76cce8b2c8",
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
