"""A firewall drops every segment carrying option 69 (``--tcp-option 69 -j DROP``): an
opportunistic ENO client retries its SYN without ENO after ``syn_timeouts_before_fallback``
timeouts and the transfer completes in the clear, byte-exact; a mandatory client never does."""

from __future__ import annotations

import pytest

from lab.eno.extension import EnoConfig
from lab.errors import ConfigError
from lab.scenario import Scenario, run_scenario
from lab.scenario.eno import EncryptedTransfer
from lab.scenario.middlebox import DropTcpOption
from lab.wire.eno import ENO_KIND, EXPERIMENTAL_KIND


def _scenario(transfer: EncryptedTransfer, *, time_limit_s: float = 60.0) -> Scenario:
    return Scenario(
        name="eno-syn-dropped",
        description="r1 drops segments carrying ENO",
        topology="single-path",
        middleboxes=(("r1", lambda: DropTcpOption([ENO_KIND, EXPERIMENTAL_KIND])),),
        transfers=(transfer,),
        time_limit_s=time_limit_s,
    )


@pytest.mark.parametrize("timeouts", [1, 2])
def test_an_opportunistic_client_retries_without_eno_after_its_syn_timeouts(timeouts: int) -> None:
    client = EnoConfig(syn_timeouts_before_fallback=timeouts)
    result = run_scenario(
        _scenario(EncryptedTransfer(name="retry", size_bytes=64 * 1024, client=client, expect="fallback")),
        seed=1,
        pcaps=False,
    )
    facts = result.transfers[0].to_dict()
    assert result.ok and facts["sha256_match"], facts
    assert facts["client_reason"] == "syn_timeouts"
    recs = result.network.tracer.records
    fallback = [r for r in recs if r.node == "h1" and r.layer == "eno" and r.data.get("to") == "fallback"]
    assert [r.data["reason"] for r in fallback] == ["syn_timeouts"]
    syn_timeouts = [r for r in recs if r.node == "h1" and r.layer == "tcp" and r.data.get("timeout") == "syn"]
    assert [r.data["backoff"] for r in syn_timeouts] == list(range(1, timeouts + 1))
    assert fallback[0].t == syn_timeouts[-1].t  # the SYN sent at that timeout is the first without ENO


def test_a_mandatory_client_never_retries_without_eno() -> None:
    mandatory = EnoConfig(policy="mandatory")
    result = run_scenario(
        _scenario(EncryptedTransfer(name="m", size_bytes=4096, client=mandatory, expect="refused"), time_limit_s=300.0),
        seed=1,
        pcaps=False,
    )
    recs = result.network.tracer.records
    assert not [r for r in recs if r.node == "h1" and r.layer == "eno" and r.data.get("to") == "fallback"]
    assert result.transfers[0].to_dict()["bytes_received"] == 0
    syn_sent = [
        r for r in recs if r.node == "h1" and r.layer == "tcp" and r.name == "segment_sent" and r.data["flags"] == "S"
    ]
    assert len(syn_sent) == 7  # the SYN and its 6 retries, every one with ENO (all dropped)


def test_a_bad_retry_count_is_refused() -> None:
    with pytest.raises(ConfigError, match="syn_timeouts_before_fallback"):
        EnoConfig(syn_timeouts_before_fallback=0)
