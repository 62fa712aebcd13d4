"""lab.ike.multi_ke: RFC 9370 key updates and RFC 9242 IntAuth, against a second plain implementation."""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest

from lab.errors import RemoteProtocolError
from lab.ike.fragmentation import FragmentReassembler, MessageReassembled, fragment_message, max_ike_message_len
from lab.ike.keys import decrypt_message, derive_ike_sa_keys, encr_key_len, encrypt_message, psk_auth
from lab.ike.mlkem import KE_ML_KEM_768, KE_ML_KEM_1024
from lab.ike.multi_ke import (
    IKE_INTERMEDIATE,
    TRANSFORM_ADDKE1,
    derive_child_sa_keys_multi,
    ike_auth_message_id,
    initiator_key_exchange,
    initiator_shared_secret,
    int_auth,
    int_auth_chunks,
    int_auth_step,
    negotiated_additional_key_exchanges,
    offered_additional_key_exchanges,
    psk_auth_with_int_auth,
    responder_key_exchange,
    select_additional_key_exchanges,
    update_ike_sa_keys,
    with_additional_key_exchanges,
)
from lab.wire.ikev2 import (
    DH_CURVE25519,
    DH_ECP_256,
    ENCR_AES_GCM_16,
    PRF_HMAC_SHA2_256,
    PROTO_IKE,
    TRANSFORM_DH,
    TRANSFORM_ENCR,
    TRANSFORM_PRF,
    IkeMessage,
    KePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    Transform,
    decode_ike_message,
    encode_ike_message,
)

NI, NR = bytes(range(32)), bytes(range(100, 132))
SPI_I, SPI_R = bytes.fromhex("0102030405060708"), bytes.fromhex("1112131415161718")
ENCR_LEN = encr_key_len(ENCR_AES_GCM_16, 256)


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def _reference_update(sk_d: bytes, secret: bytes, total: int) -> tuple[bytes, bytes]:
    """RFC 9370 §2.2.2 written out from the RFC with hmac alone: (SKEYSEED(n), prf+ stream)."""
    seed = _hmac(sk_d, secret + NI + NR)
    stream, block, i = b"", b"", 1
    while len(stream) < total:
        block = _hmac(seed, block + NI + NR + SPI_I + SPI_R + bytes([i]))
        stream += block
        i += 1
    return seed, stream[:total]


def _initial_keys() -> object:
    return derive_ike_sa_keys(
        prf_id=PRF_HMAC_SHA2_256,
        shared_secret=b"\x42" * 32,
        ni=NI,
        nr=NR,
        spi_i=SPI_I,
        spi_r=SPI_R,
        encr_key_len=ENCR_LEN,
    )


def test_key_update_matches_the_rfc_formula_written_out() -> None:
    keys0 = _initial_keys()
    sk1, sk2 = b"\x01" * 32, b"\x02" * 32
    keys1 = update_ike_sa_keys(
        keys0,
        prf_id=PRF_HMAC_SHA2_256,
        shared_secret=sk1,
        ni=NI,
        nr=NR,
        spi_i=SPI_I,
        spi_r=SPI_R,
        encr_key_len=ENCR_LEN,
    )
    seed1, stream1 = _reference_update(keys0.sk_d, sk1, 32 + 36 + 36 + 32 + 32)
    assert keys1.skeyseed == seed1
    assert keys1.sk_d + keys1.sk_ai + keys1.sk_ar + keys1.sk_ei + keys1.sk_er + keys1.sk_pi + keys1.sk_pr == stream1
    assert (keys1.sk_d, keys1.sk_ei, keys1.sk_er, keys1.sk_pr) == (
        stream1[:32],
        stream1[32:68],
        stream1[68:104],
        stream1[136:168],
    )
    keys2 = update_ike_sa_keys(
        keys1,
        prf_id=PRF_HMAC_SHA2_256,
        shared_secret=sk2,
        ni=NI,
        nr=NR,
        spi_i=SPI_I,
        spi_r=SPI_R,
        encr_key_len=ENCR_LEN,
    )
    seed2, stream2 = _reference_update(stream1[:32], sk2, 168)  # chained through SK_d(1)
    assert (keys2.skeyseed, keys2.sk_d, keys2.sk_pr) == (seed2, stream2[:32], stream2[136:])


def test_key_update_known_answer() -> None:
    # Fixed inputs; the value was computed once with _reference_update and pins the function's output.
    keys1 = update_ike_sa_keys(
        _initial_keys(),
        prf_id=PRF_HMAC_SHA2_256,
        shared_secret=b"\x01" * 32,
        ni=NI,
        nr=NR,
        spi_i=SPI_I,
        spi_r=SPI_R,
        encr_key_len=ENCR_LEN,
    )
    assert hashlib.sha256(keys1.skeyseed + keys1.sk_d + keys1.sk_ei + keys1.sk_pr).hexdigest() == EXPECTED_KAT


EXPECTED_KAT = "b14892d114a75a5ea2050701835ef0f005facf446fe81f93c7c6cc8284c00698"  # SHA-256 over the four keys


@pytest.mark.parametrize(("ke", "addke"), [(DH_CURVE25519, KE_ML_KEM_768), (DH_ECP_256, KE_ML_KEM_1024)])
def test_hybrid_exchange_leaves_both_sides_with_the_same_keys(ke: int, addke: int) -> None:
    rng_i, rng_r = random.Random(1), random.Random(2)
    private, kei = initiator_key_exchange(ke, rng_i)
    ker, g_ir_r = responder_key_exchange(ke, kei, rng_r)
    g_ir_i = initiator_shared_secret(ke, private, ker)
    assert g_ir_i == g_ir_r
    keys = {
        side: derive_ike_sa_keys(
            prf_id=PRF_HMAC_SHA2_256, shared_secret=s, ni=NI, nr=NR, spi_i=SPI_I, spi_r=SPI_R, encr_key_len=ENCR_LEN
        )
        for side, s in (("i", g_ir_i), ("r", g_ir_r))
    }
    # IKE_INTERMEDIATE, MID 1, protected by the IKE_SA_INIT keys
    seed, ek = initiator_key_exchange(addke, rng_i)
    request = IkeMessage(SPI_I, SPI_R, IKE_INTERMEDIATE, 1, initiator=True)
    wire = encrypt_message(request, [KePayload(addke, ek)], sk_e=keys["i"].sk_ei, iv=bytes(8))
    assert len(wire) > 1200  # the reason IKE_INTERMEDIATE can be fragmented and IKE_SA_INIT cannot
    _, (received,) = decrypt_message(wire, sk_e=keys["r"].sk_ei)
    ciphertext, secret_r = responder_key_exchange(addke, received.key_data, rng_r)
    secret_i = initiator_shared_secret(addke, seed, ciphertext)
    new = {
        side: update_ike_sa_keys(
            keys[side],
            prf_id=PRF_HMAC_SHA2_256,
            shared_secret=s,
            ni=NI,
            nr=NR,
            spi_i=SPI_I,
            spi_r=SPI_R,
            encr_key_len=ENCR_LEN,
        )
        for side, s in (("i", secret_i), ("r", secret_r))
    }
    assert new["i"] == new["r"]
    assert new["i"].sk_ei != keys["i"].sk_ei
    auth = IkeMessage(SPI_I, SPI_R, 35, ike_auth_message_id(1), initiator=True)
    sealed = encrypt_message(auth, [NotifyPayload(16384)], sk_e=new["i"].sk_ei, iv=bytes(8))
    assert decrypt_message(sealed, sk_e=new["r"].sk_ei)[1] == (NotifyPayload(16384),)


def test_int_auth_chunks_are_the_adjusted_wire_message() -> None:
    message = IkeMessage(SPI_I, SPI_R, IKE_INTERMEDIATE, 1, initiator=True)
    inner = [KePayload(KE_ML_KEM_768, b"\x55" * 1184), NotifyPayload(16438)]
    key = _initial_keys().sk_ei
    wire = encrypt_message(message, inner, sk_e=key, iv=b"\x07" * 8, padding=b"\x00" * 3)
    a, p = int_auth_chunks(message, inner)
    # from the encrypted bytes: header | SK generic header, both Lengths shrunk to drop IV, padding, Pad Length, ICV
    plain_len = len(wire) - 28 - 4 - 8 - 16 - 4  # IV, ICV, 3 padding + Pad Length
    assert len(p) == plain_len
    expected_a = wire[:24] + (28 + 4 + plain_len).to_bytes(4, "big") + wire[28:30] + (4 + plain_len).to_bytes(2, "big")
    assert a == expected_a
    assert decode_ike_message(a + p).payloads[-1].data == p


def test_int_auth_chain_and_auth_payload() -> None:
    keys0 = _initial_keys()
    req = IkeMessage(SPI_I, SPI_R, IKE_INTERMEDIATE, 1, initiator=True)
    resp = IkeMessage(SPI_I, SPI_R, IKE_INTERMEDIATE, 1, initiator=False, response=True)
    inner_i, inner_r = [KePayload(KE_ML_KEM_768, b"\x01" * 1184)], [KePayload(KE_ML_KEM_768, b"\x02" * 1088)]
    i1 = int_auth_step(PRF_HMAC_SHA2_256, sk_p=keys0.sk_pi, previous=None, message=req, inner=inner_i)
    a, p = int_auth_chunks(req, inner_i)
    assert i1 == _hmac(keys0.sk_pi, a + p)
    r1 = int_auth_step(PRF_HMAC_SHA2_256, sk_p=keys0.sk_pr, previous=None, message=resp, inner=inner_r)
    req2 = IkeMessage(SPI_I, SPI_R, IKE_INTERMEDIATE, 2, initiator=True)
    i2 = int_auth_step(PRF_HMAC_SHA2_256, sk_p=b"k2", previous=i1, message=req2, inner=[])
    a2, p2 = int_auth_chunks(req2, [])
    assert p2 == b"" and a2[16] == 46 and a2[28] == 0  # empty SK: Next Payload 0, no P
    assert i2 == _hmac(b"k2", i1 + a2)
    blob = int_auth(int_auth_i=i2, int_auth_r=r1, ike_auth_message_id=3)
    assert blob == i2 + r1 + b"\x00\x00\x00\x03"
    plain = psk_auth(prf_id=PRF_HMAC_SHA2_256, psk=b"s", real_message=b"M", peer_nonce=NR, sk_p=b"p", id_body=b"I")
    with_int = psk_auth_with_int_auth(
        prf_id=PRF_HMAC_SHA2_256, psk=b"s", real_message=b"M", peer_nonce=NR, sk_p=b"p", id_body=b"I", int_auth=blob
    )
    assert with_int == _hmac(_hmac(b"s", b"Key Pad for IKEv2"), b"M" + NR + _hmac(b"p", b"I") + blob)
    assert with_int != plain


def _proposal() -> Proposal:
    return Proposal(
        1,
        PROTO_IKE,
        (
            Transform(TRANSFORM_ENCR, ENCR_AES_GCM_16),
            Transform(TRANSFORM_PRF, PRF_HMAC_SHA2_256),
            Transform(TRANSFORM_DH, DH_CURVE25519),
        ),
    )


def test_addke_transforms_in_proposals_round_trip_and_select() -> None:
    offered = with_additional_key_exchanges(_proposal(), [[KE_ML_KEM_768, KE_ML_KEM_1024], [KE_ML_KEM_1024, 0]])
    assert offered_additional_key_exchanges(offered) == {6: (36, 37), 7: (37, 0)}
    message = IkeMessage(SPI_I, bytes(8), 34, 0, (SaPayload((offered,)),), initiator=True)
    assert decode_ike_message(encode_ike_message(message)).payloads[0].proposals[0] == offered
    assert select_additional_key_exchanges(offered, {36, 37}) == {6: 36, 7: 37}
    assert select_additional_key_exchanges(offered, {37}) == {6: 37, 7: 37}
    assert select_additional_key_exchanges(offered, {36}) == {6: 36, 7: 0}
    assert select_additional_key_exchanges(offered, set()) is None
    chosen = with_additional_key_exchanges(_proposal(), [[36], [0]])
    assert negotiated_additional_key_exchanges(chosen) == (36,)
    with pytest.raises(RemoteProtocolError):
        negotiated_additional_key_exchanges(offered)
    with pytest.raises(ValueError):
        with_additional_key_exchanges(_proposal(), [[36]] * 8)
    assert TRANSFORM_ADDKE1 == 6


def test_child_sa_keymat_with_several_secrets() -> None:
    keys = derive_child_sa_keys_multi(
        prf_id=PRF_HMAC_SHA2_256,
        sk_d=b"d" * 32,
        ni=NI,
        nr=NR,
        shared_secrets=[b"a" * 32, b"b" * 32],
        encr_key_len=36,
    )
    # RFC 9370 §2.2.4: SK(0) | Ni | Nr | SK(1), the nonces where RFC 7296 has them
    t1 = _hmac(b"d" * 32, b"a" * 32 + NI + NR + b"b" * 32 + b"\x01")
    assert keys.encr_i2r == t1 + _hmac(b"d" * 32, t1 + b"a" * 32 + NI + NR + b"b" * 32 + b"\x02")[:4]


def test_fragmented_intermediate_exchange_authenticates_as_the_whole_message() -> None:
    """ECDH P-256 + ML-KEM-1024 over a 576-octet IPv4 path: KEi(1) in RFC 7383 fragments, IntAuth as if whole."""
    rng_i, rng_r = random.Random(3), random.Random(4)
    private, kei = initiator_key_exchange(DH_ECP_256, rng_i)
    ker, g_ir = responder_key_exchange(DH_ECP_256, kei, rng_r)
    assert initiator_shared_secret(DH_ECP_256, private, ker) == g_ir
    keys0 = derive_ike_sa_keys(
        prf_id=PRF_HMAC_SHA2_256, shared_secret=g_ir, ni=NI, nr=NR, spi_i=SPI_I, spi_r=SPI_R, encr_key_len=ENCR_LEN
    )
    seed, ek = initiator_key_exchange(KE_ML_KEM_1024, rng_i)
    request = IkeMessage(SPI_I, SPI_R, IKE_INTERMEDIATE, 1, initiator=True)
    inner = (KePayload(KE_ML_KEM_1024, ek),)
    counter = iter(range(1, 100))
    fragments = fragment_message(
        request,
        inner,
        sk_e=keys0.sk_ei,
        next_iv=lambda: next(counter).to_bytes(8, "big"),
        max_message_len=max_ike_message_len(path_mtu=576, port=4500),
    )
    assert len(fragments) == 4 and all(len(f) <= 544 for f in fragments)
    reassembler = FragmentReassembler()
    *_, done = [reassembler.add(f, sk_e=keys0.sk_ei, now=0.0) for f in fragments]
    assert isinstance(done, MessageReassembled) and done.inner == inner
    sender_view = int_auth_step(PRF_HMAC_SHA2_256, sk_p=keys0.sk_pi, previous=None, message=request, inner=inner)
    receiver_view = int_auth_step(
        PRF_HMAC_SHA2_256, sk_p=keys0.sk_pi, previous=None, message=done.message, inner=done.inner
    )
    assert receiver_view == sender_view
    ciphertext, secret_r = responder_key_exchange(KE_ML_KEM_1024, done.inner[0].key_data, rng_r)
    assert initiator_shared_secret(KE_ML_KEM_1024, seed, ciphertext) == secret_r
