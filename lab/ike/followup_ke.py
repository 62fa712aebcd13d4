"""Additional key exchanges in CREATE_CHILD_SA: the IKE_FOLLOWUP_KE exchange (RFC 9370 §2.2.4), its building blocks.

A Child SA rekey (with PFS) or an IKE SA rekey of an SA that ran additional
key exchanges offers the same ADDKE rounds in its CREATE_CHILD_SA proposals.
A responder that takes them answers with its KE and an
N(ADDITIONAL_KEY_EXCHANGE) whose data is a link only it understands; the
initiator then runs one IKE_FOLLOWUP_KE exchange (type 44) per round, in
ADDKE order, each echoing the link it was last given::

    HDR(CREATE_CHILD_SA), SK {SA, Ni, KEi [, TSi, TSr]}  -->
                 <--  HDR(CREATE_CHILD_SA), SK {SA, Nr, KEr [, TSi, TSr], N(ADDITIONAL_KEY_EXCHANGE)(link1)}
    HDR(IKE_FOLLOWUP_KE), SK {KEi(1), N(ADDITIONAL_KEY_EXCHANGE)(link1)}  -->
                 <--  HDR(IKE_FOLLOWUP_KE), SK {KEr(1), N(ADDITIONAL_KEY_EXCHANGE)(link2)}
    ...
    HDR(IKE_FOLLOWUP_KE), SK {KEi(n), N(ADDITIONAL_KEY_EXCHANGE)(link n)}  -->
                 <--  HDR(IKE_FOLLOWUP_KE), SK {KEr(n)}          the last response carries no link

Every message goes over the existing IKE SA, under its keys, with the next
message IDs of its initiator as any request would (for an IKE SA rekey the
new SA exists only after the last round). Nothing is installed before the
last round; then the keys mix every secret, SK(0) of CREATE_CHILD_SA
first (lab.ike.multi_ke.derive_child_sa_keys_multi, rekey_skeyseed_multi)::

    KEYMAT   = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))
    SKEYSEED = prf(SK_d (old), SK(0) | Ni | Nr | SK(1) | ... | SK(n))

The link exists because the window may be larger than one: other
exchanges, the peer's requests too, may come between CREATE_CHILD_SA and
its IKE_FOLLOWUP_KE exchanges, so the responder finds its state by the
link and not by "the last exchange". A request whose link it does not know
(never given, used already, or its state dropped after waiting too long
for the next round: the RFC suggests 5 to 20 seconds) is answered with the
error notify STATE_NOT_FOUND; the initiator then gives this CREATE_CHILD_SA
up (and may start it over). Any other error, or unusable KE data, ends the
series the same way.

Peers that do not do this: an RFC 7296 responder finds transform types 6..12
unknown and must reject those proposals (RFC 7296 §3.3.6), so the
initiator offers each proposal twice, with the ADDKE rounds first and
without them after; such a peer takes a plain one and the rekey is a
classic one.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace

from lab.errors import RemoteProtocolError
from lab.ike.multi_ke import (
    ADDITIONAL_KEY_EXCHANGE,
    ADDKE_TRANSFORM_TYPES,
    KE_NONE,
    offered_additional_key_exchanges,
    select_additional_key_exchanges,
    with_additional_key_exchanges,
)
from lab.wire.ikev2 import NotifyPayload, Payload, Proposal, SaPayload, Transform

LINK_LEN = 8  # our links: random octets (the RFC leaves their form to the responder)
FOLLOWUP_STATE_TIMEOUT_S = 20.0  # a responder waits this long for the next round (RFC 9370 §2.2.4: 5-20 s)


# --- proposals --------------------------------------------------------------------------------------------


def rekey_offer(proposals: Sequence[Proposal], methods: Sequence[int]) -> tuple[Proposal, ...]:
    """Each proposal with one ADDKE round per method (required, no NONE), then each again without them.

    The plain copies are numbered after the hybrid ones, so a responder that
    does not know ADDKE transforms (and must reject those proposals) can
    still take one. Without ``methods`` the proposals come back as they were.
    """
    if not methods:
        return tuple(proposals)
    rounds = [(m,) for m in methods]
    hybrid = tuple(with_additional_key_exchanges(p, rounds) for p in proposals)
    top = max((p.number for p in proposals), default=0)
    plain = tuple(replace(p, number=top + i) for i, p in enumerate(proposals, 1))
    return hybrid + plain


def without_addke(proposal: Proposal) -> bool:
    return not any(t.transform_type in ADDKE_TRANSFORM_TYPES for t in proposal.transforms)


def acceptable_addke(
    sa: SaPayload, *, accepted: Collection[int], enabled: bool, with_ke: bool
) -> tuple[SaPayload, dict[int, dict[int, int]]]:
    """The peer's proposals we could take, and for each (by number) our pick per ADDKE type.

    A proposal without ADDKE transforms is kept as it is. One with them is
    kept when every round gets a method from ``accepted`` (or NONE where
    offered): ``select_additional_key_exchanges``. Without ``enabled`` (we
    do not run IKE_FOLLOWUP_KE) they are dropped, as RFC 7296 §3.3.6 has a
    peer drop proposals with unknown transform types; without a KE payload
    (no KE of Transform Type 4 in CREATE_CHILD_SA) only all-NONE rounds fit.
    """
    kept: list[Proposal] = []
    picks: dict[int, dict[int, int]] = {}
    for proposal in sa.proposals:
        if without_addke(proposal):
            kept.append(proposal)
            picks[proposal.number] = {}
            continue
        if not enabled:
            continue
        chosen = select_additional_key_exchanges(proposal, accepted if with_ke else ())
        if chosen is None:
            continue
        kept.append(proposal)
        picks[proposal.number] = chosen
    return SaPayload(tuple(kept)), picks


def answer_with_addke(proposal: Proposal, picks: dict[int, int]) -> Proposal:
    """A responder's chosen proposal with one transform per ADDKE type it picked (NONE included)."""
    return replace(proposal, transforms=proposal.transforms + tuple(Transform(t, m) for t, m in sorted(picks.items())))


def methods_of(picks: dict[int, int]) -> tuple[int, ...]:
    """The rounds that take place, in ADDKE order (NONE rounds do not)."""
    return tuple(m for _, m in sorted(picks.items()) if m != KE_NONE)


def chosen_methods(sa: SaPayload | None, offered: Sequence[Proposal]) -> tuple[int, ...]:
    """The additional key exchanges the responder's chosen proposal asks for, checked against our offer.

    Raises RemoteProtocolError when it names a type twice or drops a round
    we offered (a proposal we sent with ADDKE rounds comes back with all of
    them, or it was not the one we offered). The transforms themselves are
    checked by lab.ike.proposals.check_chosen.
    """
    if sa is None or len(sa.proposals) != 1:
        raise RemoteProtocolError("the answer needs exactly one proposal")
    chosen = sa.proposals[0]
    ours = next((p for p in offered if p.number == chosen.number), None)
    if ours is None:
        raise RemoteProtocolError(f"chosen proposal number {chosen.number} was not offered")
    wanted = offered_additional_key_exchanges(ours)
    got = offered_additional_key_exchanges(chosen)
    if any(len(ids) != 1 for ids in got.values()):
        raise RemoteProtocolError("more than one transform of an ADDKE type chosen")
    if set(got) != set(wanted):
        raise RemoteProtocolError(
            f"chosen proposal {chosen.number} answers ADDKE types {sorted(got)}, we offered {sorted(wanted)}"
        )
    for transform_type, (method,) in got.items():
        if method not in wanted[transform_type]:
            number = transform_type - ADDKE_TRANSFORM_TYPES[0] + 1
            raise RemoteProtocolError(f"ADDKE{number} method {method} not offered")
    return tuple(m for _, (m,) in sorted(got.items()) if m != KE_NONE)


# --- the link ------------------------------------------------------------------------------------------------


def link_notify(link: bytes) -> NotifyPayload:
    """N(ADDITIONAL_KEY_EXCHANGE): Protocol ID 0, no SPI, the link as data."""
    return NotifyPayload(ADDITIONAL_KEY_EXCHANGE, link)


def find_link(payloads: Sequence[Payload]) -> bytes | None:
    """The data of the first N(ADDITIONAL_KEY_EXCHANGE), or None."""
    return next(
        (p.data for p in payloads if isinstance(p, NotifyPayload) and p.notify_type == ADDITIONAL_KEY_EXCHANGE), None
    )


# --- state of one series -------------------------------------------------------------------------------------


@dataclass
class FollowupInitiator:
    """Our series under way: ``finish(additional_secrets, now)`` after the last round, ``fail(notify, why, now)``."""

    purpose: str  # "child" or "ike_rekey"
    methods: tuple[int, ...]
    link: bytes
    finish: Callable[[list[bytes], float], None]
    fail: Callable[[int | None, str, float], None]
    secrets: list[bytes] = field(default_factory=list)
    private: bytes = b""

    @property
    def done(self) -> int:
        return len(self.secrets)


@dataclass
class FollowupResponder:
    """The peer's series we answer, found by ``link``; ``finish`` runs once the last response is out."""

    purpose: str
    methods: tuple[int, ...]
    link: bytes
    expires_at: float
    finish: Callable[[list[bytes], float], None]
    secrets: list[bytes] = field(default_factory=list)

    @property
    def done(self) -> int:
        return len(self.secrets)
