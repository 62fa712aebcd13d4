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
what it receives: h2's DATA_FIN repeated on the closing join now gets h1's ACK, one segment more;
two-paths, path-failure and mptcp-mpfail-fallback when Nagle stopped holding a subflow's segment that
its DSS mapping had made as large as it can be: the transfers end within 80 ms of before; path-failure
when the client began to open its joins once the connection is fully established.)
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
        "trace": "4f7e0f80b375cfcf",
        "pcaps/h1-eth0.pcap": "4aa85aadd853d226",
        "pcaps/h1-eth1.pcap": "dbd2c67ccfd8728a",
        "pcaps/h2-eth0.pcap": "807cdef64b8815fe",
        "pcaps/h2-eth1.pcap": "221c4d060be66cbd",
        "pcaps/r1-eth0.pcap": "888ff097e5e1f6e1",
        "pcaps/r1-eth1.pcap": "a6d1e95fad9c6fe6",
        "pcaps/r2-eth0.pcap": "a24870c0e9aa08c9",
        "pcaps/r2-eth1.pcap": "fbdfa7a8afedd337",
    },
    "path-failure": {
        "trace": "f088d6218f84c1d7",
        "pcaps/h1-eth0.pcap": "2a7ef802c80ee0d0",
        "pcaps/h1-eth1.pcap": "ecb9be65970b43e2",
        "pcaps/h2-eth0.pcap": "4508d6ed56284867",
        "pcaps/h2-eth1.pcap": "f91539dd04edae3c",
        "pcaps/r1-eth0.pcap": "e474b56141d7c22a",
        "pcaps/r1-eth1.pcap": "606bd762e1e80e7d",
        "pcaps/r2-eth0.pcap": "7003b2932dd86d35",
        "pcaps/r2-eth1.pcap": "6bc9d509b574d0f4",
    },
    "mptcp-mpfail-fallback": {
        "trace": "c8bb2b4e1bef292c",
        "pcaps/h1-eth0.pcap": "1a9d5d6d0cecf0c2",
        "pcaps/h2-eth0.pcap": "aab45196413f5ebd",
        "pcaps/r1-eth0.pcap": "4f2f34a6bc22c4a2",
        "pcaps/r1-eth1.pcap": "b5f3927bf2a811d4",
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
