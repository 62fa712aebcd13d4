"""lab.ike.keys against the libreswan exchange of vectors.md §4 (GOLD) and published vectors.

Every value in ``captures/ikev2_psk_aesgcm256_dh19_vs_libreswan.json`` came
from an IKE_SA_INIT + IKE_AUTH (PSK, AES-GCM-256, PRF-HMAC-SHA2-256, DH 19)
between a Python initiator and libreswan 4.10, which decrypted our IKE_AUTH,
accepted our AUTH and sent an AUTH that verifies. The Child SA KEYMAT rows
are DERIVED (no ESP peer).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import warnings
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lab.errors import DecodeError, RemoteProtocolError
from lab.esp.sa import aes_gcm_seal
from lab.ike.keys import (
    KEY_PAD,
    MODP_2048_PRIME,
    IkeIntegrityError,
    IkeSaKeys,
    decrypt_message,
    derive_child_sa_keys,
    derive_ike_sa_keys,
    dh_public_value,
    dh_shared_secret,
    encr_key_len,
    encrypt_message,
    generate_dh_private_key,
    integ_key_len,
    nat_detection_hash,
    prf,
    prf_plus,
    psk_auth,
    signed_octets,
    skeyseed,
    tshark_esp_record,
    tshark_ikev2_record,
)
from lab.wire.ikev2 import (
    AUTH_HMAC_SHA2_256_128,
    DH_CURVE25519,
    DH_ECP_256,
    DH_MODP_2048,
    ENCR_AES_CBC,
    ENCR_AES_GCM_8,
    ENCR_AES_GCM_12,
    ENCR_AES_GCM_16,
    IKE_AUTH,
    INFORMATIONAL,
    NAT_DETECTION_DESTINATION_IP,
    NAT_DETECTION_SOURCE_IP,
    PAYLOAD_IDI,
    PRF_HMAC_SHA1,
    PRF_HMAC_SHA2_256,
    PRF_HMAC_SHA2_384,
    PRF_HMAC_SHA2_512,
    AuthPayload,
    DeletePayload,
    IdiPayload,
    IdrPayload,
    IkeMessage,
    NotifyPayload,
    VendorIdPayload,
    decode_ike_message,
    push_payload_chain,
)
from tests.ike.test_wire import payload_lists

CAPTURES = Path(__file__).parent / "captures"
GOLD = json.loads((CAPTURES / "ikev2_psk_aesgcm256_dh19_vs_libreswan.json").read_text())
H = bytes.fromhex
SHA256 = PRF_HMAC_SHA2_256
GCM256 = encr_key_len(ENCR_AES_GCM_16, 256)


def gold(name: str) -> bytes:
    return H(GOLD[name])


def gold_private_key() -> bytes:
    return int(GOLD["dh_priv_i"], 16).to_bytes(32, "big")


@pytest.fixture(scope="module")
def sa_keys() -> IkeSaKeys:
    return derive_ike_sa_keys(
        prf_id=SHA256,
        shared_secret=gold("g_ir"),
        ni=gold("Ni"),
        nr=gold("Nr"),
        spi_i=gold("SPIi"),
        spi_r=gold("SPIr"),
        encr_key_len=GCM256,
    )


# --- GOLD: libreswan 4.10 (vectors.md §4) ------------------------------------------------------------------


def test_dh19_public_value_and_shared_secret() -> None:
    assert dh_public_value(DH_ECP_256, gold_private_key()) == gold("KEi")
    assert dh_shared_secret(DH_ECP_256, gold_private_key(), gold("KEr")) == gold("g_ir")


def test_skeyseed_and_the_seven_keys(sa_keys: IkeSaKeys) -> None:
    assert GCM256 == 36  # 32-byte key + 4-byte salt (RFC 5282 §7.1)
    assert skeyseed(SHA256, ni=gold("Ni"), nr=gold("Nr"), shared_secret=gold("g_ir")) == gold("SKEYSEED")
    assert sa_keys.skeyseed == gold("SKEYSEED")
    assert (sa_keys.sk_d, sa_keys.sk_ei, sa_keys.sk_er, sa_keys.sk_pi, sa_keys.sk_pr) == tuple(
        gold(k) for k in ("SK_d", "SK_ei", "SK_er", "SK_pi", "SK_pr")
    )
    assert sa_keys.sk_ai == sa_keys.sk_ar == b""  # AEAD: no integrity keys


def test_keymat_layout_matches_libreswan_log(sa_keys: IkeSaKeys) -> None:
    """libreswan: 168 bytes of keymat, SK_d at 0 (32), SK_ei at 32 (32) then its 4-byte salt at 64."""
    stream = prf_plus(SHA256, gold("SKEYSEED"), gold("Ni") + gold("Nr") + gold("SPIi") + gold("SPIr"), 168)
    assert stream[0:32] == sa_keys.sk_d
    assert stream[32:64] + stream[64:68] == sa_keys.sk_ei
    assert stream[136:168] == sa_keys.sk_pr


def test_psk_auth_both_directions(sa_keys: IkeSaKeys) -> None:
    psk = GOLD["PSK"].encode()
    assert prf(SHA256, sa_keys.sk_pi, gold("IDi_body")) == gold("MACedIDForI")
    initiator = psk_auth(
        prf_id=SHA256,
        psk=psk,
        real_message=gold("msg1"),
        peer_nonce=gold("Nr"),
        sk_p=sa_keys.sk_pi,
        id_body=gold("IDi_body"),
    )
    responder = psk_auth(
        prf_id=SHA256,
        psk=psk,
        real_message=gold("msg2"),
        peer_nonce=gold("Ni"),
        sk_p=sa_keys.sk_pr,
        id_body=gold("IDr_body"),
    )
    assert (initiator, responder) == (gold("AUTHi"), gold("AUTHr"))
    octets = signed_octets(
        prf_id=SHA256, real_message=gold("msg1"), peer_nonce=gold("Nr"), sk_p=sa_keys.sk_pi, id_body=gold("IDi_body")
    )
    assert octets == gold("msg1") + gold("Nr") + gold("MACedIDForI")
    assert len(KEY_PAD) == 17


def test_wrong_psk_gives_another_auth(sa_keys: IkeSaKeys) -> None:
    auth = psk_auth(
        prf_id=SHA256,
        psk=b"kat-psk-0123456788",
        real_message=gold("msg1"),
        peer_nonce=gold("Nr"),
        sk_p=sa_keys.sk_pi,
        id_body=gold("IDi_body"),
    )
    assert auth != gold("AUTHi")


def test_decrypt_the_captured_sk_payloads(sa_keys: IkeSaKeys) -> None:
    request, inner = decrypt_message(gold("msg3"), sk_e=sa_keys.sk_ei)
    assert (request.exchange_type, request.message_id) == (IKE_AUTH, 1)
    first, chain = push_payload_chain(inner)
    assert (first, chain + b"\x00") == (PAYLOAD_IDI, gold("msg3_plain"))
    assert inner[0] == IdiPayload(2, b"west") and inner[1] == AuthPayload(2, gold("AUTHi"))

    response, inner = decrypt_message(gold("msg4"), sk_e=sa_keys.sk_er)
    assert response.response and not response.initiator
    assert inner == (IdrPayload(2, b"east"), AuthPayload(2, gold("AUTHr")), NotifyPayload(38))
    assert push_payload_chain(inner)[1] + b"\x00" == gold("msg4_plain")


def test_encrypting_reproduces_both_captured_messages(sa_keys: IkeSaKeys) -> None:
    for name, key in (("msg3", sa_keys.sk_ei), ("msg4", sa_keys.sk_er)):
        message, inner = decrypt_message(gold(name), sk_e=key)
        iv = gold(name)[32:40]
        assert encrypt_message(replace(message, payloads=()), inner, sk_e=key, iv=iv) == gold(name)


def test_tampered_or_misdirected_sk_payload_fails_integrity(sa_keys: IkeSaKeys) -> None:
    data = bytearray(gold("msg3"))
    for position in (20, 29, 35, 100, len(data) - 1):  # header (AAD), SK header (AAD), IV, ciphertext, ICV
        tampered = bytearray(data)
        tampered[position] ^= 0x01
        with pytest.raises((IkeIntegrityError, DecodeError)):
            decrypt_message(bytes(tampered), sk_e=sa_keys.sk_ei)
    with pytest.raises(IkeIntegrityError) as exc:
        decrypt_message(bytes(data), sk_e=sa_keys.sk_er)  # the responder's key
    assert "west" not in str(exc.value)


def test_nat_detection_in_libreswans_tcp_response() -> None:
    """vectors.md §4: TCP addresses and ports go into the hashes (RFC 9329 §6.5)."""
    message = decode_ike_message(gold("msg2"))
    source = message.notifies(NAT_DETECTION_SOURCE_IP)[0].data
    destination = message.notifies(NAT_DETECTION_DESTINATION_IP)[0].data
    assert nat_detection_hash(gold("SPIi"), gold("SPIr"), "192.0.2.2", 4500) == source
    assert nat_detection_hash(gold("SPIi"), gold("SPIr"), "192.0.2.1", 0xAB5C) == destination


def test_child_sa_keymat_derived() -> None:
    keys = derive_child_sa_keys(prf_id=SHA256, sk_d=gold("SK_d"), ni=gold("Ni"), nr=gold("Nr"), encr_key_len=GCM256)
    assert keys.encr_i2r == gold("child_KEYMAT_i2r_key_salt")
    assert keys.encr_r2i == gold("child_KEYMAT_r2i_key_salt")
    assert keys.integ_i2r == keys.integ_r2i == b""


def test_child_sa_keymat_order_with_integrity_and_pfs() -> None:
    """RFC 7296 §2.17: i->r before r->i, encryption key before integrity key; PFS secret first in the seed."""
    keys = derive_child_sa_keys(
        prf_id=SHA256,
        sk_d=b"d" * 32,
        ni=b"n" * 32,
        nr=b"r" * 32,
        encr_key_len=32,
        integ_key_len=32,
        shared_secret=b"s" * 32,
    )
    stream = prf_plus(SHA256, b"d" * 32, b"s" * 32 + b"n" * 32 + b"r" * 32, 128)
    assert keys.encr_i2r + keys.integ_i2r + keys.encr_r2i + keys.integ_r2i == stream


# --- PRFs and prf+ --------------------------------------------------------------------------------------------


def test_prf_is_hmac_rfc4231_case_2() -> None:
    assert prf(SHA256, b"Jefe", b"what do ya want for nothing?") == H(
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


@pytest.mark.parametrize(
    ("prf_id", "name"),
    [(PRF_HMAC_SHA1, "sha1"), (SHA256, "sha256"), (PRF_HMAC_SHA2_384, "sha384"), (PRF_HMAC_SHA2_512, "sha512")],
)
def test_prf_plus_follows_its_definition(prf_id: int, name: str) -> None:
    key, seed = b"K" * 20, b"seed"
    t1 = hmac.new(key, seed + b"\x01", name).digest()
    t2 = hmac.new(key, t1 + seed + b"\x02", name).digest()
    t3 = hmac.new(key, t2 + seed + b"\x03", name).digest()
    size = hashlib.new(name).digest_size
    assert prf_plus(prf_id, key, seed, 2 * size + 5) == t1 + t2 + t3[:5]
    keys = derive_ike_sa_keys(
        prf_id=prf_id,
        shared_secret=b"g",
        ni=b"i",
        nr=b"r",
        spi_i=bytes(8),
        spi_r=bytes(8),
        encr_key_len=20,
        integ_key_len=32,
    )
    assert (len(keys.sk_d), len(keys.sk_pi), len(keys.sk_ai), len(keys.sk_ei)) == (size, size, 32, 20)


@given(st.integers(0, 500), st.integers(0, 500))
def test_prf_plus_prefixes_agree(a: int, b: int) -> None:
    short, long = sorted((a, b))
    assert prf_plus(SHA256, b"k", b"s", long)[:short] == prf_plus(SHA256, b"k", b"s", short)


def test_prf_plus_stops_at_255_blocks() -> None:
    assert len(prf_plus(SHA256, b"k", b"s", 255 * 32)) == 255 * 32
    with pytest.raises(ValueError, match="255"):
        prf_plus(SHA256, b"k", b"s", 255 * 32 + 1)
    with pytest.raises(ValueError):
        prf(99, b"k", b"s")


def test_key_lengths() -> None:
    assert [encr_key_len(ENCR_AES_GCM_16, bits) for bits in (128, 192, 256)] == [20, 28, 36]
    assert encr_key_len(ENCR_AES_GCM_8, 128) == encr_key_len(ENCR_AES_GCM_12, 128) == 20
    assert encr_key_len(ENCR_AES_CBC, 256) == 32
    assert (integ_key_len(0), integ_key_len(AUTH_HMAC_SHA2_256_128)) == (0, 32)
    with pytest.raises(ValueError):
        encr_key_len(ENCR_AES_GCM_16, 512)
    with pytest.raises(ValueError):
        encr_key_len(3, 128)


# --- Diffie-Hellman -----------------------------------------------------------------------------------------------


def test_x25519_rfc7748_vector() -> None:
    alice = H("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
    bob = H("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
    alice_public = dh_public_value(DH_CURVE25519, alice)
    bob_public = dh_public_value(DH_CURVE25519, bob)
    assert alice_public == H("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
    assert bob_public == H("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
    shared = H("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
    assert dh_shared_secret(DH_CURVE25519, alice, bob_public) == shared
    # RFC 8031 §3.2: the most significant bit of the final byte is masked
    masked = bob_public[:-1] + bytes((bob_public[-1] | 0x80,))
    assert dh_shared_secret(DH_CURVE25519, alice, masked) == shared


def test_modp_2048_agrees_with_cryptography() -> None:
    dh = pytest.importorskip("cryptography.hazmat.primitives.asymmetric.dh")
    a = generate_dh_private_key(DH_MODP_2048, random.Random(1))
    b = generate_dh_private_key(DH_MODP_2048, random.Random(2))
    a_public = dh_public_value(DH_MODP_2048, a)
    shared = dh_shared_secret(DH_MODP_2048, b, a_public)
    assert len(a_public) == len(shared) == 256
    assert shared == dh_shared_secret(DH_MODP_2048, a, dh_public_value(DH_MODP_2048, b))
    with warnings.catch_warnings():  # cryptography 50 deprecates finite-field DH; it is only the cross-check here
        warnings.simplefilter("ignore")
        params = dh.DHParameterNumbers(MODP_2048_PRIME, 2)
        x = int.from_bytes(a, "big")
        key = dh.DHPrivateNumbers(x, dh.DHPublicNumbers(pow(2, x, MODP_2048_PRIME), params)).private_key()
        peer = dh.DHPublicNumbers(int.from_bytes(dh_public_value(DH_MODP_2048, b), "big"), params).public_key()
        assert key.exchange(peer).rjust(256, b"\x00") == shared
        assert key.public_key().public_numbers().y.to_bytes(256, "big") == a_public


@pytest.mark.parametrize("group", [DH_MODP_2048, DH_ECP_256, DH_CURVE25519])
def test_both_sides_agree(group: int) -> None:
    a = generate_dh_private_key(group, random.Random(7))
    b = generate_dh_private_key(group, random.Random(8))
    assert dh_shared_secret(group, a, dh_public_value(group, b)) == dh_shared_secret(
        group, b, dh_public_value(group, a)
    )


BAD_PEER_VALUES = [
    pytest.param(DH_ECP_256, bytes(63), id="ecp-short"),
    pytest.param(DH_ECP_256, bytes(64), id="ecp-not-on-curve"),
    pytest.param(DH_CURVE25519, bytes(32), id="x25519-all-zero"),
    pytest.param(DH_MODP_2048, (1).to_bytes(256, "big"), id="modp-one"),
    pytest.param(DH_MODP_2048, (MODP_2048_PRIME - 1).to_bytes(256, "big"), id="modp-p-minus-1"),
]


@pytest.mark.parametrize(("group", "peer"), BAD_PEER_VALUES)
def test_bad_peer_values_are_remote_errors(group: int, peer: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        dh_shared_secret(group, generate_dh_private_key(group, random.Random(3)), peer)


def test_unsupported_group() -> None:
    with pytest.raises(ValueError, match="group"):
        generate_dh_private_key(22, random.Random(0))


# --- the SK payload -----------------------------------------------------------------------------------------------


@given(
    payload_lists,
    st.sampled_from([ENCR_AES_GCM_8, ENCR_AES_GCM_12, ENCR_AES_GCM_16]),
    st.sampled_from([128, 256]),
    st.binary(max_size=20),
    st.binary(min_size=8, max_size=8),
    st.booleans(),
)
def test_sk_round_trip(inner: list, encr: int, bits: int, padding: bytes, iv: bytes, clear_payload: bool) -> None:
    icv = {ENCR_AES_GCM_8: 8, ENCR_AES_GCM_12: 12, ENCR_AES_GCM_16: 16}[encr]
    key = bytes(range(encr_key_len(encr, bits)))
    outer = (VendorIdPayload(b"in the clear"),) if clear_payload else ()
    message = IkeMessage(b"\x11" * 8, b"\x22" * 8, INFORMATIONAL, 5, outer, initiator=True)
    data = encrypt_message(message, inner, sk_e=key, iv=iv, icv_len=icv, padding=padding)
    decoded, plain = decrypt_message(data, sk_e=key, icv_len=icv)
    assert plain == tuple(inner)
    assert decoded.payloads[:-1] == outer
    assert int.from_bytes(data[24:28], "big") == len(data)


def test_bad_pad_length_inside_sk() -> None:
    key = bytes(36)
    message = IkeMessage(b"\x11" * 8, b"\x22" * 8, INFORMATIONAL, 0, initiator=True)
    good = encrypt_message(message, [DeletePayload(1)], sk_e=key, iv=bytes(8))
    aad = good[:32]
    forged = aad + bytes(8) + aes_gcm_seal(key[:32], key[32:], bytes(8), b"\x2a\x00\x00\x08\x01\x00\x00\x00\x20", aad)
    with pytest.raises(DecodeError) as exc:
        decrypt_message(forged, sk_e=key)
    assert (exc.value.field, exc.value.offset) == ("pad_length", 48)


def test_message_without_sk_payload() -> None:
    with pytest.raises(DecodeError) as exc:
        decrypt_message(gold("msg1"), sk_e=bytes(36))
    assert exc.value.field == "next_payload"


# --- tshark records ------------------------------------------------------------------------------------------------


def test_tshark_records(sa_keys: IkeSaKeys) -> None:
    ike = tshark_ikev2_record(spi_i=gold("SPIi"), spi_r=gold("SPIr"), sk_ei=sa_keys.sk_ei, sk_er=sa_keys.sk_er)
    assert ike == (
        f"{GOLD['SPIi']},{GOLD['SPIr']},{GOLD['SK_ei']},{GOLD['SK_er']},"
        '"AES-GCM-256 with 16 octet ICV [RFC5282]",,,"NONE [RFC4306]"'
    )
    esp = tshark_esp_record(
        src="192.0.2.1", dst="192.0.2.2", spi=0xC0FFEE01, encr_key=gold("child_KEYMAT_i2r_key_salt")
    )
    assert esp == (
        f'"IPv4","192.0.2.1","192.0.2.2","0xc0ffee01","AES-GCM with 16 octet ICV [RFC4106]",'
        f'"0x{GOLD["child_KEYMAT_i2r_key_salt"]}","NULL",""'
    )
    assert tshark_esp_record(src="2001:db8::1", dst="2001:db8::2", spi=1, encr_key=b"k").startswith('"IPv6"')
    with pytest.raises(ValueError):
        tshark_ikev2_record(spi_i=b"", spi_r=b"", sk_ei=b"", sk_er=b"", encr_id=28)
