"""TCP-ENO negotiation rules (RFC 8547 §4.2-§4.6): roles, TEP selection, fallback reasons."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.eno.rules import (
    EnoAgreed,
    EnoFailed,
    FallbackReason,
    Role,
    choose_tep,
    negotiate,
    negotiated_tep,
    role_for,
)
from lab.wire.eno import GlobalSuboption, SynEnoOption, TepSuboption, decode_syn_eno_option

X, Y, Z = 0x21, 0x23, 0x24


def syn(*teps: int, b: bool = False, a: bool = False, explicit_global: bool = True) -> SynEnoOption:
    glob = (GlobalSuboption(passive_role=b, application_aware=a),) if (b or a or explicit_global) else ()
    return SynEnoOption(glob + tuple(TepSuboption(t) for t in teps))


def agreed(outcome: object) -> EnoAgreed:
    assert type(outcome) is EnoAgreed, outcome
    return outcome


# --- roles (RFC 8547 §4.3) ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local_b", "remote_b", "role"),
    [
        (False, True, Role.A),  # active opener vs passive opener: the normal case
        (True, False, Role.B),
        (False, False, None),  # simultaneous open, nobody set b
        (True, True, None),  # both set b, or an active opener with b = 1 meets a passive opener
    ],
)
def test_role_from_b_bits(local_b: bool, remote_b: bool, role: Role | None) -> None:
    assert role_for(GlobalSuboption(passive_role=local_b), GlobalSuboption(passive_role=remote_b)) is role


def test_missing_global_suboption_means_b_0() -> None:
    active = SynEnoOption((TepSuboption(Y),))  # RFC 8547 Figure 9: no explicit global suboption
    passive = syn(Y, b=True)
    assert agreed(negotiate(active, passive)).role is Role.A
    assert agreed(negotiate(passive, active)).role is Role.B


# --- TEP selection (RFC 8547 §4.5) -------------------------------------------------------------------

SELECTION = [
    pytest.param((X, Y), (Y,), Y, id="figure-9"),
    pytest.param((X,), (Y,), None, id="disjoint"),
    pytest.param((), (Y,), None, id="a-vacuous"),
    pytest.param((X, Y), (), None, id="b-vacuous"),
    pytest.param((X, Y, Z), (Z, X), X, id="last-of-b-wins"),
    pytest.param((Z, X), (X, Z), Z, id="a-order-irrelevant"),
    pytest.param((X, Z), (X, Y), X, id="skip-b-teps-a-did-not-offer"),
    pytest.param((Y, X), (X, Y, Z), Y, id="figure-12-simultaneous-open"),
    pytest.param((X, X), (X,), X, id="repeated-in-a"),
]


@pytest.mark.parametrize(("a_teps", "b_teps", "expected"), SELECTION)
def test_negotiated_tep(a_teps: tuple[int, ...], b_teps: tuple[int, ...], expected: int | None) -> None:
    option_a, option_b = syn(*a_teps), syn(*b_teps, b=True)
    tep = negotiated_tep(option_a, option_b)
    assert (tep.tep_id if tep else None) == expected
    for local, remote in ((option_a, option_b), (option_b, option_a)):
        outcome = negotiate(local, remote)
        if expected is None:
            assert outcome == EnoFailed(FallbackReason.NO_COMMON_TEP)
        else:
            assert agreed(outcome).tep_id == expected


def test_v_bits_do_not_affect_the_match() -> None:
    # RFC 8548 §3.2: A offers resumption (v = 1), B answers with fresh key exchange (v = 0).
    option_a = SynEnoOption((TepSuboption(Y, v=True, data=bytes(9)),))
    option_b = syn(Y, b=True)
    outcome = agreed(negotiate(option_a, option_b))
    assert outcome.tep == TepSuboption(Y)  # B's suboption, as B sent it
    assert outcome.tep_a == (TepSuboption(Y, v=True, data=bytes(9)),)
    assert outcome.tep.byte == 0x23  # the session ID's first byte


def test_tep_validator_can_reject_the_last_candidate() -> None:
    option_a = syn(X, Y)
    option_b = syn(X, Y, b=True)
    seen = []

    def no_y(tep_id: int, from_a: tuple[TepSuboption, ...], from_b: tuple[TepSuboption, ...]) -> bool:
        seen.append((tep_id, from_a, from_b))
        return tep_id != Y

    assert negotiated_tep(option_a, option_b, is_valid=no_y) == TepSuboption(X)
    assert seen == [(Y, (TepSuboption(Y),), (TepSuboption(Y),)), (X, (TepSuboption(X),), (TepSuboption(X),))]
    assert negotiate(option_a, option_b, is_valid=lambda *_: False) == EnoFailed(FallbackReason.NO_COMMON_TEP)


@pytest.mark.parametrize(
    ("offered", "supported", "answer"),
    [((X, Y), (Y, X), Y), ((X, Y), (X, Y), X), ((X,), (Y, Z), None), ((), (X,), None)],
)
def test_passive_opener_answers_with_its_preferred_common_tep(
    offered: tuple[int, ...], supported: tuple[int, ...], answer: int | None
) -> None:
    assert choose_tep(syn(*offered), supported) == answer


# --- the whole rule set (RFC 8547 §4.6) ----------------------------------------------------------------

MATRIX = [
    pytest.param(syn(X, Y), syn(Y, b=True), Role.A, Y, id="active-sees-passive"),
    pytest.param(syn(Y, b=True), syn(X, Y), Role.B, Y, id="passive-sees-active"),
    pytest.param(syn(X), syn(Y, b=True), FallbackReason.NO_COMMON_TEP, None, id="disjoint"),
    pytest.param(syn(X, Y), syn(Y), FallbackReason.SAME_ROLE, None, id="simultaneous-both-b0"),
    pytest.param(syn(X, Y, b=True), syn(Y, b=True), FallbackReason.SAME_ROLE, None, id="active-b1-meets-passive"),
    pytest.param(syn(Y, X), syn(X, Y, Z, b=True), Role.A, Y, id="simultaneous-one-b1"),
    pytest.param(syn(X, Y, Z, b=True), syn(Y, X), Role.B, Y, id="simultaneous-one-b1-other-side"),
    pytest.param(None, syn(Y, b=True), FallbackReason.NO_ENO_OPTION, None, id="no-local-option"),
    pytest.param(syn(Y), None, FallbackReason.NO_ENO_OPTION, None, id="synack-without-eno"),
    pytest.param(syn(), syn(b=True), FallbackReason.NO_COMMON_TEP, None, id="vacuous-both"),
]


@pytest.mark.parametrize(("local", "remote", "expected", "tep"), MATRIX)
def test_negotiation_matrix(
    local: SynEnoOption | None, remote: SynEnoOption | None, expected: Role | FallbackReason, tep: int | None
) -> None:
    outcome = negotiate(local, remote)
    if isinstance(expected, FallbackReason):
        assert outcome == EnoFailed(expected)
    else:
        assert agreed(outcome).role is expected
        assert agreed(outcome).tep_id == tep


@pytest.mark.parametrize(
    ("remote_a", "mandatory", "ok"), [(True, True, True), (False, True, False), (False, False, True)]
)
def test_mandatory_application_aware_mode(remote_a: bool, mandatory: bool, ok: bool) -> None:
    local = syn(Y, a=True)
    remote = syn(Y, b=True, a=remote_a)
    outcome = negotiate(local, remote, mandatory_application_aware=mandatory)
    if ok:
        assert agreed(outcome).local_application_aware is True
        assert agreed(outcome).remote_application_aware is remote_a
    else:
        assert outcome == EnoFailed(FallbackReason.NOT_APPLICATION_AWARE)


def test_second_global_suboption_is_ignored() -> None:
    remote = decode_syn_eno_option(bytes.fromhex("4505010023"))  # b = 1 first, then 0x00
    assert agreed(negotiate(syn(Y), remote)).role is Role.A
    remote = decode_syn_eno_option(bytes.fromhex("4505000123"))  # 0x00 first: role B not claimed
    assert negotiate(syn(Y), remote) == EnoFailed(FallbackReason.SAME_ROLE)


def test_reserved_bits_are_ignored() -> None:
    remote = decode_syn_eno_option(bytes.fromhex("45041d23"))  # z bits set, b = 1
    assert agreed(negotiate(syn(Y), remote)).role is Role.A


# --- both ends reach the same result -------------------------------------------------------------------

teps = st.lists(st.sampled_from([0x20, X, 0x22, Y, Z, 0x7F]), max_size=5)


@given(teps, teps, st.booleans(), st.booleans(), st.booleans(), st.booleans())
def test_both_hosts_agree(a_teps: list[int], b_teps: list[int], b1: bool, b2: bool, a1: bool, a2: bool) -> None:
    host1, host2 = syn(*a_teps, b=b1, a=a1), syn(*b_teps, b=b2, a=a2)
    one, two = negotiate(host1, host2), negotiate(host2, host1)
    assert type(one) is type(two)
    if isinstance(one, EnoFailed):
        assert one == two
        return
    assert isinstance(two, EnoAgreed)
    assert {one.role, two.role} == {Role.A, Role.B}
    assert one.tep == two.tep
    assert one.tep_a == two.tep_a
    assert (one.local_application_aware, one.remote_application_aware) == (
        two.remote_application_aware,
        two.local_application_aware,
    )
    option_b = host1 if one.role is Role.B else host2
    assert one.tep in option_b.teps  # always taken from host B's option
