"""The subflow TRANSITIONS table (lab.mptcp.state) and the connection's use of it, under Hypothesis."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from lab.mptcp.state import TRANSITIONS, SubflowInput, SubflowState
from tests.mptcp.pair import PATH_A, PATH_B, MptcpPair

S = SubflowState
I = SubflowInput  # noqa: E741


@given(st.sampled_from(SubflowState), st.sampled_from(SubflowInput))
def test_table_maps_only_to_states(state: SubflowState, inp: SubflowInput) -> None:
    new = TRANSITIONS.get((state, inp))
    assert new is None or isinstance(new, SubflowState)


@given(st.sampled_from(SubflowState), st.sampled_from(SubflowInput))
def test_set_subflow_state_follows_the_table(state: SubflowState, inp: SubflowInput) -> None:
    """_set_subflow_state() moves exactly as the table says and records each move; a pair the
    table does not list changes nothing and records nothing."""
    pair = MptcpPair()
    pair.handshake(now=0.0)
    mp = pair.client
    sf = mp._by_addr[PATH_A]
    sf.state = state
    records = pair.client_tracer.records
    before = len(records)
    mp._set_subflow_state(sf, inp, 1.0)
    expected = TRANSITIONS.get((state, inp))
    if expected is None or expected is state:
        assert sf.state is state
        assert len(records) == before
    else:
        assert sf.state is expected
        (rec,) = records[before:]
        assert (rec.layer, rec.name) == ("mptcp", "state_updated")
        assert (rec.data["from"], rec.data["to"]) == (state.value, expected.value)


def test_closed_is_final() -> None:
    assert not [k for k in TRANSITIONS if k[0] is S.CLOSED]


def test_every_live_state_can_be_terminated() -> None:
    assert all(TRANSITIONS[(s, I.TERMINATED)] is S.CLOSED for s in S if s is not S.CLOSED)


def test_an_active_join_passes_pre_established_and_records_states_by_name() -> None:
    pair = MptcpPair()
    pair.handshake(now=0.0)
    pair.client.open_subflow(PATH_B, now=0.5)
    pair.exchange(now=0.5)
    moves = [
        (r.data["from"], r.data["to"])
        for r in pair.records("client", "state_updated")
        if r.data.get("subflow") == str(PATH_B)
    ]
    assert moves == [(None, "SYN"), ("SYN", "PRE_ESTABLISHED"), ("PRE_ESTABLISHED", "ESTABLISHED")]
