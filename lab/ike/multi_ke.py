"""Multiple key exchanges (RFC 9370) in IKE_INTERMEDIATE exchanges (RFC 9242): the building blocks.

Negotiation (RFC 9370 §2.1, §2.2.1): besides Transform Type 4 (now "Key
Exchange Method"), a proposal may carry Transform Types 6..12, "Additional
Key Exchange 1..7" (ADDKE1..ADDKE7). Each type lists the methods acceptable
for that round; ID 0 (NONE) makes the round optional. The responder picks at
most one transform of each type; rounds answered with NONE do not take place.
The initiator also sends INTERMEDIATE_EXCHANGE_SUPPORTED (RFC 9242 §3.1)
in IKE_SA_INIT, and so does a responder that agrees.

The exchange (RFC 9370 §2.2.2): after IKE_SA_INIT, one IKE_INTERMEDIATE
exchange (type 43, RFC 9242 §3.2) per additional key exchange, in ADDKE
order, each protected with the keys current before it::

    HDR(MID=n), SK {KEi(n)}  -->
                             <--  HDR(MID=n), SK {KEr(n)}

    SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr)
    {SK_d(n) | SK_ai(n) | SK_ar(n) | SK_ei(n) | SK_er(n) | SK_pi(n) | SK_pr(n)}
                = prf+(SKEYSEED(n), Ni | Nr | SPIi | SPIr)

where SK(n) is the n-th additional shared secret (the 32-octet ML-KEM
secret, or a padded g^ir) and Ni, Nr, SPIi, SPIr are those of IKE_SA_INIT.
Message IDs go on from IKE_SA_INIT's 0: the n-th IKE_INTERMEDIATE is MID n
and IKE_AUTH follows with the next one (RFC 9242 §3.2). The last keys
protect IKE_AUTH and everything after; the Child SA of IKE_AUTH takes its
KEYMAT from the last SK_d, which is how the hybrid secret reaches ESP. A
later CREATE_CHILD_SA with additional key exchanges (IKE_FOLLOWUP_KE, type
44, lab.ike.followup_ke) mixes every secret, the CREATE_CHILD_SA one and
its nonces first, as RFC 7296 had them (RFC 9370 §2.2.4)::

    KEYMAT   = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))     Child SA
    SKEYSEED = prf(SK_d (old), SK(0) | Ni | Nr | SK(1) | ... | SK(n))  IKE SA rekey

AUTH covers the IKE_INTERMEDIATE messages (RFC 9242 §3.3.2)::

    InitiatorSignedOctets = RealMsg1 | NonceRData | MACedIDForI | IntAuth
    ResponderSignedOctets = RealMsg2 | NonceIData | MACedIDForR | IntAuth
    IntAuth    = IntAuth_iN | IntAuth_rN | IKE_AUTH_MID            (MID: 4 octets)
    IntAuth_i1 = prf(SK_pi1,              IntAuth_i1A [| IntAuth_i1P])
    IntAuth_iN = prf(SK_piN, IntAuth_iN-1 | IntAuth_iNA [| IntAuth_iNP])   (_r: SK_pr)

SK_piN/SK_prN are the keys in force for the N-th exchange (those that
protected it, before its own update); the _i chain covers the initiator's
requests, the _r chain the responder's responses. A is the message from the
IKE header through the Encrypted payload's generic header, with the header's
Length and the payload's Payload Length as if the Encrypted payload held
only the plaintext inner payloads (no IV, padding, Pad Length or ICV); P is
those inner payloads (absent when there are none). A fragmented message is
authenticated as the reassembled one. MACedIDForI/R use the last SK_pi/SK_pr.

tshark: the ``ikev2_decryption_table`` holds one row per SPI pair, so one
capture can be decrypted either up to the first key update (IKE_SA_INIT
keys: the first IKE_INTERMEDIATE) or from the last one on (IKE_AUTH and
after), not both; the keys of intermediate stages need one table each.
"""

from __future__ import annotations

import random
from collections.abc import Collection, Sequence
from dataclasses import replace

from lab.errors import RemoteProtocolError
from lab.ike.keys import (
    KEY_PAD,
    ChildSaKeys,
    IkeSaKeys,
    dh_public_value,
    dh_shared_secret,
    generate_dh_private_key,
    prf,
    prf_algorithm,
    prf_plus,
    signed_octets,
)
from lab.ike.mlkem import (
    generate_ml_kem_seed,
    is_ml_kem,
    ml_kem_decapsulate,
    ml_kem_encapsulate,
    ml_kem_encapsulation_key,
)
from lab.wire.ikev2 import (
    TRANSFORM_DH,
    EncryptedPayload,
    IkeMessage,
    Payload,
    Proposal,
    Transform,
    push_ike_message,
    push_payload_chain,
)

IKE_INTERMEDIATE = 43  # Exchange Type, RFC 9242 §3.2 / IANA
IKE_FOLLOWUP_KE = 44  # RFC 9370 §2.2.4
INTERMEDIATE_EXCHANGE_SUPPORTED = 16438  # status Notify, RFC 9242 §3.1
ADDITIONAL_KEY_EXCHANGE = 16441  # status Notify carrying the link to the next IKE_FOLLOWUP_KE, RFC 9370 §2.2.4
STATE_NOT_FOUND = 47  # error Notify: an IKE_FOLLOWUP_KE whose link the responder does not know, RFC 9370 §2.2.4

TRANSFORM_ADDKE1 = 6  # "Additional Key Exchange 1", RFC 9370 §2.2.1 / IANA Transform Type Values
TRANSFORM_ADDKE7 = 12
ADDKE_TRANSFORM_TYPES = tuple(range(TRANSFORM_ADDKE1, TRANSFORM_ADDKE7 + 1))
KE_NONE = 0  # in an ADDKE type: this round is optional (RFC 9370 §2.2.1)
MAX_ADDITIONAL_KEY_EXCHANGES = len(ADDKE_TRANSFORM_TYPES)


# --- proposals (RFC 9370 §2.2.1) ---------------------------------------------------------------------------


def with_additional_key_exchanges(proposal: Proposal, rounds: Sequence[Sequence[int]]) -> Proposal:
    """``proposal`` plus one ADDKE transform type per round, listing that round's acceptable method IDs.

    Put 0 (NONE) among a round's IDs to make it optional. Any ADDKE
    transforms already in ``proposal`` are replaced. Raises ValueError for
    more than 7 rounds or an empty round.
    """
    if len(rounds) > MAX_ADDITIONAL_KEY_EXCHANGES:
        raise ValueError(f"{len(rounds)} additional key exchanges, at most {MAX_ADDITIONAL_KEY_EXCHANGES}")
    kept = tuple(t for t in proposal.transforms if t.transform_type not in ADDKE_TRANSFORM_TYPES)
    added: list[Transform] = []
    for transform_type, ids in zip(ADDKE_TRANSFORM_TYPES, rounds, strict=False):
        if not ids:
            raise ValueError(f"ADDKE{transform_type - TRANSFORM_ADDKE1 + 1} lists no method")
        added.extend(Transform(transform_type, method) for method in ids)
    return replace(proposal, transforms=kept + tuple(added))


def offered_additional_key_exchanges(proposal: Proposal) -> dict[int, tuple[int, ...]]:
    """ADDKE transform type -> the method IDs offered for it, in offer order (types absent stay absent)."""
    offered: dict[int, list[int]] = {}
    for t in proposal.transforms:
        if t.transform_type in ADDKE_TRANSFORM_TYPES:
            offered.setdefault(t.transform_type, []).append(t.transform_id)
    return {k: tuple(v) for k, v in sorted(offered.items())}


def select_additional_key_exchanges(offered: Proposal, supported: Collection[int]) -> dict[int, int] | None:
    """The responder's choice: ADDKE type -> one method, or None when a round has nothing acceptable.

    For each offered type the first offered ID in ``supported`` wins,
    preferring a method not yet chosen for an earlier round or for Transform
    Type 4; NONE is taken when offered and nothing else fits. None means
    NO_PROPOSAL_CHOSEN for this proposal.
    """
    chosen: dict[int, int] = {}
    ke = offered.transform(TRANSFORM_DH)
    used = {ke.transform_id} if ke is not None else set()
    for transform_type, ids in offered_additional_key_exchanges(offered).items():
        acceptable = [m for m in ids if m != KE_NONE and m in supported]
        fresh = [m for m in acceptable if m not in used]
        if fresh or acceptable:
            pick = (fresh or acceptable)[0]
            used.add(pick)
        elif KE_NONE in ids:
            pick = KE_NONE
        else:
            return None
        chosen[transform_type] = pick
    return chosen


def negotiated_additional_key_exchanges(proposal: Proposal) -> tuple[int, ...]:
    """The methods of the additional key exchanges to run, in ADDKE order, from the responder's chosen proposal.

    Rounds answered with NONE are left out. Raises RemoteProtocolError when
    the chosen proposal lists a type more than once (the responder must pick
    one transform per type, RFC 7296 §3.3.6).
    """
    offered = offered_additional_key_exchanges(proposal)
    methods = []
    for transform_type, ids in offered.items():
        if len(ids) != 1:
            raise RemoteProtocolError(f"chosen proposal has {len(ids)} transforms of type {transform_type}")
        if ids[0] != KE_NONE:
            methods.append(ids[0])
    return tuple(methods)


# --- one key exchange, DH group or KEM ---------------------------------------------------------------------


def initiator_key_exchange(method: int, rng: random.Random) -> tuple[bytes, bytes]:
    """(private value to keep, KEi data): a DH private key and public value, or an ML-KEM seed and encapsulation key.

    Raises ValueError for a method neither lab.ike.keys nor lab.ike.mlkem implements.
    """
    if is_ml_kem(method):
        seed = generate_ml_kem_seed(rng)
        return seed, ml_kem_encapsulation_key(method, seed)
    private = generate_dh_private_key(method, rng)
    return private, dh_public_value(method, private)


def responder_key_exchange(method: int, initiator_data: bytes, rng: random.Random) -> tuple[bytes, bytes]:
    """(KEr data, shared secret): our DH public value and g^ir, or the ML-KEM ciphertext and its secret.

    Both draw their randomness from ``rng``, so a seeded run repeats them.

    Raises RemoteProtocolError when the initiator's data is unusable (answer
    INVALID_SYNTAX / fail the exchange), ValueError for an unsupported method.
    """
    if is_ml_kem(method):
        return ml_kem_encapsulate(method, initiator_data, rng)
    private = generate_dh_private_key(method, rng)
    return dh_public_value(method, private), dh_shared_secret(method, private, initiator_data)


def initiator_shared_secret(method: int, private: bytes, responder_data: bytes) -> bytes:
    """The shared secret from the responder's KEr data and what ``initiator_key_exchange`` kept.

    Raises RemoteProtocolError for unusable responder data.
    """
    if is_ml_kem(method):
        return ml_kem_decapsulate(method, private, responder_data)
    return dh_shared_secret(method, private, responder_data)


# --- the key update after each additional exchange (RFC 9370 §2.2.2) ---------------------------------------


def skeyseed_after_additional_exchange(
    prf_id: int, *, sk_d: bytes, shared_secret: bytes, ni: bytes, nr: bytes
) -> bytes:
    """``SKEYSEED(n) = prf(SK_d(n-1), SK(n) | Ni | Nr)``."""
    return prf(prf_id, sk_d, shared_secret + ni + nr)


def update_ike_sa_keys(
    previous: IkeSaKeys,
    *,
    prf_id: int,
    shared_secret: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    encr_key_len: int,
    integ_key_len: int = 0,
) -> IkeSaKeys:
    """The IKE SA's keys after one more additional key exchange: SKEYSEED(n) and the seven SK_*(n).

    ``previous`` holds SK_*(n-1) (from lab.ike.keys.derive_ike_sa_keys or an
    earlier update); the returned ``skeyseed`` field is SKEYSEED(n). Ni, Nr
    and the SPIs are IKE_SA_INIT's; lengths in bytes as for derive_ike_sa_keys.
    Raises ValueError for an unsupported PRF.
    """
    seed = skeyseed_after_additional_exchange(prf_id, sk_d=previous.sk_d, shared_secret=shared_secret, ni=ni, nr=nr)
    prf_len = prf_algorithm(prf_id).key_len
    sizes = (prf_len, integ_key_len, integ_key_len, encr_key_len, encr_key_len, prf_len, prf_len)
    stream = prf_plus(prf_id, seed, ni + nr + spi_i + spi_r, sum(sizes))
    parts = []
    pos = 0
    for size in sizes:
        parts.append(stream[pos : pos + size])
        pos += size
    return IkeSaKeys(seed, *parts)


def followup_secret_input(shared_secrets: Sequence[bytes], ni: bytes, nr: bytes) -> bytes:
    """``SK(0) | Ni | Nr | SK(1) | ... | SK(n)``: what KEYMAT and a rekey's SKEYSEED take after IKE_FOLLOWUP_KE.

    ``shared_secrets`` in exchange order, SK(0) (the CREATE_CHILD_SA secret)
    first; Ni and Nr are the CREATE_CHILD_SA nonces (RFC 9370 §2.2.4).
    Raises ValueError without SK(0).
    """
    if not shared_secrets:
        raise ValueError("no CREATE_CHILD_SA shared secret")
    return shared_secrets[0] + ni + nr + b"".join(shared_secrets[1:])


def derive_child_sa_keys_multi(
    *,
    prf_id: int,
    sk_d: bytes,
    ni: bytes,
    nr: bytes,
    shared_secrets: Sequence[bytes],
    encr_key_len: int,
    integ_key_len: int = 0,
) -> ChildSaKeys:
    """CREATE_CHILD_SA + IKE_FOLLOWUP_KE KEYMAT: ``prf+(SK_d, SK(0) | Ni | Nr | SK(1) | ... | SK(n))``.

    RFC 9370 §2.2.4.

    ``shared_secrets`` in exchange order (the CREATE_CHILD_SA secret first),
    split as RFC 7296 §2.17 (initiator-to-responder keys first, encryption
    before integrity). The Child SA of IKE_AUTH uses plain
    derive_child_sa_keys with the last SK_d.
    """
    e, i = encr_key_len, integ_key_len
    keymat = prf_plus(prf_id, sk_d, followup_secret_input(shared_secrets, ni, nr), 2 * (e + i))
    return ChildSaKeys(
        encr_i2r=keymat[:e],
        integ_i2r=keymat[e : e + i],
        encr_r2i=keymat[e + i : 2 * e + i],
        integ_r2i=keymat[2 * e + i :],
    )


def rekey_skeyseed_multi(
    old_prf_id: int, *, old_sk_d: bytes, shared_secrets: Sequence[bytes], ni: bytes, nr: bytes
) -> bytes:
    """An IKE SA rekey's ``SKEYSEED = prf(SK_d (old), SK(0) | Ni | Nr | SK(1) | ... | SK(n))`` (RFC 9370 §2.2.4).

    With the old SA's PRF, as RFC 7296 §2.18; the new SA's SK_* follow from
    it as usual (lab.ike.keys.derive_ike_sa_keys with ``seed``).
    """
    return prf(old_prf_id, old_sk_d, followup_secret_input(shared_secrets, ni, nr))


def ike_auth_message_id(intermediate_exchanges: int) -> int:
    """IKE_AUTH's Message ID after ``intermediate_exchanges`` IKE_INTERMEDIATE exchanges (MIDs 1..n)."""
    if intermediate_exchanges < 0:
        raise ValueError("a negative number of IKE_INTERMEDIATE exchanges")
    return intermediate_exchanges + 1


# --- IntAuth (RFC 9242 §3.3.2) -------------------------------------------------------------------------------


def int_auth_chunks(message: IkeMessage, inner: Sequence[Payload]) -> tuple[bytes, bytes]:
    """(A, P) of one IKE_INTERMEDIATE message (Figure 1 of RFC 9242 §3.3.2).

    ``message`` is the message without its Encrypted payload (its own
    payloads are the unprotected ones, normally none) and ``inner`` the
    payloads inside SK. A runs from the IKE header (Length adjusted) through
    the Encrypted payload's generic header (Payload Length adjusted, Next
    Payload = the first inner payload); P is the inner payload chain, empty
    when there are no inner payloads. For a received message pass the
    decoded payloads: re-encoding reproduces the sender's bytes whenever its
    reserved bits were zero (RFC 7296 §3.2).
    """
    first, chain = push_payload_chain(tuple(inner))
    unprotected = tuple(p for p in message.payloads if not isinstance(p, EncryptedPayload))
    whole = push_ike_message(replace(message, payloads=(*unprotected, EncryptedPayload(first, chain))))
    return whole[: len(whole) - len(chain)], chain


def int_auth_step(
    prf_id: int, *, sk_p: bytes, previous: bytes | None, message: IkeMessage, inner: Sequence[Payload]
) -> bytes:
    """``IntAuth_[i/r]N = prf(SK_p[i/r]N, [IntAuth_[i/r]N-1 |] A [| P])`` for one IKE_INTERMEDIATE message.

    ``sk_p`` is SK_pi (initiator's requests) or SK_pr (responder's
    responses) of the keys that protected this exchange; ``previous`` is the
    value from the previous exchange, None for the first.
    """
    a, p = int_auth_chunks(message, inner)
    return prf(prf_id, sk_p, (previous or b"") + a + p)


def int_auth(*, int_auth_i: bytes, int_auth_r: bytes, ike_auth_message_id: int) -> bytes:
    """``IntAuth = IntAuth_iN | IntAuth_rN | IKE_AUTH_MID``, the MID as 4 octets in network order."""
    return int_auth_i + int_auth_r + ike_auth_message_id.to_bytes(4, "big")


def signed_octets_with_int_auth(
    *, prf_id: int, real_message: bytes, peer_nonce: bytes, sk_p: bytes, id_body: bytes, int_auth: bytes
) -> bytes:
    """RFC 7296's signed octets (lab.ike.keys.signed_octets) followed by IntAuth; ``sk_p`` is the last SK_pi/SK_pr."""
    return (
        signed_octets(prf_id=prf_id, real_message=real_message, peer_nonce=peer_nonce, sk_p=sk_p, id_body=id_body)
        + int_auth
    )


def psk_auth_with_int_auth(
    *, prf_id: int, psk: bytes, real_message: bytes, peer_nonce: bytes, sk_p: bytes, id_body: bytes, int_auth: bytes
) -> bytes:
    """``prf(prf(PSK, "Key Pad for IKEv2"), <SignedOctets>)`` with IntAuth at the end of the signed octets.

    The PSK AUTH (method 2) of an IKE SA that ran IKE_INTERMEDIATE exchanges.
    """
    octets = signed_octets_with_int_auth(
        prf_id=prf_id, real_message=real_message, peer_nonce=peer_nonce, sk_p=sk_p, id_body=id_body, int_auth=int_auth
    )
    return prf(prf_id, prf(prf_id, psk, KEY_PAD), octets)
