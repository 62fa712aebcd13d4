"""Additional key exchanges in CREATE_CHILD_SA: IKE_FOLLOWUP_KE (RFC 9370 §2.2.4).

Known answers for the key schedule, computed here with ``cryptography``'s
HMAC; two endpoints (tests.ike.pair) rekeying hybrid SAs (X25519 +
ML-KEM-768, P-256 + ML-KEM-1024), Child SA and IKE SA, with ESP byte-exact
afterwards; the refusals (an unknown link gets STATE_NOT_FOUND, a peer
without IKE_FOLLOWUP_KE gets a plain rekey) and exchanges interleaving.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.hmac import HMAC

import lab.ike.sa as sa_module
from lab.ike.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    IkeSaDeleted,
    IkeSaRekeyed,
    LivenessChecked,
    PacketReceived,
)
from lab.ike.followup_ke import acceptable_addke, chosen_methods, link_notify, rekey_offer
from lab.ike.keys import ChildSaKeys, derive_ike_sa_keys, encr_key_len
from lab.ike.multi_ke import (
    IKE_FOLLOWUP_KE,
    STATE_NOT_FOUND,
    derive_child_sa_keys_multi,
    followup_secret_input,
    initiator_key_exchange,
    rekey_skeyseed_multi,
    with_additional_key_exchanges,
)
from lab.wire.buffer import Buffer
from lab.wire.ikev2 import (
    ENCR_AES_CBC,
    ENCR_AES_GCM_16,
    INVALID_SYNTAX,
    NON_ESP_MARKER,
    PRF_HMAC_SHA2_256,
    PRF_HMAC_SHA2_512,
    PROTO_ESP,
    KePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    Transform,
    pull_ike_header,
)
from tests.ike.pair import Pair, configs

HYBRIDS = {"x25519+mlkem768": (31, 36), "p256+mlkem1024": (19, 37)}
NI, NR = bytes(range(1, 33)), bytes(range(201, 233))
SK_D = bytes.fromhex("5e" * 32)
SK0 = bytes.fromhex("0a" * 32)  # the CREATE_CHILD_SA ECDH secret
SK1 = bytes.fromhex("1b" * 32)  # the first IKE_FOLLOWUP_KE secret (an ML-KEM shared key)
SK2 = bytes.fromhex("2c" * 32)


# --- known answers, computed independently ------------------------------------------------------------------


def _prf(algorithm: hashes.HashAlgorithm, key: bytes, data: bytes) -> bytes:
    mac = HMAC(key, algorithm)
    mac.update(data)
    return mac.finalize()


def _prf_plus(algorithm: hashes.HashAlgorithm, key: bytes, seed: bytes, length: int) -> bytes:
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = _prf(algorithm, key, block + seed + bytes((counter,)))
        out += block
        counter += 1
    return out[:length]


def test_child_sa_keymat_mixes_every_secret_after_the_nonces() -> None:
    """KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1) | SK(2)), split encr_i | integ_i | encr_r | integ_r."""
    keys = derive_child_sa_keys_multi(
        prf_id=PRF_HMAC_SHA2_256,
        sk_d=SK_D,
        ni=NI,
        nr=NR,
        shared_secrets=[SK0, SK1, SK2],
        encr_key_len=encr_key_len(ENCR_AES_GCM_16, 256),
    )
    keymat = _prf_plus(hashes.SHA256(), SK_D, SK0 + NI + NR + SK1 + SK2, 2 * 36)
    assert keys.encr_i2r == keymat[:36] and keys.encr_r2i == keymat[36:]
    assert keys.integ_i2r == keys.integ_r2i == b""
    swapped = _prf_plus(hashes.SHA256(), SK_D, SK0 + SK1 + SK2 + NI + NR, 2 * 36)  # the order matters
    assert swapped[:36] != keys.encr_i2r


def test_child_sa_keymat_with_integrity_keys_and_sha2_512() -> None:
    keys = derive_child_sa_keys_multi(
        prf_id=PRF_HMAC_SHA2_512,
        sk_d=SK_D * 2,
        ni=NI,
        nr=NR,
        shared_secrets=[SK0, SK1],
        encr_key_len=encr_key_len(ENCR_AES_CBC, 128),
        integ_key_len=32,
    )
    keymat = _prf_plus(hashes.SHA512(), SK_D * 2, SK0 + NI + NR + SK1, 2 * (16 + 32))
    assert (keys.encr_i2r, keys.integ_i2r, keys.encr_r2i, keys.integ_r2i) == (
        keymat[:16],
        keymat[16:48],
        keymat[48:64],
        keymat[64:],
    )


def test_ike_sa_rekey_skeyseed_and_new_keys() -> None:
    """SKEYSEED = prf(SK_d (old), SK(0) | Ni | Nr | SK(1)); the new SK_* = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)."""
    spi_i, spi_r = bytes.fromhex("a1a2a3a4a5a6a7a8"), bytes.fromhex("b1b2b3b4b5b6b7b8")
    seed = rekey_skeyseed_multi(PRF_HMAC_SHA2_256, old_sk_d=SK_D, shared_secrets=[SK0, SK1], ni=NI, nr=NR)
    assert seed == _prf(hashes.SHA256(), SK_D, SK0 + NI + NR + SK1)
    keys = derive_ike_sa_keys(
        prf_id=PRF_HMAC_SHA2_256,
        shared_secret=b"",
        ni=NI,
        nr=NR,
        spi_i=spi_i,
        spi_r=spi_r,
        encr_key_len=36,
        seed=seed,
    )
    stream = _prf_plus(hashes.SHA256(), seed, NI + NR + spi_i + spi_r, 32 + 36 + 36 + 32 + 32)
    assert keys.sk_d == stream[:32] and keys.sk_ei == stream[32:68] and keys.sk_er == stream[68:104]
    assert keys.sk_pi == stream[104:136] and keys.sk_pr == stream[136:]
    with pytest.raises(ValueError):
        followup_secret_input([], NI, NR)


# --- proposals ------------------------------------------------------------------------------------------------


def _esp(number: int = 1) -> Proposal:
    return Proposal(
        number,
        PROTO_ESP,
        (Transform(1, ENCR_AES_GCM_16), Transform(4, 31), Transform(5, 0)),
        bytes.fromhex("01020304"),
    )


def test_rekey_offer_puts_the_plain_copies_after_the_hybrid_ones() -> None:
    offered = rekey_offer([_esp(1), _esp(2)], [36, 37])
    assert [p.number for p in offered] == [1, 2, 3, 4]
    assert [[t.transform_type for t in p.transforms if t.transform_type >= 6] for p in offered] == [
        [6, 7],
        [6, 7],
        [],
        [],
    ]
    assert rekey_offer([_esp()], []) == (_esp(),)
    sa, picks = acceptable_addke(SaPayload(offered), accepted=(36, 37), enabled=True, with_ke=True)
    assert [p.number for p in sa.proposals] == [1, 2, 3, 4] and picks[1] == {6: 36, 7: 37}
    sa, picks = acceptable_addke(SaPayload(offered), accepted=(37,), enabled=True, with_ke=True)
    assert [p.number for p in sa.proposals] == [3, 4]  # round 1 wants ML-KEM-768: only the plain copies fit
    sa, _ = acceptable_addke(SaPayload(offered), accepted=(36, 37), enabled=False, with_ke=True)
    assert [p.number for p in sa.proposals] == [3, 4]  # RFC 7296 §3.3.6: unknown transform types


def test_initiator_checks_the_chosen_rounds() -> None:
    offered = rekey_offer([_esp()], [36])
    chosen = with_additional_key_exchanges(_esp(), [[36]])
    assert chosen_methods(SaPayload((chosen,)), offered) == (36,)
    assert chosen_methods(SaPayload((_esp(2),)), offered) == ()  # the plain fallback
    with pytest.raises(Exception, match="ADDKE types"):
        chosen_methods(SaPayload((_esp(1),)), offered)  # our hybrid proposal with its round dropped
    with pytest.raises(Exception, match="not offered"):
        chosen_methods(SaPayload((with_additional_key_exchanges(_esp(), [[37]]),)), offered)


# --- two endpoints --------------------------------------------------------------------------------------------


def hybrid_pair(combo: str, transport: str = "udp", **overrides: object) -> Pair:
    dh, kem = HYBRIDS[combo]
    pair = Pair(*configs(transport=transport, dh_groups=(dh,), additional_key_exchanges=(kem,), **overrides))
    pair.i.connect(now=0.0)
    pair.run(5.0)
    assert pair.i.sa is not None and pair.i.sa.established and pair.i.sa.additional_kes == (kem,)
    return pair


def exchanges(pair: Pair, node: str, since: float) -> list[tuple[str, int, bool]]:
    return [
        (r.data["exchange"], r.data["message_id"], r.data["response"])
        for r in pair.tracer.select(layer="ike", name="segment_sent", node=node)
        if r.t >= since
    ]


def esp_both_ways(pair: Pair, tag: bytes) -> None:
    """Packets of several sizes each way arrive byte-exact, and nothing else arrives."""
    before = {side: len(pair.of(side, PacketReceived)) for side in "ir"}
    payloads = [b"\x45" + tag + bytes(range(n % 256)) * (n // 256 + 1) for n in (0, 1, 255, 1300)]
    for data in payloads:
        pair.i.send_packet(b"i" + data, now=pair.now)
        pair.r.send_packet(b"r" + data, now=pair.now)
    pair.run(pair.now + 1.0)
    assert [e.data for e in pair.of("r", PacketReceived)[before["r"] :]] == [b"i" + d for d in payloads]
    assert [e.data for e in pair.of("i", PacketReceived)[before["i"] :]] == [b"r" + d for d in payloads]


def followup_records(pair: Pair, node: str) -> list[dict]:
    return [
        r.data
        for r in pair.tracer.select(layer="ike", name="state_updated", node=node)
        if r.data.get("exchange") == "IKE_FOLLOWUP_KE"
    ]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("combo", sorted(HYBRIDS))
@pytest.mark.parametrize("side", ["i", "r"])
def test_hybrid_child_sa_rekey_runs_ike_followup_ke_and_carries_esp(combo: str, transport: str, side: str) -> None:
    _, kem = HYBRIDS[combo]
    pair = hybrid_pair(combo, transport)
    esp_both_ways(pair, b"before")
    start = pair.now
    old = {s: getattr(pair, s).sa.child.spi_in if s == "i" else pair.r.sas()[0].child.spi_in for s in "ir"}
    getattr(pair, side).rekey_child(now=pair.now)
    pair.run(pair.now + 1.0)
    other = "r" if side == "i" else "i"
    mid = 3 if side == "i" else 0  # the initiator's IKE_AUTH was MID 2; the responder starts its requests at 0
    assert exchanges(pair, side, start) == [
        ("CREATE_CHILD_SA", mid, False),
        ("IKE_FOLLOWUP_KE", mid + 1, False),
        ("INFORMATIONAL", mid + 2, False),  # the Delete of the old Child SA, after the last round
    ]
    assert exchanges(pair, other, start) == [
        ("CREATE_CHILD_SA", mid, True),
        ("IKE_FOLLOWUP_KE", mid + 1, True),
        ("INFORMATIONAL", mid + 2, True),
    ]
    for s in "ir":
        (rekeyed,) = [e for e in pair.of(s, ChildSaEstablished) if e.rekeyed_spi_in is not None]
        assert rekeyed.rekeyed_spi_in == old[s]
        assert [e.spi_in for e in pair.of(s, ChildSaDeleted)] == [old[s]]
    keys = [r.data for r in pair.tracer.select(layer="esp", name="key_updated") if r.data.get("rekeyed")]
    assert len(keys) == 2 and all(k["additional_kes"] == [kem] and k["pfs"] for k in keys)
    assert keys[0]["key_in"] == keys[1]["key_out"] and keys[0]["key_out"] == keys[1]["key_in"]
    ok = [
        (d.get("responder", False), d["round"], d["additional_ke"])
        for n in "ir"
        for d in followup_records(pair, n)
        if d.get("result") == "ok"
    ]
    assert sorted(ok) == [(False, 1, kem), (True, 1, kem)]
    esp_both_ways(pair, b"after")


def test_the_rekeyed_child_sa_keys_are_those_of_every_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """The exported ESP keys equal prf+(SK_d, SK(0) | Ni | Nr | SK(1)) computed here, with the secrets both
    ends passed to the key schedule (the same on both, the ML-KEM one 32 octets)."""
    seen: list[dict] = []
    real = sa_module.derive_child_sa_keys_multi

    def spy(**kwargs: Any) -> ChildSaKeys:
        seen.append(kwargs)
        return real(**kwargs)

    monkeypatch.setattr(sa_module, "derive_child_sa_keys_multi", spy)
    pair = hybrid_pair("x25519+mlkem768")
    sk_d = pair.i.sa.keys.sk_d
    pair.i.rekey_child(now=pair.now)
    pair.run(pair.now + 1.0)
    assert len(seen) == 2
    sk0, sk1 = seen[0]["shared_secrets"]
    assert seen[1]["shared_secrets"] == (sk0, sk1) and len(sk0) == len(sk1) == 32 and sk0 != sk1
    assert seen[0]["ni"] == seen[1]["ni"] and seen[0]["nr"] == seen[1]["nr"] and seen[0]["sk_d"] == sk_d
    keymat = _prf_plus(hashes.SHA256(), sk_d, sk0 + seen[0]["ni"] + seen[0]["nr"] + sk1, 72)
    (mine,) = [r.data for r in pair.tracer.select(layer="esp", name="key_updated", node="i") if r.data.get("rekeyed")]
    assert (mine["key_out"], mine["key_in"]) == (keymat[:36].hex(), keymat[36:].hex())


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("combo", sorted(HYBRIDS))
@pytest.mark.parametrize("side", ["i", "r"])
def test_hybrid_ike_sa_rekey_runs_ike_followup_ke_and_stays_hybrid(combo: str, transport: str, side: str) -> None:
    _, kem = HYBRIDS[combo]
    pair = hybrid_pair(combo, transport)
    old_i, old_r = pair.i.sas()[0], pair.r.sas()[0]
    child_spis = (old_i.child.spi_in, old_r.child.spi_in)
    start = pair.now
    getattr(pair, side).rekey_ike(now=pair.now)
    pair.run(pair.now + 1.0)
    other = "r" if side == "i" else "i"
    mid = 3 if side == "i" else 0
    assert exchanges(pair, side, start) == [
        ("CREATE_CHILD_SA", mid, False),
        ("IKE_FOLLOWUP_KE", mid + 1, False),  # over the old SA, under its keys
        ("INFORMATIONAL", mid + 2, False),  # the old SA's Delete
    ]
    assert exchanges(pair, other, start) == [
        ("CREATE_CHILD_SA", mid, True),
        ("IKE_FOLLOWUP_KE", mid + 1, True),
        ("INFORMATIONAL", mid + 2, True),
    ]
    (rekeyed_i,), (rekeyed_r,) = pair.of("i", IkeSaRekeyed), pair.of("r", IkeSaRekeyed)
    assert rekeyed_i.initiated is (side == "i") and rekeyed_r.initiated is (side == "r")
    (new_i,), (new_r,) = pair.i.sas(), pair.r.sas()
    assert new_i.established and new_r.established and new_i.keys == new_r.keys
    assert new_i.keys.sk_d != old_i.keys.sk_d
    assert new_i.additional_kes == new_r.additional_kes == (kem,)
    assert (new_i.child.spi_in, new_r.child.spi_in) == child_spis
    assert not pair.of("i", IkeSaDeleted) and not pair.of("r", IkeSaDeleted)
    keys = [r.data for r in pair.tracer.select(layer="ike", name="key_updated") if r.data.get("rekey")]
    assert len(keys) == 2 and all(k["additional_kes"] == [kem] for k in keys)
    esp_both_ways(pair, b"after the IKE SA rekey")
    # the new SA rekeys its Child SA with IKE_FOLLOWUP_KE too, message IDs from 0
    start = pair.now
    pair.i.rekey_child(now=pair.now)
    pair.run(pair.now + 1.0)
    assert exchanges(pair, "i", start) == [
        ("CREATE_CHILD_SA", 0, False),
        ("IKE_FOLLOWUP_KE", 1, False),
        ("INFORMATIONAL", 2, False),
    ]
    esp_both_ways(pair, b"after both rekeys")


def test_two_additional_key_exchanges_take_two_linked_rounds() -> None:
    pair = Pair(*configs(transport="udp", dh_groups=(31,), additional_key_exchanges=(36, 37)))
    pair.i.connect(now=0.0)
    pair.run(5.0)
    start = pair.now
    pair.i.rekey_child(now=pair.now)
    pair.run(pair.now + 1.0)
    assert exchanges(pair, "i", start) == [
        ("CREATE_CHILD_SA", 4, False),  # after IKE_INTERMEDIATE 1, 2 and IKE_AUTH 3
        ("IKE_FOLLOWUP_KE", 5, False),
        ("IKE_FOLLOWUP_KE", 6, False),
        ("INFORMATIONAL", 7, False),
    ]
    rounds = [(d["round"], d["additional_ke"]) for d in followup_records(pair, "r") if d.get("result") == "ok"]
    assert rounds == [(1, 36), (2, 37)]
    pair.r.rekey_ike(now=pair.now)
    pair.run(pair.now + 1.0)
    assert pair.i.sa.additional_kes == (36, 37) and len(pair.of("i", IkeSaRekeyed)) == 1
    esp_both_ways(pair, b"two rounds")


def test_lost_followup_response_gets_the_cached_one_and_one_child_sa() -> None:
    pair = hybrid_pair("x25519+mlkem768")
    lost: list[bytes] = []

    def lose_first_followup_response(kind: str, from_i: bool, data: bytes) -> bytes | None:
        ike = kind == "udp" and not from_i and data[:4] == NON_ESP_MARKER
        if ike and pull_ike_header(Buffer(data[4:])).exchange_type == IKE_FOLLOWUP_KE and not lost:
            lost.append(data)
            return None
        return data

    pair.tamper = lose_first_followup_response
    pair.i.rekey_child(now=pair.now)
    pair.run(pair.now + 3.0)
    assert lost
    resent = [r.data for r in pair.tracer.select(layer="ike", name="segment_sent", node="r") if r.data.get("resent")]
    assert [d["exchange"] for d in resent] == ["IKE_FOLLOWUP_KE"]
    assert len([e for e in pair.of("r", ChildSaEstablished) if e.rekeyed_spi_in]) == 1
    assert len([e for e in pair.of("i", ChildSaEstablished) if e.rekeyed_spi_in]) == 1
    esp_both_ways(pair, b"after a lost response")


# --- refusals ---------------------------------------------------------------------------------------------------


def _hold_followup_requests(until: list[float], pair: Pair) -> Callable[[str, bool, bytes], bytes | None]:
    """Drop the initiator's IKE_FOLLOWUP_KE requests sent before ``until[0]``: the responder waits in vain."""

    def tamper(kind: str, from_i: bool, data: bytes) -> bytes | None:
        ike = kind == "udp" and data[:4] == NON_ESP_MARKER
        if ike and pull_ike_header(Buffer(data[4:])).exchange_type == IKE_FOLLOWUP_KE and pair.now < until[0]:
            return None
        return data

    return tamper


def test_unknown_link_is_answered_with_state_not_found_and_the_child_rekey_fails_cleanly() -> None:
    """The responder drops its state after 20 s without the next round (RFC 9370 §2.2.4); the initiator's
    retransmission 31.5 s after its first try names a link it no longer knows: STATE_NOT_FOUND."""
    pair = hybrid_pair("x25519+mlkem768", retransmit_tries=6)
    old_i = pair.i.sa.child.spi_in
    until = [pair.now + 25.0]
    pair.tamper = _hold_followup_requests(until, pair)
    pair.i.rekey_child(now=pair.now)
    pair.run(pair.now + 40.0)
    expired = [d for d in followup_records(pair, "r") if d.get("result") == "expired"]
    refused = [d for d in followup_records(pair, "r") if d.get("result") == "STATE_NOT_FOUND"]
    assert len(expired) == 1 and expired[0]["for"] == "child"
    assert len(refused) == 1 and refused[0]["link"]
    assert [e.notify_type for e in pair.of("i", ChildSaFailed)] == [STATE_NOT_FOUND]
    assert [d["result"] for d in followup_records(pair, "i") if "result" in d] == ["STATE_NOT_FOUND"]
    assert not [e for e in pair.of("i", ChildSaEstablished) if e.rekeyed_spi_in]
    assert not [e for e in pair.of("r", ChildSaEstablished) if e.rekeyed_spi_in]  # nothing was installed
    assert pair.i.sa.established and pair.i.sa.child.spi_in == old_i  # the old Child SA carries on
    esp_both_ways(pair, b"after STATE_NOT_FOUND")
    pair.tamper = None
    pair.i.rekey_child(now=pair.now)  # a new try starts from CREATE_CHILD_SA and succeeds
    pair.run(pair.now + 1.0)
    assert len([e for e in pair.of("i", ChildSaEstablished) if e.rekeyed_spi_in == old_i]) == 1


def test_ike_sa_rekey_after_state_not_found_starts_over_and_succeeds() -> None:
    pair = hybrid_pair("p256+mlkem1024", retransmit_tries=6)
    until = [pair.now + 25.0]
    pair.tamper = _hold_followup_requests(until, pair)
    pair.i.rekey_ike(now=pair.now)
    pair.run(pair.now + 45.0)
    results = [d.get("result") for d in followup_records(pair, "i") if "result" in d]
    assert results[0] == "STATE_NOT_FOUND" and results[-1] == "ok"  # refused once, then the whole rekey again
    (rekeyed,) = pair.of("i", IkeSaRekeyed)
    assert pair.i.sa.spi_i == rekeyed.spi_i and pair.i.sa.additional_kes == (37,)
    assert not pair.of("i", IkeSaDeleted) and not pair.of("r", IkeSaDeleted)
    esp_both_ways(pair, b"after the second try")


@pytest.mark.parametrize("without", ["r", "i"])
def test_a_peer_without_followup_ke_gets_plain_rekeys(without: str) -> None:
    """followup_ke=False: as responder it refuses proposals with ADDKE transforms and takes the plain copy we
    offered after them; as initiator it offers none. Either way CREATE_CHILD_SA alone, PFS, no IKE_FOLLOWUP_KE."""
    pair = hybrid_pair("x25519+mlkem768", **{f"{without}_followup_ke": False})
    start = pair.now
    pair.i.rekey_child(now=pair.now)
    pair.run(pair.now + 1.0)
    pair.r.rekey_child(now=pair.now)
    pair.run(pair.now + 1.0)
    pair.i.rekey_ike(now=pair.now)
    pair.run(pair.now + 1.0)
    sent = [e[0] for n in "ir" for e in exchanges(pair, n, start)]
    assert "IKE_FOLLOWUP_KE" not in sent and sent.count("CREATE_CHILD_SA") == 6
    keys = [r.data for r in pair.tracer.select(layer="esp", name="key_updated") if r.data.get("rekeyed")]
    assert len(keys) == 4 and all(k["pfs"] and "additional_kes" not in k for k in keys)
    assert not pair.of("i", ChildSaFailed) and not pair.of("r", ChildSaFailed)
    assert len(pair.of("i", IkeSaRekeyed)) == 1 and pair.i.sa.additional_kes == pair.r.sas()[0].additional_kes == ()
    esp_both_ways(pair, b"plain rekeys")


def test_a_classic_sa_rekeys_as_before() -> None:
    pair = Pair(*configs(transport="udp", dh_groups=(31,)))
    pair.i.connect(now=0.0)
    pair.run(1.0)
    start = pair.now
    pair.i.rekey_child(now=pair.now)
    pair.run(pair.now + 1.0)
    pair.i.rekey_ike(now=pair.now)
    pair.run(pair.now + 1.0)
    assert [e[0] for e in exchanges(pair, "i", start)] == [
        "CREATE_CHILD_SA",
        "INFORMATIONAL",
        "CREATE_CHILD_SA",
        "INFORMATIONAL",
    ]
    assert not [r for r in pair.tracer.records if "additional_kes" in r.data]


# --- interleaving ----------------------------------------------------------------------------------------------


def test_both_ends_rekey_at_once_and_each_series_finds_its_own_link() -> None:
    """Each end is the initiator of one series and the responder of the other; their CREATE_CHILD_SA and
    IKE_FOLLOWUP_KE messages interleave on the wire and a liveness check goes between them."""
    pair = hybrid_pair("x25519+mlkem768")
    pair.i.rekey_child(now=pair.now)
    pair.r.rekey_child(now=pair.now)
    pair.r.check_liveness(now=pair.now + 0.015)  # queued behind the responder's own series
    pair.run(pair.now + 2.0)
    for side in "ir":
        records = followup_records(pair, side)
        assert {(d.get("responder", False), d["result"]) for d in records if "result" in d} == {
            (False, "ok"),
            (True, "ok"),
        }
        assert len([e for e in pair.of(side, ChildSaEstablished) if e.rekeyed_spi_in is not None]) == 2
    order = [
        (r.node, r.data["exchange"], r.data["response"])
        for r in pair.tracer.select(layer="ike", name="segment_received", node="r")
        if r.data["exchange"] in ("CREATE_CHILD_SA", "IKE_FOLLOWUP_KE")
    ]
    # at the responder: the peer's CREATE_CHILD_SA request and the answer to its own, then both IKE_FOLLOWUP_KE
    assert order[:2] == [("r", "CREATE_CHILD_SA", False), ("r", "CREATE_CHILD_SA", True)]
    assert sorted(order[2:4]) == [("r", "IKE_FOLLOWUP_KE", False), ("r", "IKE_FOLLOWUP_KE", True)]
    assert not pair.of("i", ChildSaFailed) and not pair.of("r", ChildSaFailed)
    assert len(pair.of("r", LivenessChecked)) == 1
    esp_both_ways(pair, b"after crossing rekeys")


# --- a misbehaving peer ---------------------------------------------------------------------------------------------


def _send_followup_request(pair: Pair, inner: tuple[Payload, ...]) -> list[tuple[Payload, ...]]:
    """The initiator's real SA sends an IKE_FOLLOWUP_KE request with ``inner`` as it is (properly encrypted, at
    its next message ID): a peer that gets the series wrong. Returns the payloads of the response."""
    answers: list[tuple[Payload, ...]] = []
    sa = pair.i.sa
    sa._request(IKE_FOLLOWUP_KE, inner, lambda message, payloads, t: answers.append(payloads), pair.now)
    pair.i._pump_sa(sa, pair.now)
    pair.run(pair.now + 1.0)
    return answers


@pytest.mark.parametrize("case", ["made-up link", "used link", "no link", "wrong method"])
def test_responder_refuses_a_bad_ike_followup_ke_request_and_carries_on(
    case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    links: list[bytes] = []
    real = sa_module.link_notify

    def keep(link: bytes) -> NotifyPayload:
        links.append(link)
        return real(link)

    monkeypatch.setattr(sa_module, "link_notify", keep)
    pair = hybrid_pair("x25519+mlkem768")
    _, ek = initiator_key_exchange(36, random.Random(5))
    if case == "used link":
        pair.i.rekey_child(now=pair.now)  # a whole series: its link is spent once the last round is answered
        pair.run(pair.now + 1.0)
        assert links and len([e for e in pair.of("r", ChildSaEstablished) if e.rekeyed_spi_in]) == 1
        inner = (KePayload(36, ek), link_notify(links[0]))
    elif case == "made-up link":
        inner = (KePayload(36, ek), link_notify(b"\x00" * 8))
    elif case == "no link":
        inner = (KePayload(36, ek),)
    else:  # a state waits for ML-KEM-768; an X25519 value comes
        pair.tamper = _hold_followup_requests([pair.now + 5.0], pair)
        pair.i.rekey_child(now=pair.now)
        pair.run(pair.now + 0.1)
        sa = pair.i.sa  # this end forgets its series and its lost request; the responder waits on the link
        sa._followup, sa._outstanding, sa._next_request_mid = None, None, sa._next_request_mid - 1
        pair.tamper = None
        _, x25519 = initiator_key_exchange(31, random.Random(6))
        inner = (KePayload(31, x25519), link_notify(links[-1]))
    expected = INVALID_SYNTAX if case in ("no link", "wrong method") else STATE_NOT_FOUND
    (answer,) = _send_followup_request(pair, inner)
    assert [p.notify_type for p in answer if isinstance(p, NotifyPayload)] == [expected]
    assert not any(isinstance(p, KePayload) for p in answer)
    refused = [d for d in followup_records(pair, "r") if d.get("result") in ("STATE_NOT_FOUND", "INVALID_SYNTAX")]
    assert len(refused) == 1
    if case == "wrong method":  # the waiting series ended there: nothing installed, the state gone
        assert refused[0]["for"] == "child" and "method 36" in refused[0]["reason"]
        assert not [e for e in pair.of("r", ChildSaEstablished) if e.rekeyed_spi_in]
        assert not pair.r.sas()[0]._followup_states
    assert pair.r.sas()[0].established and not pair.of("r", IkeSaDeleted)
    esp_both_ways(pair, b"after a bad request")


def test_crossing_hybrid_ike_sa_rekeys_end_with_one_hybrid_ike_sa() -> None:
    """Both ends rekey at once (RFC 7296 §2.8.2): TEMPORARY_FAILURE both ways, then one retry wins, hybrid."""
    pair = hybrid_pair("p256+mlkem1024")
    pair.i.rekey_ike(now=pair.now)
    pair.r.rekey_ike(now=pair.now)
    pair.run(pair.now + 10.0)
    (new_i,), (new_r,) = pair.i.sas(), pair.r.sas()
    assert new_i.established and new_r.established and (new_i.spi_i, new_i.spi_r) == (new_r.spi_i, new_r.spi_r)
    assert new_i.keys == new_r.keys and new_i.additional_kes == new_r.additional_kes == (37,)
    assert len(pair.of("i", IkeSaRekeyed)) == len(pair.of("r", IkeSaRekeyed)) >= 1
    assert not pair.of("i", IkeSaDeleted) and not pair.of("r", IkeSaDeleted)
    collisions = [
        r for r in pair.tracer.select(layer="ike", name="state_updated") if r.data.get("ike_rekey") == "collision"
    ]
    assert collisions
    esp_both_ways(pair, b"after crossing IKE SA rekeys")


def test_a_rekey_asked_for_while_the_peers_rekey_waits_for_its_followup_waits_too() -> None:
    """The responder of a hybrid IKE SA rekey that is between CREATE_CHILD_SA and IKE_FOLLOWUP_KE does not start
    its own rekey (it would only collide, §2.8.2): it waits, and the peer's rekey completes alone."""
    pair = hybrid_pair("x25519+mlkem768")
    until = [pair.now + 0.3]
    pair.tamper = _hold_followup_requests(until, pair)  # the first try of the IKE_FOLLOWUP_KE request is lost
    pair.i.rekey_ike(now=pair.now)
    pair.run(pair.now + 0.1)
    assert pair.r.sas()[0]._followup_states  # the responder waits on its link
    pair.r.rekey_ike(now=pair.now)
    pair.run(pair.now + 5.0)
    assert exchanges(pair, "r", 0.0).count(("CREATE_CHILD_SA", 0, False)) == 0  # it never sent its own
    updates = pair.tracer.select(layer="ike", name="state_updated")
    assert not [r for r in updates if r.data.get("ike_rekey") == "collision"]
    (rekeyed,) = pair.of("r", IkeSaRekeyed)
    assert not rekeyed.initiated and pair.i.sa.spi_i == rekeyed.spi_i and pair.i.sa.additional_kes == (36,)
    esp_both_ways(pair, b"one rekey")


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_a_hybrid_session_rekeyed_halfway_in_the_simulator_is_byte_exact(transport: str) -> None:
    """lab.scenario's IKE session rekeys its Child SA halfway through the transfer: over the simulated network
    the CREATE_CHILD_SA is followed by one IKE_FOLLOWUP_KE, and the second half arrives on the hybrid Child SA."""
    from lab.scenario import Scenario, run_scenario
    from lab.scenario.ike import IkeSession
    from lab.trace import MemoryTracer

    session = IkeSession(
        name="pq-rekey",
        rekey=True,
        initiator_config={"transport": transport, "dh_groups": (31,), "additional_key_exchanges": (36,)},
        responder_config={"dh_groups": (31, 19)},
        data_bytes=48 * 1024,
    )
    scenario = Scenario(
        name=f"pq-rekey-{transport}",
        description="hybrid IKE rekeyed in the simulator",
        topology="single-path",
        transfers=(session,),
        time_limit_s=60.0,
    )
    result = run_scenario(scenario, seed=5, pcaps=False)
    assert result.ok, [(t.name, t.error) for t in result.transfers]
    assert any(t.extra.get("rekeyed") for t in result.transfers)
    tracer = result.network.tracer
    assert isinstance(tracer, MemoryTracer)
    followups = [
        (r.node, r.data["message_id"], r.data["response"])
        for r in tracer.records
        if r.layer == "ike" and r.name == "segment_sent" and r.data.get("exchange") == "IKE_FOLLOWUP_KE"
    ]
    assert followups == [("h1", 4, False), ("h2", 4, True)]  # after IKE_INTERMEDIATE 1, IKE_AUTH 2, CREATE 3
    keys = [r.data for r in tracer.records if r.layer == "esp" and r.name == "key_updated" and r.data.get("rekeyed")]
    assert len(keys) == 2 and all(k["additional_kes"] == [36] for k in keys)
