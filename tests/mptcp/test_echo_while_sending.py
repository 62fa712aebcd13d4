"""An ADD_ADDR echo goes out even while the echoing end is busy sending data.

The echo rode only on a pure ACK; an end that is sending sends its ACKs on its data segments, whose
DSS mapping leaves no room for the echo, so an ADD_ADDR that arrived while our client was sending
was never echoed: Linux announced again after its timeout and counted one echo fewer (seen once on
Mininet beside two busy loops, in 1 of 20 connections: AddAddrTx 21, EchoAdd 19). RFC 8684 §3.4.1
asks the receiver to echo the ADD_ADDR; Linux sends a pure ACK for it (``mptcp_pm_addr_send_ack``).
"""

from __future__ import annotations

import random
from dataclasses import replace

from lab.mptcp.config import MptcpConfig
from lab.tcp.addresses import FourTuple
from lab.wire.checksum import pack_address
from lab.wire.mptcp import AddAddr, to_tcp_option
from lab.wire.tcp import decode_segment, encode_segment
from tests.mptcp.pair import MptcpPair, rewrite_mptcp

LATE = 20  # the announcement rides on the server's 20th segment after the client starts sending


def _with_option(segment: bytes, addr: FourTuple, opt: AddAddr) -> bytes:
    src, dst = pack_address(addr.local_addr), pack_address(addr.remote_addr)
    seg = decode_segment(segment, src, dst)
    return encode_segment(replace(seg, options=(*seg.options, to_tcp_option(opt))), src, dst)


def test_an_add_addr_arriving_while_the_client_sends_is_echoed_at_once() -> None:
    pair = MptcpPair(MptcpConfig(path_manager="per_address"), MptcpConfig(path_manager="per_address"))
    held: list[AddAddr] = []
    after_send = [-1]  # counts the server's segments once the client sends; -1 before

    def announce_late(direction: str, addr: FourTuple, segment: bytes) -> bytes | None:
        if direction != "s2c":
            return segment

        def hold(opt: object) -> object | None:
            if isinstance(opt, AddAddr) and not opt.echo:
                held.append(opt)
                return None
            return opt

        segment = rewrite_mptcp(segment, addr, hold)
        if after_send[0] >= 0:
            after_send[0] += 1
            if after_send[0] == LATE and held:
                return _with_option(segment, addr, held[0])
        return segment

    pair.tamper = announce_late
    pair.handshake()
    assert held, "the server announced nothing"
    data = random.Random(3).randbytes(4 * 1024 * 1024)
    after_send[0] = 0
    pair.client.send(data)
    pair.run(now=0.0, until=0.5)

    def options(name: str, *, echo: bool) -> list[dict]:
        return [
            r.data
            for r in pair.records("client", name)
            for o in r.data["mptcp"]
            if o["subtype"] == "ADD_ADDR" and (o["truncated_hmac"] is None) == echo
        ]

    assert options("segment_received", echo=False), "the announcement never arrived"
    echoes = options("segment_sent", echo=True)
    assert len(echoes) == 1, echoes
    assert bytes(pair.received["server"]) == data
