"""TCP-ENO negotiation rules as pure functions (RFC 8547 §4.2-§4.6).

No endpoint and no state: given the two SYN-form ENO options a host has
seen (its own and its peer's), these functions say who plays role A and B,
which TEP was negotiated, or why ENO fell back to plain TCP. An endpoint
applies them once it has both SYNs; it still has to check that the peer's
first non-SYN segment carries an ENO option (RFC 8547 §4.6) itself.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from lab.wire.eno import GlobalSuboption, Role, SynEnoOption, TepSuboption


class FallbackReason(enum.Enum):
    """Why ENO was disabled (RFC 8547 §4.6); the connection continues as plain TCP."""

    NO_ENO_OPTION = "no_eno_option"  # absent, or more than one in the SYN (§4.1)
    MALFORMED = "malformed"  # ill-formed SYN-form option (§4.4)
    SAME_ROLE = "same_role"  # both hosts sent the same b bit (§4.3)
    NOT_APPLICATION_AWARE = "not_application_aware"  # mandatory application-aware mode, peer a = 0 (§4.2)
    NO_COMMON_TEP = "no_common_tep"  # no valid TEP identifier (§4.5), includes vacuous options (§4.6)
    NO_NON_SYN_ENO = "no_non_syn_eno"  # host A's first non-SYN segment had no ENO option (§4.6)
    SYN_TIMEOUTS = "syn_timeouts"  # our SYNs with ENO went unanswered: retried without (opportunistic only)


# A TEP's own say on validity (RFC 8547 §4.5 items 2 and 3): given the TEP
# identifier and the suboptions host A and host B sent with it, is it usable?
TepValidator = Callable[[int, tuple[TepSuboption, ...], tuple[TepSuboption, ...]], bool]


@dataclass(frozen=True, slots=True)
class EnoAgreed:
    """ENO succeeded (pending the peer's non-SYN ENO option)."""

    role: Role  # the local host's role
    tep: TepSuboption  # the negotiated TEP as host B sent it (v bit and data included)
    tep_a: tuple[TepSuboption, ...]  # host A's suboptions with the same TEP identifier
    local_application_aware: bool
    remote_application_aware: bool

    @property
    def tep_id(self) -> int:
        return self.tep.tep_id


@dataclass(frozen=True, slots=True)
class EnoFailed:
    reason: FallbackReason


EnoOutcome = EnoAgreed | EnoFailed


def role_for(local: GlobalSuboption, remote: GlobalSuboption) -> Role | None:
    """The local host's role from the two b bits, or None if both sent the same b (RFC 8547 §4.3).

    This is also the whole of the simultaneous-open rule: exactly one side
    must have set b = 1, there is no other tie-break.
    """
    if local.passive_role == remote.passive_role:
        return None
    return Role.B if local.passive_role else Role.A


def negotiated_tep(
    option_a: SynEnoOption, option_b: SynEnoOption, *, is_valid: TepValidator | None = None
) -> TepSuboption | None:
    """The last valid TEP in host B's option that host A also offered (RFC 8547 §4.5), or None.

    Host B lists TEPs in increasing priority; host A's order does not matter.
    ``v`` bits play no part in the match (RFC 8548 §3.2). ``is_valid`` lets
    the TEP reject suboption data or repetitions; by default every common TEP
    identifier is valid.
    """
    a_teps = option_a.teps
    offered = {sub.tep_id for sub in a_teps}
    b_teps = option_b.teps
    for sub in reversed(b_teps):
        if sub.tep_id not in offered:
            continue
        if is_valid is None:
            return sub
        same_a = tuple(s for s in a_teps if s.tep_id == sub.tep_id)
        same_b = tuple(s for s in b_teps if s.tep_id == sub.tep_id)
        if is_valid(sub.tep_id, same_a, same_b):
            return sub
    return None


def choose_tep(option_a: SynEnoOption, supported: Sequence[int]) -> int | None:
    """What a passive opener (host B) answers with: its most preferred TEP that A offered.

    ``supported`` lists B's TEP identifiers, most preferred first. RFC 8547
    §4.5 says B SHOULD send just this one TEP in its SYN-ACK.
    """
    offered = {sub.tep_id for sub in option_a.teps}
    for tep_id in supported:
        if tep_id in offered:
            return tep_id
    return None


def negotiate(
    local: SynEnoOption | None,
    remote: SynEnoOption | None,
    *,
    mandatory_application_aware: bool = False,
    is_valid: TepValidator | None = None,
) -> EnoOutcome:
    """Apply RFC 8547 §4.6 to the SYN-form ENO options this host sent and received.

    Works the same for both ends and for simultaneous open: roles come from
    the b bits alone. ``None`` stands for "no (usable) ENO option" in that SYN.
    """
    if local is None or remote is None:
        return EnoFailed(FallbackReason.NO_ENO_OPTION)
    local_global = local.global_suboption
    remote_global = remote.global_suboption
    role = role_for(local_global, remote_global)
    if role is None:
        return EnoFailed(FallbackReason.SAME_ROLE)
    if mandatory_application_aware and not remote_global.application_aware:
        return EnoFailed(FallbackReason.NOT_APPLICATION_AWARE)
    option_a, option_b = (local, remote) if role is Role.A else (remote, local)
    tep = negotiated_tep(option_a, option_b, is_valid=is_valid)
    if tep is None:
        return EnoFailed(FallbackReason.NO_COMMON_TEP)
    return EnoAgreed(
        role=role,
        tep=tep,
        tep_a=tuple(s for s in option_a.teps if s.tep_id == tep.tep_id),
        local_application_aware=local_global.application_aware,
        remote_application_aware=remote_global.application_aware,
    )
