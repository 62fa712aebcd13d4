"""TCP-ENO split decisions (RFC 8547 §4.6-§4.8): a box strips ENO from non-SYN segments only,
or mangles the options. Host B then disables ENO while host A goes on with tcpcrypt; B must
not pass A's TEP handshake up as data. Both ends end alike, or the connection is reset, and
no application ever gets a byte that was not sent."""

from __future__ import annotations

import pytest

from lab.scenario import Scenario, run_scenario
from lab.scenario.eno import EncryptedTransfer
from lab.scenario.middlebox import MangleTcpOptions, StripTcpOptions
from lab.wire.eno import ENO_KIND, EXPERIMENTAL_KIND


def _run(middlebox, *, size: int = 64 * 1024):
    sc = Scenario(
        name="eno-split",
        description="ENO options altered on the way",
        topology="single-path",
        middleboxes=(("r1", middlebox),),
        transfers=(EncryptedTransfer(name="split", size_bytes=size, expect="fallback"),),
        time_limit_s=30.0,
    )
    result = run_scenario(sc, seed=1, pcaps=False)
    return result.transfers[0].to_dict(), result.network.tracer.records


def test_eno_stripped_from_non_syn_segments_resets_instead_of_delivering_init1() -> None:
    facts, recs = _run(lambda: StripTcpOptions([ENO_KIND, EXPERIMENTAL_KIND], when="after_handshake"))
    assert facts["corrupted_bytes_delivered"] == 0 and facts["bytes_received"] == 0, facts  # was 79: INIT1
    assert facts["server_outcome"] == "fallback" and facts["server_reason"] == "no_non_syn_eno"
    assert facts["client_outcome"] in ("reset", "aborted")  # never "encrypted" without B's confirmation
    errors = [r.data for r in recs if r.node == "h2" and r.layer == "eno" and r.name == "error"]
    assert [e["reason"] for e in errors] == ["split_decision"]


@pytest.mark.parametrize("seed", range(0, 150, 15))
def test_mangled_eno_options_never_leave_a_split_decision(seed: int) -> None:
    facts, _ = _run(lambda: MangleTcpOptions([ENO_KIND], when="all", probability=0.5, rng_seed=seed), size=16 * 1024)
    assert facts["corrupted_bytes_delivered"] == 0, facts
    client, server = facts["client_outcome"], facts["server_outcome"]
    same = client == server or {client, server} <= {"fallback", "plain"}
    reset = {client, server} & {"aborted", "reset", "refused"}
    assert same or reset, facts
    if client == server == "fallback":
        assert facts["sha256_match"], facts
