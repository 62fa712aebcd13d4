"""A join subflow we have begun to close still reads the DSS of the data it receives.

We close every subflow (FIN) once both DATA_FINs are done; TCP can still receive on a subflow in
FIN_WAIT, and Linux may still send there: its MPTCP-level retransmission picks an idle subflow
(``mptcp_subflow_get_retrans``) and sends data again with a new mapping. The receiver read a DSS
only on ESTABLISHED subflows (and the initial one), so such data on a closing join had no mapping:
"data without a DSS mapping" and a RST (seen once against Linux beside two busy loops, in the
kernel-MPTCP interop over TUN). RFC 8684 §3.3.1: the mapping belongs to the data, whatever the
subflow's own closing state.
"""

from __future__ import annotations

import random

from lab.mptcp.config import MptcpConfig
from lab.mptcp.state import SubflowState
from lab.wire.tcp import FIN, decode_segment
from tests.mptcp.pair import PATH_A, PATH_B, MptcpPair

CFG = MptcpConfig(path_manager="none", announce=False, scheduler="round_robin")


def test_data_with_a_mapping_on_a_closing_join_subflow_is_taken() -> None:
    pair = MptcpPair(CFG, CFG)
    pair.handshake()
    pair.client.open_subflow(PATH_B, now=0.01)
    now = pair.run(now=0.01, until=0.1)
    join = next(sf for sf in pair.client.subflows if sf.addr == PATH_B)
    assert join.state == SubflowState.ESTABLISHED

    def hold_client_fin_on_b(direction: str, addr, seg: bytes) -> bytes | None:
        # the server does not learn that we closed B: it goes on sending there, as Linux may
        if direction == "c2s" and addr == PATH_B and decode_segment(seg).flags & FIN:
            return None
        return seg

    pair.tamper = hold_client_fin_on_b
    pair.client._close_subflow(join, now, "closing for the test")
    assert join.state == SubflowState.CLOSING
    down = random.Random(5).randbytes(200_000)
    pair.server.send(down)
    pair.run(now=now, until=now + 2.0)
    on_b = [r for r in pair.records("client", "segment_received") if r.data.get("subflow") == str(PATH_B)]
    assert any(o["subtype"] == "DSS" and o.get("data_seq") is not None for r in on_b for o in r.data["mptcp"])
    errors = [r.data for r in pair.records("client", "error")]
    assert errors == [], errors
    assert bytes(pair.received["client"]) == down
    assert pair.client.fallback is None and any(sf.addr == PATH_A for sf in pair.client.subflows)
