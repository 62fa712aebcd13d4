"""Same scenario, same seed, same bytes: traces and captures of a few scenarios hold the digests
recorded before the restructure into floors (lab/stack, lab/scenario, lab/bench...) moved code.

A change that alters what a run records on purpose (a new record, a new field) updates these
digests in the same commit and says so; a move or a speed-up never does. (two-paths and
path-failure changed when a subflow in loss recovery began to take new data as RFC 6675's
pipe allows, and again when the client's ADD_ADDR echo stopped riding beside its repeated
MP_CAPABLE; hotspot's trace when the data through an IKE session's tunnel got the ``app``
received records a TCP transfer's end has: two records more, nothing else moved; every trace
when metrics records got ``bytes_sacked``: with that field taken out, two-paths' trace equals
the one before record for record; two-paths and path-failure again when the tail of a transfer
stopped being sent again on a subflow of similar RTT; hotspot again when IKE's TCP connections
stopped holding a message's short tail for Nagle: the same records, the tunnel's data done 40 ms
sooner, four link metrics records fewer; hotspot when ESP metrics records got the IKE session's
name: one line differs, by that field; two-paths and path-failure when the client stopped
announcing its second address, which it joins from itself: h1's ADD_ADDR and h2's echo are gone,
the transfer ends at the same time; two-paths when a subflow we are closing began to read the DSS of
what it receives: h2's DATA_FIN repeated on the closing join now gets h1's ACK, one segment more.)
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
        "trace": "f965c173a790e336",
        "pcaps/h1-eth0.pcap": "3741b6833ec84ca0",
        "pcaps/h1-eth1.pcap": "c3af7f51df8c359e",
        "pcaps/h2-eth0.pcap": "441694308de6005d",
        "pcaps/h2-eth1.pcap": "ac2dc99dd4ca4cc3",
        "pcaps/r1-eth0.pcap": "b51bb1ea82c5fce6",
        "pcaps/r1-eth1.pcap": "9ea4c3a80bc2d843",
        "pcaps/r2-eth0.pcap": "1ab40829a9061d7a",
        "pcaps/r2-eth1.pcap": "e29be50ec1e42d1d",
    },
    "path-failure": {
        "trace": "cacbad3949846100",
        "pcaps/h1-eth0.pcap": "4f99bd35e532e73c",
        "pcaps/h1-eth1.pcap": "34dc04a2a24866e0",
        "pcaps/h2-eth0.pcap": "55257e401376aae0",
        "pcaps/h2-eth1.pcap": "69789b90100be213",
        "pcaps/r1-eth0.pcap": "5d7bd102d5c91360",
        "pcaps/r1-eth1.pcap": "d75df9b7cc5ae2b0",
        "pcaps/r2-eth0.pcap": "d8e88415ef5eec91",
        "pcaps/r2-eth1.pcap": "05fcd6a22b9705d4",
    },
    "mptcp-mpfail-fallback": {
        "trace": "5ef9ce27a7cbe401",
        "pcaps/h1-eth0.pcap": "ce9433198eb08e96",
        "pcaps/h2-eth0.pcap": "fe73c3acea46c377",
        "pcaps/r1-eth0.pcap": "9c9301abe7ee6c31",
        "pcaps/r1-eth1.pcap": "f1b0ddf9a652c25e",
    },
    # tcpcrypt frames sized to fill whole segments (15,864 data bytes, not 16,384): new frame bytes
    "eno-basic": {
        "trace": "589121d163ff218c",
        "pcaps/h1-eth0.pcap": "9bcdf3ab96ee6173",
        "pcaps/h2-eth0.pcap": "2f11ebd406d398ab",
        "pcaps/r1-eth0.pcap": "3b2dc9d2a1209f45",
        "pcaps/r1-eth1.pcap": "44873f35783a784b",
    },
    "hotspot": {
        "trace": "e5b6b51b88303fab",
        "pcaps/h1-eth0.pcap": "babbc14928b9d83e",
        "pcaps/h2-eth0.pcap": "773a5f4034d2553d",
        "pcaps/r1-eth0.pcap": "8c974626d16da45d",
        "pcaps/r1-eth1.pcap": "96e69b1f96838b72",
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
