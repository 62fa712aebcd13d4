"""Failover to a backup subflow with the default scheduler (min_rtt), in the simulator.

Path A's link goes down for good mid-transfer; path B's subflow is a backup, marked by
the sender (MP_JOIN B flag from us) or by the receiver (its B flag in the SYN/ACK).
The sender must stop waiting on the subflow whose RTO fired and move to the backup.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from lab.scenario import LinkEvent, get_scenario, run_scenario
from lab.scenario.mptcp import MptcpTransfer

MIB = 1024 * 1024
LINK_DOWN_S = 1.0
PATH_B_CLIENT = "10.0.3.1"
PATH_B_SERVER = "10.0.4.2"


@pytest.mark.parametrize("marked_by", ["sender", "receiver"])
def test_default_scheduler_fails_over_to_the_backup_within_two_seconds(marked_by: str) -> None:
    client: dict = {"path_manager": "paired"}
    server: dict = {"path_manager": "paired"}
    if marked_by == "sender":
        client["backup_addresses"] = (PATH_B_CLIENT,)
    else:
        server["backup_addresses"] = (PATH_B_SERVER,)
    sc = replace(
        get_scenario("handover"),
        link_events=(LinkEvent(at_s=LINK_DOWN_S, link="r1-h2", up=False),),
        transfers=(MptcpTransfer(size_bytes=4 * MIB, client=client, server=server),),  # scheduler: the default
        time_limit_s=60.0,
    )
    result = run_scenario(sc, seed=1, pcaps=False)
    transfer = result.transfers[0].to_dict()
    assert transfer["sha256_match"], transfer
    recs = result.network.tracer.records
    backup_flags = [
        r.data["backup"] for r in recs if r.node == "h1" and r.layer == "mptcp" and r.name == "metrics_updated"
        and r.data["subflow"].startswith(PATH_B_CLIENT)
    ]
    assert backup_flags and backup_flags[-1]  # counted as a backup once its handshake finished
    on_backup = [
        r.t for r in recs if r.node == "h1" and r.layer == "tcp" and r.name == "segment_sent"
        and r.data["conn"].startswith(PATH_B_CLIENT) and r.data["len"] > 0
    ]
    assert on_backup and min(on_backup) > LINK_DOWN_S  # idle while path A worked
    assert min(on_backup) - LINK_DOWN_S < 2.0, min(on_backup)


def test_default_scheduler_fails_over_to_a_backup_the_receiver_marked_with_mp_prio() -> None:
    """The receiver marks path B's subflow a backup with MP_PRIO (RFC 8684 §3.3.8) after the join."""
    import hashlib

    from lab.mptcp.config import MptcpConfig
    from lab.sim.network import SimNetwork
    from lab.stack.apps import BulkSender, BulkSink, TransferResult, bulk_payload
    from lab.topology import build_topology
    from lab.trace import MemoryTracer
    from topologies import TOPOLOGIES

    spec = build_topology(
        "two-paths", TOPOLOGIES["two-paths"], delay_ms=(10.0, 40.0), bw_mbps=(20.0, 20.0), queue_packets=200
    )
    tracer = MemoryTracer()
    net = SimNetwork.build(spec, seed=1, tracer=tracer)
    data = bulk_payload(4 * MIB, 3)
    result = TransferResult("bulk", len(data), hashlib.sha256(data).hexdigest())
    net.host("h2").listen(5001, lambda: BulkSink(result), group=MptcpConfig(path_manager="paired"))
    BulkSender(result, data).start(net.host("h1"), "10.0.2.2", 5001, group=MptcpConfig(path_manager="paired"))
    net.call_at(0.5, lambda: net.host("h2").groups()[0].set_backup(PATH_B_SERVER, True, now=net.now))
    net.set_link_up("r1-h2", False, at=LINK_DOWN_S)
    net.run(until=60.0, stop=lambda: result.complete)
    assert result.ok, result.to_dict()
    recs = tracer.records
    prio = [r for r in recs if r.node == "h1" and r.layer == "mptcp" and r.data.get("peer_backup") is True]
    assert prio and prio[0].t < LINK_DOWN_S
    on_backup = [
        r.t for r in recs if r.node == "h1" and r.layer == "tcp" and r.name == "segment_sent"
        and r.data["conn"].startswith(PATH_B_CLIENT) and r.data["len"] > 0 and r.t > prio[0].t
    ]
    assert on_backup and min(on_backup) > LINK_DOWN_S  # idle as a backup while path A worked
    assert min(on_backup) - LINK_DOWN_S < 2.0, on_backup[:1]
