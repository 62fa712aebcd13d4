"""The client's ADD_ADDR echo never shares a segment with its repeated MP_CAPABLE.

Linux sends its ADD_ADDR alone on a pure ACK right after the handshake, before any DSS
has told our client that the server holds its keys; the client still repeats MP_CAPABLE
on its ACKs then. Linux ignores an echo that rides beside that MP_CAPABLE and announces
again about 200 ms later (AddAddrTx 2-3 instead of 1, seen on Mininet): the echo waits
for the first segment without MP_CAPABLE, and an ACK is sent for it once the server's
DSS arrives.
"""

from __future__ import annotations

import random

from lab.mptcp.config import MptcpConfig
from lab.wire import mptcp as w
from tests.mptcp.pair import MptcpPair, rewrite_mptcp


def _alone_like_linux(direction, addr, seg):
    """The server's ADD_ADDR goes out without a DSS beside it, as Linux sends it."""
    if direction != "s2c":
        return seg
    carries_add_addr = []

    def look(o):
        carries_add_addr.append(isinstance(o, w.AddAddr) and not o.echo)
        return o

    rewrite_mptcp(seg, addr, look)
    if not any(carries_add_addr):
        return seg
    return rewrite_mptcp(seg, addr, lambda o: None if isinstance(o, w.Dss) else o)


def test_the_echo_waits_for_a_segment_without_mp_capable_and_is_sent_once() -> None:
    pair = MptcpPair(MptcpConfig(path_manager="none"), MptcpConfig(path_manager="fullmesh"))
    pair.tamper = _alone_like_linux
    pair.handshake()
    pair.client.send(random.Random(1).randbytes(64 * 1024))
    pair.run(now=0.0, until=0.5)
    sent = [r.data["mptcp"] for r in pair.records("client", "segment_sent")]
    echoes = [opts for opts in sent if any(o["subtype"] == "ADD_ADDR" for o in opts)]
    assert len(echoes) == 1, echoes  # the first echo was taken: the server announced once
    assert not any(o["subtype"] == "MP_CAPABLE" for o in echoes[0]), echoes[0]
    assert pair.server._announce == []
    announced = [
        o for r in pair.records("server", "segment_sent") for o in r.data["mptcp"] if o["subtype"] == "ADD_ADDR"
    ]
    assert len(announced) == 1, announced
    assert bytes(pair.received["server"]) == random.Random(1).randbytes(64 * 1024)
