"""A forged infinite mapping (a DSS rewritten on path to Data-Level Length 0, RFC 8684 §3.7).

An infinite mapping is only valid on the one subflow a connection ever had; with DSS
checksums one that no MP_FAIL asked for is a mapping that does not check. Whatever the
receiver decides, the application gets exactly the bytes that were sent (SHA-256).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from lab.scenario import get_scenario, run_scenario
from lab.scenario.middlebox import ForgeInfiniteMapping
from lab.scenario.mptcp import MptcpTransfer

MIB = 1024 * 1024


def _run(base: str, router: str, *, checksum: bool, nth: int, seed: int, client: dict | None = None):
    sc = replace(
        get_scenario(base),
        middleboxes=((router, lambda: ForgeInfiniteMapping(dst_port=5001, nth=nth)),),
        transfers=(MptcpTransfer(size_bytes=2 * MIB, client={"checksum": checksum, **(client or {})}),),
        time_limit_s=60.0,
    )
    result = run_scenario(sc, seed=seed, pcaps=False)
    recs = result.network.tracer.records
    assert any(r.layer == "middlebox" and r.data.get("infinite_mapping") for r in recs)  # the forgery happened
    transfer = result.transfers[0].to_dict()
    assert transfer["sha256_match"] and transfer["bytes_received"] == 2 * MIB, transfer
    return [r for r in recs if r.layer == "mptcp"]


@pytest.mark.parametrize(("checksum", "nth", "seed"), [(True, 50, 1), (False, 50, 1), (True, 7, 3)])
def test_an_infinite_mapping_with_several_subflows_resets_that_subflow(checksum: bool, nth: int, seed: int) -> None:
    recs = _run("mptcp-two-paths", "r2", checksum=checksum, nth=nth, seed=seed, client={"path_manager": "fullmesh"})
    errors = [r.data["reason"] for r in recs if r.node == "h2" and r.name == "error"]
    assert "infinite mapping while several subflows are open" in errors
    assert not [r for r in recs if "fallback" in r.data]  # MPTCP carried on over the other subflows
    resets = [r for r in recs if r.node == "h1" and r.data.get("to") == "CLOSED"]
    assert any("middlebox interference" in r.data["reason"] for r in resets), [r.data for r in resets]


def test_an_unasked_infinite_mapping_with_checksums_is_a_failed_mapping() -> None:
    recs = _run("mptcp-mpfail-fallback", "r1", checksum=True, nth=50, seed=1)
    errors = [r.data["reason"] for r in recs if r.node == "h2" and r.name == "error"]
    assert "infinite mapping without our MP_FAIL" in errors
    assert any(r.data.get("mp_fail") is not None and r.data.get("direction") == "sent" for r in recs if r.node == "h2")


def test_an_infinite_mapping_on_the_only_subflow_without_checksums_falls_back_on_both_ends() -> None:
    recs = _run("mptcp-mpfail-fallback", "r1", checksum=False, nth=50, seed=1)
    fallback = {r.node: r.data["fallback"] for r in recs if "fallback" in r.data}
    assert fallback == {"h2": "infinite mapping from peer", "h1": "the peer's segments carry no MPTCP option any more"}
