"""MPTCP scenarios in the simulator: byte-exact transfers and the protocol's visible reactions."""

from __future__ import annotations

from dataclasses import replace

import pytest

from lab.scenario import Scenario, get_scenario, run_scenario
from lab.scenario.mptcp import MptcpTransfer
from lab.trace import MemoryTracer

MIB = 1024 * 1024


def _small(name: str, size: int = 2 * MIB) -> Scenario:
    sc = get_scenario(name)
    return replace(sc, transfers=tuple(replace(t, size_bytes=size) for t in sc.transfers), time_limit_s=120.0)


def _run(sc: Scenario, seed: int = 1):
    result = run_scenario(sc, seed=seed, pcaps=False)
    tracer = result.network.tracer
    assert isinstance(tracer, MemoryTracer)
    return result, [r for r in tracer.records if r.layer == "mptcp"]


def _closed_bytes(records, node: str) -> dict[str, int]:
    """Bytes each subflow carried, from its CLOSED record or the last metrics sample."""
    out: dict[str, int] = {}
    for r in records:
        if r.node != node:
            continue
        if r.name == "metrics_updated" or (r.name == "state_updated" and r.data.get("to") == "CLOSED"):
            out[r.data["subflow"]] = max(out.get(r.data["subflow"], 0), r.data["bytes_sent"])
    return out


def test_two_paths_aggregates_over_both_paths_with_matching_tokens() -> None:
    result, recs = _run(_small("mptcp-two-paths", 4 * MIB))
    assert result.ok, result.transfers[0].to_dict()
    keys = {r.node: r.data for r in recs if r.name == "key_updated" and r.data["remote_key"]}
    assert keys["h1"]["remote_token"] == keys["h2"]["local_token"]
    assert keys["h2"]["remote_token"] == keys["h1"]["local_token"]
    carried = _closed_bytes(recs, "h1")
    assert len([n for n in carried.values() if n > 256 * 1024]) >= 2, carried
    added = [r.data["address_added"] for r in recs if "address_added" in r.data]
    assert "10.0.4.2" in added


def test_path_failure_reinjects_and_loses_no_byte() -> None:
    result, recs = _run(_small("path-failure", 12 * MIB))
    assert result.ok, result.transfers[0].to_dict()
    reinjected = [r.data["reinjected"] for r in recs if "reinjected" in r.data]
    assert any(x["why"] == "retransmission timeout" for x in reinjected)


@pytest.mark.parametrize(
    ("name", "client_reason", "server_reason"),
    [
        ("option-stripper", "no MP_CAPABLE in the SYN/ACK", "no MP_CAPABLE in the SYN"),
        (
            "option-stripper-late",
            "data acknowledged without a Data ACK",
            "the client's keys never arrived (third ACK without MP_CAPABLE)",
        ),
    ],
)
def test_option_stripping_falls_back_to_tcp_byte_exact(name: str, client_reason: str, server_reason: str) -> None:
    result, recs = _run(_small(name))
    assert result.ok, result.transfers[0].to_dict()
    reasons = {r.node: r.data["fallback"] for r in recs if "fallback" in r.data}
    assert reasons == {"h1": client_reason, "h2": server_reason}


def test_backup_subflows_stay_idle_while_the_primary_works() -> None:
    result, recs = _run(_small("backup-path", 4 * MIB))
    assert result.ok
    backups = {r.data["subflow"] for r in recs if r.node == "h1" and r.data.get("backup") and "subflow" in r.data}
    assert backups and all(s.startswith("10.0.3.1") for s in backups)
    carried = _closed_bytes(recs, "h1")
    assert all(carried.get(s, 0) == 0 for s in backups), carried


def test_handover_moves_the_transfer_to_the_backup_path() -> None:
    result, recs = _run(_small("handover", 8 * MIB))
    assert result.ok, result.transfers[0].to_dict()
    carried = _closed_bytes(recs, "h1")
    backup_bytes = sum(n for s, n in carried.items() if s.startswith("10.0.3.1"))
    assert backup_bytes > 2 * MIB, carried


def test_a_flipped_byte_with_dss_checksums_resets_the_subflow_and_nothing_corrupted_arrives() -> None:
    result, recs = _run(_small("mptcp-checksum-tamper", 4 * MIB))
    assert result.ok, result.transfers[0].to_dict()  # SHA-256 matches: the bad mapping was never delivered
    assert "DSS checksum failed" in [r.data["reason"] for r in recs if r.name == "error"]


def test_a_plain_tcp_server_gives_a_byte_exact_fallback() -> None:
    sc = replace(_small("mptcp-two-paths"), transfers=(MptcpTransfer(size_bytes=MIB, server=None),))
    result, recs = _run(sc)
    assert result.ok
    assert [r.data["fallback"] for r in recs if "fallback" in r.data] == ["no MP_CAPABLE in the SYN/ACK"]


def test_same_seed_same_trace() -> None:
    sc = _small("mptcp-two-paths", MIB // 2)
    a = [(r.t, r.node, r.layer, r.name, r.data) for r in run_scenario(sc, seed=4, pcaps=False).network.tracer.records]
    b = [(r.t, r.node, r.layer, r.name, r.data) for r in run_scenario(sc, seed=4, pcaps=False).network.tracer.records]
    assert a == b


def test_the_path_manager_reacts_to_its_own_link_going_down_and_up() -> None:
    from lab.scenario import LinkEvent

    sc = replace(
        _small("mptcp-two-paths", 8 * MIB),
        link_events=(LinkEvent(at_s=0.6, link="h1-r2", up=False), LinkEvent(at_s=1.2, link="h1-r2", up=True)),
    )
    result, recs = _run(sc)
    assert result.ok, result.transfers[0].to_dict()
    h1 = [r for r in recs if r.node == "h1"]
    assert [r.data["up"] for r in h1 if r.data.get("address") == "10.0.3.1"] == [False, True]
    closed = [r for r in h1 if r.data.get("to") == "CLOSED" and r.data["subflow"].startswith("10.0.3.1")]
    assert closed and closed[0].data["reason"] == "local address went down"
    sent = [o for r in h1 if r.name == "segment_sent" for o in r.data["mptcp"]]
    assert any(o["subtype"] == "REMOVE_ADDR" for o in sent)
    rejoined = [
        r for r in h1 if r.data.get("to") == "ESTABLISHED" and r.data["subflow"].startswith("10.0.3.1") and r.t > 1.2
    ]
    assert rejoined
    # the peer heard the REMOVE_ADDR
    assert any("address_removed" in r.data for r in recs if r.node == "h2")
