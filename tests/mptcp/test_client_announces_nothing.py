"""A client does not announce the addresses it opens its own subflows from.

An ADD_ADDR without a port names the port of the subflow it was sent on (RFC 8684 §3.4.1): for a
client, its initial subflow's ephemeral port, on which it takes no MP_JOIN. Linux as server connects
back to an address a client announces (when its add_addr_accepted limit allows) unless it already has
a subflow to it, and our client answered that join with a RST (seen once on Mininet, when Linux's own
ADD_ADDR came after its first DSS). The client learns the server's addresses and joins from its own;
the server announces (Linux's "signal" endpoints).
"""

from __future__ import annotations

import random

import pytest

from lab.mptcp.config import MptcpConfig
from tests.mptcp.pair import MptcpPair


@pytest.mark.parametrize("path_manager", ["paired", "fullmesh", "per_address"])
def test_only_the_server_announces_and_the_client_still_joins_from_its_other_address(path_manager: str) -> None:
    pair = MptcpPair(MptcpConfig(path_manager=path_manager), MptcpConfig(path_manager=path_manager))
    pair.handshake()
    data = random.Random(2).randbytes(256 * 1024)
    pair.client.send(data)
    pair.run(now=0.0, until=3.0)

    def announcements(end: str) -> list[dict]:
        return [
            o
            for r in pair.records(end, "segment_sent")
            for o in r.data["mptcp"]
            if o["subtype"] == "ADD_ADDR" and o["truncated_hmac"] is not None
        ]

    assert announcements("client") == []
    assert announcements("server")  # the server's second address
    assert len({sf.addr.local_addr for sf in pair.client.subflows}) == 2  # the client joined from its other one
    assert bytes(pair.received["server"]) == data
