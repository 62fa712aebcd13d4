"""SA proposals (RFC 7296 §2.7, §3.3): what an endpoint offers, what a responder picks, what it may answer.

A :class:`Suite` is one negotiated set of transforms. Offers come from the
``IkeConfig``: one proposal per cipher, AES-GCM-16 without integrity
(RFC 5282 §8), AES-CBC with the HMAC-SHA2 integrity transforms (RFC 4868);
IKE proposals add PRFs, and DH groups where a KE payload goes with them
(IKE_SA_INIT, IKE SA rekey, Child SA rekey with PFS). ESP proposals carry
ESN "none" (extended sequence numbers are not implemented).

The responder takes the first of the peer's proposals it can accept, and in
it the first acceptable transform of each type, as the peer ordered them
(§2.7: the responder "MUST choose a single suite"). A KE payload in a group
the chosen proposal does not carry, while another acceptable one is
offered, is answered with INVALID_KE_PAYLOAD (§1.2, §1.3).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from lab.errors import RemoteProtocolError
from lab.ike.config import IkeConfig
from lab.wire.ikev2 import (
    ATTRIBUTE_KEY_LENGTH,
    DH_NONE,
    ENCR_AES_CBC,
    ENCR_AES_GCM_16,
    ESN_NONE,
    INTEG_NONE,
    PROTO_ESP,
    PROTO_IKE,
    TRANSFORM_DH,
    TRANSFORM_ENCR,
    TRANSFORM_ESN,
    TRANSFORM_INTEG,
    TRANSFORM_PRF,
    Proposal,
    SaPayload,
    Transform,
    TransformAttribute,
)

AEAD_ENCRS = (ENCR_AES_GCM_16,)
ENCR_NAMES = {ENCR_AES_GCM_16: "AES-GCM-16", ENCR_AES_CBC: "AES-CBC"}
INTEG_NAMES = {0: "NONE", 2: "HMAC_SHA1_96", 12: "HMAC_SHA2_256_128", 13: "HMAC_SHA2_384_192", 14: "HMAC_SHA2_512_256"}
PRF_NAMES = {0: "", 2: "PRF_HMAC_SHA1", 5: "PRF_HMAC_SHA2_256", 6: "PRF_HMAC_SHA2_384", 7: "PRF_HMAC_SHA2_512"}

DH_REQUIRED = "required"  # IKE_SA_INIT, IKE SA rekey: a DH transform must be chosen
DH_OPTIONAL = "optional"  # Child SA in CREATE_CHILD_SA: PFS when offered
DH_IGNORED = "ignored"  # Child SA in IKE_AUTH: DH transforms carry no meaning there (§1.2)


class InvalidKePayload(RemoteProtocolError):
    """The proposal we would choose does not carry the KE payload's group; ask for ``group`` instead."""

    def __init__(self, group: int) -> None:
        super().__init__(f"KE payload in another group than the chosen proposal's; wanted group {group}")
        self.group = group


@dataclass(frozen=True, slots=True)
class Suite:
    """One negotiated proposal: INTEG_NONE with AES-GCM, PRF 0 for ESP, DH 0 without a DH exchange."""

    protocol_id: int
    encr_id: int
    key_bits: int
    integ_id: int = INTEG_NONE
    prf_id: int = 0
    dh_group: int = 0
    spi: bytes = b""
    number: int = 1

    @property
    def aead(self) -> bool:
        return self.encr_id in AEAD_ENCRS

    def proposal(self, *, spi: bytes | None = None) -> Proposal:
        """This suite as a single proposal (a responder's answer, or a rekey offer), with ``spi`` if given."""
        transforms = [
            Transform(TRANSFORM_ENCR, self.encr_id, (TransformAttribute(ATTRIBUTE_KEY_LENGTH, self.key_bits),))
        ]
        if self.prf_id:
            transforms.append(Transform(TRANSFORM_PRF, self.prf_id))
        if not self.aead:
            transforms.append(Transform(TRANSFORM_INTEG, self.integ_id))
        if self.dh_group:
            transforms.append(Transform(TRANSFORM_DH, self.dh_group))
        if self.protocol_id == PROTO_ESP:
            transforms.append(Transform(TRANSFORM_ESN, ESN_NONE))
        return Proposal(self.number, self.protocol_id, tuple(transforms), self.spi if spi is None else spi)

    def describe(self) -> dict[str, object]:
        """The trace's view: names, key bits, group."""
        out: dict[str, object] = {"encr": ENCR_NAMES.get(self.encr_id, str(self.encr_id)), "key_bits": self.key_bits}
        if not self.aead:
            out["integ"] = INTEG_NAMES.get(self.integ_id, str(self.integ_id))
        if self.prf_id:
            out["prf"] = PRF_NAMES.get(self.prf_id, str(self.prf_id))
        if self.dh_group:
            out["dh_group"] = self.dh_group
        return out


def offered_proposals(
    config: IkeConfig, protocol_id: int, *, spi: bytes = b"", dh_groups: tuple[int, ...] = ()
) -> tuple[Proposal, ...]:
    """Our offer: all of ``config.encrs``/``prfs``/``integs`` with ``offer_all``, else the first of each."""
    take = (lambda values: values) if config.offer_all else (lambda values: values[:1])
    proposals = []
    for number, encr in enumerate(take(config.encrs), 1):
        transforms = [
            Transform(TRANSFORM_ENCR, encr, (TransformAttribute(ATTRIBUTE_KEY_LENGTH, bits),))
            for bits in config.encr_key_bits
        ]
        if protocol_id == PROTO_IKE:
            transforms += [Transform(TRANSFORM_PRF, p) for p in take(config.prfs)]
        if encr not in AEAD_ENCRS:
            transforms += [Transform(TRANSFORM_INTEG, i) for i in take(config.integs)]
        transforms += [Transform(TRANSFORM_DH, g) for g in dh_groups]
        if protocol_id == PROTO_ESP:
            transforms.append(Transform(TRANSFORM_ESN, ESN_NONE))
        proposals.append(Proposal(number, protocol_id, tuple(transforms), spi))
    return tuple(proposals)


def _spi_ok(proposal: Proposal, spi_len: int) -> bool:
    if spi_len == 0:
        return True
    return len(proposal.spi) == spi_len and any(proposal.spi)


def _acceptable(config: IkeConfig, proposal: Proposal, dh: str) -> tuple[Suite, list[int], bool] | None:
    """The suite we would pick from ``proposal`` (DH group left 0), the acceptable groups offered, and
    whether going without a DH exchange fits it (no DH transform, or DH NONE among them)."""
    encr = next(
        (
            t
            for t in proposal.transforms
            if t.transform_type == TRANSFORM_ENCR
            and t.transform_id in config.encrs
            and t.key_length in config.encr_key_bits
        ),
        None,
    )
    if encr is None:
        return None
    integs = [t.transform_id for t in proposal.transforms if t.transform_type == TRANSFORM_INTEG]
    if encr.transform_id in AEAD_ENCRS:
        if any(i != INTEG_NONE for i in integs):
            return None
        integ = INTEG_NONE
    else:
        integ = next((i for i in integs if i in config.integs), None)
        if integ is None:
            return None
    prf = 0
    if proposal.protocol_id == PROTO_IKE:
        prf = next(
            (
                t.transform_id
                for t in proposal.transforms
                if t.transform_type == TRANSFORM_PRF and t.transform_id in config.prfs
            ),
            0,
        )
        if not prf:
            return None
    else:
        esns = [t.transform_id for t in proposal.transforms if t.transform_type == TRANSFORM_ESN]
        if esns and ESN_NONE not in esns:
            return None
    offered = [t.transform_id for t in proposal.transforms if t.transform_type == TRANSFORM_DH]
    groups = [g for g in offered if g in config.dh_groups]
    if dh == DH_REQUIRED and not groups:
        return None
    if dh == DH_OPTIONAL and offered and not groups and DH_NONE not in offered:
        return None
    suite = Suite(
        proposal.protocol_id, encr.transform_id, encr.key_length, integ, prf, 0, proposal.spi, proposal.number
    )
    return suite, groups, not offered or DH_NONE in offered


def choose_proposal(
    config: IkeConfig, sa: SaPayload, protocol_id: int, *, ke_group: int | None, dh: str, spi_len: int
) -> Suite:
    """The responder's choice among the peer's proposals; ``ke_group`` is the KE payload's group (None: no KE).

    Raises InvalidKePayload when only the KE's group is wrong, RemoteProtocolError when nothing is acceptable.
    """
    candidates = []
    for proposal in sa.proposals:
        if proposal.protocol_id != protocol_id or not _spi_ok(proposal, spi_len):
            continue
        found = _acceptable(config, proposal, dh)
        if found is not None:
            candidates.append(found)
    if not candidates:
        raise RemoteProtocolError(f"no acceptable proposal among {len(sa.proposals)}")
    for suite, groups, none_ok in candidates:
        if dh == DH_IGNORED:
            return suite
        if ke_group is None:
            if dh == DH_OPTIONAL and none_ok:
                return suite
            continue
        if ke_group in groups:
            return replace(suite, dh_group=ke_group)
    with_groups = [groups for _, groups, _ in candidates if groups]
    if with_groups and (ke_group is not None or dh == DH_OPTIONAL):
        raise InvalidKePayload(next(g for g in config.dh_groups if g in with_groups[0]))
    raise RemoteProtocolError("no proposal fits the KE payload (or its absence)")


def check_chosen(
    config: IkeConfig,
    sa: SaPayload | None,
    offered: tuple[Proposal, ...],
    protocol_id: int,
    *,
    dh_group: int,
    spi_len: int,
) -> Suite:
    """The suite in a responder's answer, checked against what we offered. Raises RemoteProtocolError."""
    if sa is None or len(sa.proposals) != 1:
        raise RemoteProtocolError("the answer needs exactly one proposal")
    chosen = sa.proposals[0]
    if chosen.protocol_id != protocol_id or not _spi_ok(chosen, spi_len):
        raise RemoteProtocolError("chosen proposal has the wrong protocol or SPI")
    ours = next((p for p in offered if p.number == chosen.number), None)
    if ours is None:
        raise RemoteProtocolError(f"chosen proposal number {chosen.number} was not offered")
    by_type: dict[int, list[Transform]] = {}
    for t in chosen.transforms:
        by_type.setdefault(t.transform_type, []).append(t)
        if not any(
            o.transform_type == t.transform_type and o.transform_id == t.transform_id and o.key_length == t.key_length
            for o in ours.transforms
        ) and not (t.transform_type == TRANSFORM_INTEG and t.transform_id == INTEG_NONE):
            raise RemoteProtocolError(f"chosen transform {t.transform_type}/{t.transform_id} was not offered")
    if any(len(v) != 1 for v in by_type.values()):
        raise RemoteProtocolError("more than one transform of a type chosen")
    encr = by_type.get(TRANSFORM_ENCR, [None])[0]
    if encr is None:
        raise RemoteProtocolError("chosen proposal lacks ENCR")
    integ = by_type.get(TRANSFORM_INTEG, [None])[0]
    integ_id = integ.transform_id if integ is not None else INTEG_NONE
    if (encr.transform_id in AEAD_ENCRS) != (integ_id == INTEG_NONE):
        raise RemoteProtocolError("integrity transform does not fit the cipher")
    prf = by_type.get(TRANSFORM_PRF, [None])[0]
    if protocol_id == PROTO_IKE and prf is None:
        raise RemoteProtocolError("chosen proposal lacks a PRF")
    dh = by_type.get(TRANSFORM_DH, [None])[0]
    chosen_group = dh.transform_id if dh is not None else 0
    if dh_group and chosen_group != dh_group:
        raise RemoteProtocolError(f"chosen DH group {chosen_group}, our KE is group {dh_group}")
    if not dh_group and chosen_group:
        raise RemoteProtocolError("a DH group chosen where we sent no KE")
    return Suite(
        protocol_id,
        encr.transform_id,
        encr.key_length or 0,
        integ_id,
        prf.transform_id if prf is not None else 0,
        chosen_group,
        chosen.spi,
        chosen.number,
    )
