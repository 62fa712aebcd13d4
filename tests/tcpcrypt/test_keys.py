"""tcpcrypt (RFC 8548): wire formats, the key schedule, frame protection, known answers.

Known answers come from /work/shared/spec/vectors.md: §6 (published RFC
vectors, re-checked against the RFC texts) and §4 (P-256 ECDH against
libreswan, GOLD). §7 is DERIVED from the digest's reading of RFC 8548, which
differs from the RFC in the Init1/Init2 cipher-identifier width and the frame
nonce; see the tests in that section for what of it still holds.
"""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from lab.errors import DecodeError, RemoteProtocolError
from lab.tcpcrypt.keys import (
    _NIST_ORDERS,
    KeySet,
    TrafficKey,
    compute_prk,
    cprf,
    extract,
    generate_private_key,
    key_set,
    master_key,
    next_master_key,
    next_session_secret,
    open_frame,
    public_key,
    resumption_half,
    resumption_identifier,
    resumption_suboption_data,
    seal_frame,
    session_id,
    session_nonce,
    session_secret,
    shared_secret,
    split_resumption_data,
    traffic_key,
)
from lab.wire.buffer import Buffer
from lab.wire.eno import negotiation_transcript
from lab.wire.tcpcrypt import (
    AEAD_AES_128_GCM,
    AEAD_AES_256_GCM,
    AEAD_CHACHA20_POLY1305,
    AEADS,
    CONST_KEY_A,
    CONST_KEY_B,
    CONST_NEXTK,
    CONST_REKEY,
    CONST_RESUME,
    CONST_SESSID,
    DRAFT02_AEAD_AES_128_GCM,
    DRAFT02_ENO_EXID,
    DRAFT02_ENO_KIND,
    DRAFT02_TEP_ECDHE_P256,
    INIT1_MAGIC,
    INIT2_MAGIC,
    TCPCRYPT_ECDHE_CURVE448,
    TCPCRYPT_ECDHE_CURVE25519,
    TCPCRYPT_ECDHE_P256,
    TCPCRYPT_ECDHE_P521,
    TEPS,
    Frame,
    Init1,
    Init2,
    Plaintext,
    draft02_transcript,
    frame_id,
    pull_draft02_init1,
    pull_draft02_init2,
    pull_frame,
    pull_init1,
    pull_init2,
    pull_plaintext,
    push_draft02_init1,
    push_draft02_init2,
    push_frame,
    push_init1,
    push_init2,
    push_plaintext,
)

X25519 = TCPCRYPT_ECDHE_CURVE25519
ALL_TEPS = sorted(TEPS)
N_A = bytes(range(32))
N_B = bytes(range(32, 64))

# RFC 7748 §6.1 (vectors.md §6, PUBLISHED)
ALICE_25519 = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_25519_PUB = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_25519 = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_25519_PUB = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED_25519 = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")

# RFC 7748 §6.2 (read from the RFC text; not in vectors.md)
ALICE_448 = bytes.fromhex(
    "9a8f4925d1519f5775cf46b04b5800d4ee9ee8bae8bc5565d498c28dd9c9baf574a9419744897391006382a6f127ab1d9ac2d8c0a598726b"
)
ALICE_448_PUB = bytes.fromhex(
    "9b08f7cc31b7e3e67d22d5aea121074a273bd2b83de09c63faa73d2c22c5d9bbc836647241d953d40c5b12da88120d53177f80e532c41fa0"
)
BOB_448 = bytes.fromhex(
    "1c306a7ac2a0e2e0990b294470cba339e6453772b075811d8fad0d1d6927c120bb5ee8972b0d3e21374c9c921b09d1b0366f10b65173992d"
)
BOB_448_PUB = bytes.fromhex(
    "3eb7a829b0cd20f5bcfc0b599b6feccf6da4627107bdb0d4f345b43027d8b972fc3e34fb4232a13ca706dcb57aec3dae07bdc1c67bf33609"
)
SHARED_448 = bytes.fromhex(
    "07fff4181ac6cc95ec1c16a94a0f74d12da232ce40a77552281d282bb60c0b56fd2464c335543936521c24403085d59a449a5037514a879d"
)

# P-256 ECDH against libreswan 4.10 (vectors.md §4, GOLD)
IKE_PRIVATE = bytes.fromhex("5c7b4913e96634add78e0b65f1772b4db10b42c79fd6205da8579bb667cc9201")
IKE_KEI = bytes.fromhex(
    "9c50e77b9679e1b23a3f49281f39aae869631bbd65d763f683dfe90c42d8db7a925594acb44117b80ba95f412555d6701b5fc467373dcdffc816465fba364feb"
)
IKE_KER = bytes.fromhex(
    "c3d1eabbe4813f3d34af80c3b5787d69caea40f2bb7d33efba386ad0b5f7cb2a49ee15bf476b77b87753f58e9d4b3dc24d82ce2f1d2a0f9c5be1e69451e4e061"
)
IKE_G_IR = bytes.fromhex("d05b742265d2ceb3e93f1ae498f6767dcdfca2a1f7149966ab7247e7ed2d6e2f")


def compressed(x_y: bytes) -> bytes:
    half = len(x_y) // 2
    return bytes((2 + (x_y[-1] & 1),)) + x_y[:half]


# --- constants (RFC 8548 §4.3, §7) --------------------------------------------------------------------


def test_constants_match_rfc_8548() -> None:
    assert (CONST_NEXTK, CONST_SESSID, CONST_REKEY, CONST_KEY_A, CONST_KEY_B, CONST_RESUME) == (1, 2, 3, 4, 5, 6)
    assert (INIT1_MAGIC, INIT2_MAGIC) == (0x15101A0E, 0x097105E0)
    assert {t: TEPS[t].name for t in TEPS} == {
        0x21: "TCPCRYPT_ECDHE_P256",
        0x22: "TCPCRYPT_ECDHE_P521",
        0x23: "TCPCRYPT_ECDHE_Curve25519",
        0x24: "TCPCRYPT_ECDHE_Curve448",
    }
    assert {a: (p.ae_key_len, p.ae_nonce_len) for a, p in AEADS.items()} == {
        0x0001: (16, 12),
        0x0002: (32, 12),
        0x0010: (32, 12),
    }
    assert [TEPS[t].wire_len for t in ALL_TEPS] == [35, 69, 32, 56]  # P-256/P-521: pubkey_len + compressed point


# --- Init1 / Init2 (RFC 8548 §4.1) ---------------------------------------------------------------------

INIT1_X25519 = bytes.fromhex(
    "15101a0e"  # INIT1_MAGIC
    "0000004b"  # message_len = 75
    "01"  # nciphers
    "0001"  # AEAD_AES_128_GCM, two bytes
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"  # N_A
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"  # Pub_A
)
INIT2_X25519 = bytes.fromhex(
    "097105e0"  # INIT2_MAGIC
    "0000004a"  # message_len = 74
    "0001"  # sym_cipher
    "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"  # N_B
    "de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f"  # Pub_B
)


def test_init1_exact_bytes() -> None:
    msg = Init1(sym_cipher_list=(AEAD_AES_128_GCM,), n_a=N_A, pub_a=ALICE_25519_PUB)
    assert push_init1(msg, tep=X25519) == INIT1_X25519
    assert pull_init1(Buffer(INIT1_X25519), tep=X25519) == msg


def test_init2_exact_bytes() -> None:
    msg = Init2(sym_cipher=AEAD_AES_128_GCM, n_b=N_B, pub_b=BOB_25519_PUB)
    assert push_init2(msg, tep=X25519) == INIT2_X25519
    assert pull_init2(Buffer(INIT2_X25519), tep=X25519) == msg


def test_init1_p256_carries_pubkey_len_counting_itself() -> None:
    point = compressed(IKE_KEI)
    msg = Init1(sym_cipher_list=(AEAD_CHACHA20_POLY1305, AEAD_AES_128_GCM), n_a=N_A, pub_a=point)
    raw = push_init1(msg, tep=TCPCRYPT_ECDHE_P256)
    assert raw[:13] == bytes.fromhex("15101a0e000000500200100001")  # 9 + 4 + 32 + 35 = 80
    assert raw[45:47] == bytes.fromhex("0023") and raw[47:] == point  # pubkey_len = 35 = 2 + 33
    assert pull_init1(Buffer(raw), tep=TCPCRYPT_ECDHE_P256) == msg


def test_init_reader_stops_at_message_len_and_keeps_ignored_bytes() -> None:
    msg = Init2(sym_cipher=AEAD_AES_256_GCM, n_b=N_B, pub_b=BOB_25519_PUB, ignored=b"ext")
    raw = push_init2(msg, tep=X25519)
    assert raw[4:8] == (74 + 3).to_bytes(4, "big")
    buf = Buffer(raw + b"\x00\x00\x15")  # the first frame header follows in the stream
    assert pull_init2(buf, tep=X25519) == msg
    assert buf.remaining() == 3


INIT_MALFORMED = [
    pytest.param(b"\x15\x10\x1a\x0f" + INIT1_X25519[4:], "magic", 0, id="magic"),
    pytest.param(INIT1_X25519[:4] + (40).to_bytes(4, "big") + INIT1_X25519[8:], "message_len", 4, id="len-short"),
    pytest.param(INIT1_X25519[:-1], "message_len", 4, id="truncated"),
    pytest.param(INIT1_X25519[:8] + b"\x02" + INIT1_X25519[9:], "nciphers", 8, id="nciphers-overflow"),
    pytest.param(INIT1_X25519[:6], "message_len", 4, id="header-cut"),
]


@pytest.mark.parametrize(("raw", "field", "offset"), INIT_MALFORMED)
def test_malformed_init1_names_field(raw: bytes, field: str, offset: int) -> None:
    with pytest.raises(DecodeError) as info:
        pull_init1(Buffer(raw), tep=X25519)
    assert (info.value.field, info.value.offset) == (field, offset)


def test_bad_pubkey_len() -> None:
    raw = bytearray(push_init1(Init1((1,), N_A, compressed(IKE_KEI)), tep=TCPCRYPT_ECDHE_P256))
    raw[43:45] = (36).to_bytes(2, "big")  # one byte past message_len
    with pytest.raises(DecodeError) as info:
        pull_init1(Buffer(bytes(raw)), tep=TCPCRYPT_ECDHE_P256)
    assert (info.value.field, info.value.offset) == ("pub_a.pubkey_len", 43)
    with pytest.raises(DecodeError) as info:
        pull_init2(Buffer(INIT2_X25519[:8] + b"\x00\x01"), tep=X25519)
    assert info.value.field == "message_len"


def test_init2_wrong_magic() -> None:
    with pytest.raises(DecodeError) as info:
        pull_init2(Buffer(INIT1_X25519), tep=X25519)
    assert (info.value.field, info.value.offset) == ("magic", 0)


def test_init_push_rejects_wrong_sizes() -> None:
    with pytest.raises(ValueError):
        push_init1(Init1((1,), N_A[:31], ALICE_25519_PUB), tep=X25519)
    with pytest.raises(ValueError):
        push_init2(Init2(1, N_B, ALICE_25519_PUB[:31]), tep=X25519)
    with pytest.raises(ValueError):
        push_init1(Init1((1,), N_A, ALICE_25519_PUB), tep=0x20)


pub_for_tep = {t: st.binary(min_size=TEPS[t].point_len, max_size=TEPS[t].point_len) for t in ALL_TEPS}


@given(
    st.sampled_from(ALL_TEPS).flatmap(lambda t: st.tuples(st.just(t), pub_for_tep[t])),
    st.lists(st.integers(0, 0xFFFF), max_size=8),
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=20),
)
def test_init1_round_trip(tep_pub: tuple[int, bytes], ciphers: list[int], nonce: bytes, ignored: bytes) -> None:
    tep, pub = tep_pub
    msg = Init1(tuple(ciphers), nonce, pub, ignored)
    raw = push_init1(msg, tep=tep)
    assert int.from_bytes(raw[4:8], "big") == len(raw)
    assert pull_init1(Buffer(raw), tep=tep) == msg


@given(
    st.sampled_from(ALL_TEPS).flatmap(lambda t: st.tuples(st.just(t), pub_for_tep[t])),
    st.integers(0, 0xFFFF),
    st.binary(min_size=32, max_size=32),
    st.binary(max_size=20),
)
def test_init2_round_trip(tep_pub: tuple[int, bytes], cipher: int, nonce: bytes, ignored: bytes) -> None:
    tep, pub = tep_pub
    msg = Init2(cipher, nonce, pub, ignored)
    assert pull_init2(Buffer(push_init2(msg, tep=tep)), tep=tep) == msg


# --- frames (RFC 8548 §4.2) -----------------------------------------------------------------------------


def test_frame_exact_bytes() -> None:
    frame = Frame(ciphertext=bytes.fromhex("aabbcc"), rekey=True)
    assert push_frame(frame) == bytes.fromhex("010003aabbcc")
    assert pull_frame(Buffer(bytes.fromhex("010003aabbcc"))) == frame
    assert frame.associated_data == bytes.fromhex("010003")
    reserved = pull_frame(Buffer(bytes.fromhex("fe0000")))  # cres set: kept, and part of the AAD
    assert reserved == Frame(b"", rekey=False, reserved=0x7F)
    assert reserved.associated_data == bytes.fromhex("fe0000")


def test_plaintext_exact_bytes() -> None:
    cases = [
        (Plaintext(b"hi"), "006869"),
        (Plaintext(b"", fin=True), "01"),
        (Plaintext(b"x", urgent=0x0102), "02010278"),
        (Plaintext(b"", fin=True, urgent=0), "030000"),
        (Plaintext(b"", reserved=0x3F), "fc"),
    ]
    for plaintext, hex_bytes in cases:
        assert push_plaintext(plaintext) == bytes.fromhex(hex_bytes)
        assert pull_plaintext(Buffer(bytes.fromhex(hex_bytes))) == plaintext


def test_malformed_frames() -> None:
    with pytest.raises(DecodeError) as info:
        pull_frame(Buffer(bytes.fromhex("000005aabb")))
    assert (info.value.field, info.value.offset) == ("ciphertext", 3)
    with pytest.raises(DecodeError) as info:
        pull_frame(Buffer(bytes.fromhex("00")))
    assert (info.value.field, info.value.offset) == ("clen", 1)
    with pytest.raises(DecodeError) as info:
        pull_plaintext(Buffer(bytes.fromhex("0201")))  # URGp without a whole urgent field
    assert (info.value.field, info.value.offset) == ("urgent", 1)
    with pytest.raises(DecodeError) as info:
        pull_plaintext(Buffer(b""))
    assert info.value.field == "flags"
    with pytest.raises(ValueError):
        push_frame(Frame(bytes(0x10000)))


@given(st.binary(max_size=300), st.booleans(), st.integers(0, 0x7F))
def test_frame_round_trip(ciphertext: bytes, rekey: bool, reserved: int) -> None:
    frame = Frame(ciphertext, rekey, reserved)
    assert pull_frame(Buffer(push_frame(frame))) == frame


@given(st.binary(max_size=100), st.booleans(), st.one_of(st.none(), st.integers(0, 0xFFFF)), st.integers(0, 0x3F))
def test_plaintext_round_trip(data: bytes, fin: bool, urgent: int | None, reserved: int) -> None:
    plaintext = Plaintext(data, fin, urgent, reserved)
    assert pull_plaintext(Buffer(push_plaintext(plaintext))) == plaintext


def test_frame_id_is_left_padded_offset() -> None:
    assert frame_id(0) == bytes(12)
    assert frame_id(0x4B) == bytes(11) + b"\x4b"
    assert frame_id(0x0102030405060708, 12) == bytes.fromhex("000000000102030405060708")
    with pytest.raises(ValueError):
        frame_id(1 << 64)


# --- primitives against published vectors (vectors.md §6, RFC texts) --------------------------------------


def test_extract_is_hkdf_extract_rfc5869_a1() -> None:
    prk = extract(bytes(range(13)), b"\x0b" * 22)
    assert prk.hex() == "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"


def test_cprf_is_hkdf_expand_rfc5869_a1() -> None:
    prk = bytes.fromhex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
    okm = cprf(prk, bytes(range(0xF0, 0xFA)), 42)
    assert okm.hex() == "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    assert cprf(prk, bytes(range(0xF0, 0xFA)), 16) == okm[:16]  # expand is prefix-stable


def test_extract_is_hmac_sha256_rfc4231_tc2() -> None:
    digest = extract(b"Jefe", b"what do ya want for nothing?")
    assert digest.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_x25519_rfc7748() -> None:
    assert public_key(X25519, ALICE_25519) == ALICE_25519_PUB
    assert public_key(X25519, BOB_25519) == BOB_25519_PUB
    assert shared_secret(X25519, ALICE_25519, BOB_25519_PUB) == SHARED_25519
    assert shared_secret(X25519, BOB_25519, ALICE_25519_PUB) == SHARED_25519


def test_x448_rfc7748() -> None:
    assert public_key(TCPCRYPT_ECDHE_CURVE448, ALICE_448) == ALICE_448_PUB
    assert public_key(TCPCRYPT_ECDHE_CURVE448, BOB_448) == BOB_448_PUB
    assert shared_secret(TCPCRYPT_ECDHE_CURVE448, ALICE_448, BOB_448_PUB) == SHARED_448


def test_p256_against_libreswan() -> None:
    assert public_key(TCPCRYPT_ECDHE_P256, IKE_PRIVATE) == compressed(IKE_KEI)
    assert shared_secret(TCPCRYPT_ECDHE_P256, IKE_PRIVATE, compressed(IKE_KER)) == IKE_G_IR
    assert shared_secret(TCPCRYPT_ECDHE_P256, IKE_PRIVATE, b"\x04" + IKE_KER) == IKE_G_IR  # uncompressed accepted


@pytest.mark.parametrize("tep", ALL_TEPS)
def test_key_agreement_both_ways(tep: int) -> None:
    rng = random.Random(tep)
    a, b = generate_private_key(tep, rng), generate_private_key(tep, rng)
    pub_a, pub_b = public_key(tep, a), public_key(tep, b)
    assert len(pub_a) == TEPS[tep].point_len
    es = shared_secret(tep, a, pub_b)
    assert es == shared_secret(tep, b, pub_a)
    assert len(es) == TEPS[tep].shared_secret_len
    assert generate_private_key(tep, random.Random(tep)) == a  # only the handed randomness


@pytest.mark.parametrize(
    ("tep", "bad"),
    [
        (X25519, bytes(32)),  # low-order point: all-zero shared secret
        (TCPCRYPT_ECDHE_CURVE448, bytes(56)),
        (X25519, bytes(31)),
        (TCPCRYPT_ECDHE_P256, b"\x02" + (1).to_bytes(32, "big")),  # x = 1 is not on P-256
        (TCPCRYPT_ECDHE_P256, b"\x05" + IKE_KER[:32]),
        (TCPCRYPT_ECDHE_P521, compressed(IKE_KER)),  # a P-256 point
    ],
)
def test_invalid_peer_key_is_a_remote_protocol_error(tep: int, bad: bytes) -> None:
    mine = generate_private_key(tep, random.Random(1))
    with pytest.raises(RemoteProtocolError):
        shared_secret(tep, mine, bad)


# --- the key schedule step by step (RFC 8548 §3.3-§3.5) ------------------------------------------------------

SS = bytes.fromhex("02ad1cc45842b11cb23d4da0051fdf1d5e77ae1b720f0d47bd5f42d46174a1ad")


def test_each_step_is_cprf_with_its_constant() -> None:
    assert next_session_secret(SS) == cprf(SS, b"\x01", 32)
    assert session_secret(SS, 0) == SS
    assert session_secret(SS, 2) == next_session_secret(next_session_secret(SS))
    assert master_key(SS) == cprf(SS, b"\x03", 32)  # sn[0] is empty
    assert master_key(SS, b"\xaa\xbb") == cprf(SS, b"\x03\xaa\xbb", 32)
    mk = master_key(SS)
    assert next_master_key(mk) == cprf(mk, b"\x03", 32)
    assert session_id(0x23, SS) == b"\x23" + cprf(SS, b"\x02", 32)
    assert session_id(0xA3, SS, b"\x01") == b"\xa3" + cprf(SS, b"\x02\x01", 32)
    assert len(session_id(0x23, SS)) == 33  # RFC 8547 §5.1 minimum
    assert resumption_identifier(SS) == cprf(SS, b"\x06", 18)


@pytest.mark.parametrize("aead_id", sorted(AEADS))
def test_traffic_keys_split_into_key_and_nonce_randomizer(aead_id: int) -> None:
    mk = master_key(SS)
    params = AEADS[aead_id]
    keys = key_set(mk, aead_id)
    raw_ab = cprf(mk, b"\x04", params.ae_key_len + params.ae_nonce_len)
    assert keys.k_ab == TrafficKey(aead_id, raw_ab[: params.ae_key_len], raw_ab[params.ae_key_len :])
    raw_ba = cprf(mk, b"\x05", params.ae_key_len + params.ae_nonce_len)
    assert keys.k_ba.key + keys.k_ba.nr == raw_ba
    assert traffic_key(mk, CONST_KEY_A, aead_id) == keys.k_ab
    assert keys.sending(True) is keys.k_ab and keys.receiving(True) is keys.k_ba
    assert keys.sending(False) is keys.k_ba and keys.receiving(False) is keys.k_ab


def test_nonce_is_frame_id_xor_nr() -> None:
    key = TrafficKey(AEAD_AES_128_GCM, bytes(16), bytes.fromhex("ffffffff00000000000000ff"))
    assert key.nonce(0) == bytes.fromhex("ffffffff00000000000000ff")
    assert key.nonce(0x4B) == bytes.fromhex("ffffffff00000000000000b4")
    assert key.nonce(0x0102030405060708) == bytes.fromhex("ffffffff01020304050607f7")


def test_resumption_halves_and_session_nonce() -> None:
    resume = resumption_identifier(SS)
    assert resumption_half(SS, original_role_a=True) == resume[:9]
    assert resumption_half(SS, original_role_a=False) == resume[9:]
    data = resumption_suboption_data(SS, b"\x01\x02", original_role_a=True)
    assert data == resume[:9] + b"\x01\x02"
    assert split_resumption_data(data) == (resume[:9], b"\x01\x02")
    assert split_resumption_data(resume[:8]) is None  # < 9 bytes: an offer of fresh key exchange
    assert split_resumption_data(resume[:9]) == (resume[:9], b"")
    with pytest.raises(DecodeError) as info:
        split_resumption_data(resume[:9] + bytes(9))
    assert (info.value.field, info.value.offset) == ("nonce", 9)
    with pytest.raises(ValueError):
        resumption_suboption_data(SS, bytes(9), original_role_a=False)
    assert session_nonce(b"\xaa", b"\xbb\xcc") == b"\xaa\xbb\xcc"


# --- frame protection (RFC 8548 §3.6) --------------------------------------------------------------------------


@pytest.mark.parametrize("aead_id", sorted(AEADS))
def test_seal_and_open(aead_id: int) -> None:
    key = key_set(master_key(SS), aead_id).k_ab
    raw = seal_frame(key, Plaintext(b"hello", fin=True), offset=75, rekey=True)
    assert raw[0] == 0x01 and int.from_bytes(raw[1:3], "big") == len(raw) - 3 == 1 + 5 + 16
    frame = pull_frame(Buffer(raw))
    assert open_frame(key, frame, offset=75) == Plaintext(b"hello", fin=True)


def test_tampering_is_a_remote_protocol_error() -> None:
    key = key_set(master_key(SS), AEAD_AES_128_GCM).k_ab
    frame = pull_frame(Buffer(seal_frame(key, Plaintext(b"hello"), offset=0)))
    for bad, offset in [
        (Frame(frame.ciphertext, rekey=True), 0),  # the rekey bit is authenticated
        (Frame(frame.ciphertext, reserved=1), 0),  # so are the reserved bits
        (Frame(bytes([frame.ciphertext[0] ^ 1]) + frame.ciphertext[1:]), 0),
        (frame, 1),  # another offset, another nonce
    ]:
        with pytest.raises(RemoteProtocolError):
            open_frame(key, bad, offset=offset)
    with pytest.raises(ValueError):
        seal_frame(key, Plaintext(bytes(0xFFFF - 16)), offset=0)  # flags byte + data + tag > 0xffff
    assert len(seal_frame(key, Plaintext(bytes(0xFFFF - 17)), offset=0)) == 3 + 0xFFFF
    other = key_set(master_key(SS), AEAD_AES_128_GCM).k_ba
    with pytest.raises(RemoteProtocolError):
        open_frame(other, frame, offset=0)


# --- vectors.md §7: the DERIVED lab regression vector -------------------------------------------------------------
#
# It was computed from the digest's reading, which RFC 8548 contradicts in two places:
#   * Init1/Init2 cipher identifiers are two bytes (RFC 8548 §4.1), the vector uses one byte;
#   * the AEAD nonce is frame_ID XOR NR with NR from k_ab/k_ba (§3.6), the vector uses "DATA" || offset.
# Everything derived from the vector's Init bytes taken as opaque input still checks our KDF chain.

V7_TRANSCRIPT = bytes.fromhex("45032345040123")
V7_INIT1 = bytes.fromhex("15101a0e0000004a0101") + N_A + ALICE_25519_PUB
V7_INIT2 = bytes.fromhex("097105e00000004901") + N_B + BOB_25519_PUB
V7_PRK = bytes.fromhex("02ad1cc45842b11cb23d4da0051fdf1d5e77ae1b720f0d47bd5f42d46174a1ad")


def test_vector7_transcript_is_the_rfc_transcript() -> None:
    assert negotiation_transcript(bytes.fromhex("450323"), bytes.fromhex("45040123")) == V7_TRANSCRIPT


def test_vector7_init_bytes_are_not_rfc_8548_encodings() -> None:
    assert push_init1(Init1((AEAD_AES_128_GCM,), N_A, ALICE_25519_PUB), tep=X25519) != V7_INIT1
    # they are the draft-02 encodings (one-byte cipher identifiers)
    assert push_draft02_init1(Init1((DRAFT02_AEAD_AES_128_GCM,), N_A, ALICE_25519_PUB), tep=X25519) == V7_INIT1
    assert push_draft02_init2(Init2(DRAFT02_AEAD_AES_128_GCM, N_B, BOB_25519_PUB), tep=X25519) == V7_INIT2


def test_vector7_key_schedule_on_its_own_inputs() -> None:
    es = shared_secret(X25519, ALICE_25519, BOB_25519_PUB)
    prk = compute_prk(n_a=N_A, eno_transcript=V7_TRANSCRIPT, init1=V7_INIT1, init2=V7_INIT2, es=es)
    assert prk == V7_PRK
    assert session_id(0x23, prk).hex() == "23864280a19d09c269c98588b9cdfc8d02f9ee965f2aff28e03d085003dbcd605d"
    mk = master_key(prk)  # the vector's ts0: identical because sn[0] is empty
    assert mk.hex() == "63e90d79567366ecc9a06ebea3a208729074b52b6cf2cc88d9948389cd2b667c"
    keys = key_set(mk, AEAD_AES_128_GCM)
    assert keys.k_ab.key.hex() == "01f8cc5cfec7423a66a9103b42a52785"  # first 16 bytes of k_ab: same prefix
    assert keys.k_ba.key.hex() == "6513e63d61083a17df62cb52588d2c0c"
    assert next_session_secret(prk).hex() == "5ef6a2f3690a0960b6a1c106a562639613c42ce336462b5a819c9c79817ae23b"


def test_vector7_frames_use_a_nonce_rfc_8548_does_not_define() -> None:
    key = key_set(master_key(V7_PRK), AEAD_AES_128_GCM).k_ab
    expected = {
        0: "0000168eaf4397fc85a064089fd7ae7ebed2eb57e558f920de",
        0x4A: "0000162a693967d53ec2c4a24ff16d66680b5c5ce6f00770e9",
    }
    for offset, frame_hex in expected.items():
        digest_nonce = bytes.fromhex("44415441") + offset.to_bytes(8, "big")  # the digest's "DATA" || offset
        aad = bytes.fromhex("000016")
        assert aad + AESGCM(key.key).encrypt(digest_nonce, b"\x00hello", aad) == bytes.fromhex(frame_hex)
        assert seal_frame(key, Plaintext(b"hello"), offset=offset).hex() != frame_hex


# --- the same inputs under RFC 8548 (DERIVED here: a regression value, not interop proof) -------------------------

RFC_PRK = "57b451fb5d9a89f812be6014167252a32a16a9b5759ae39754c372c48c7940fb"


def test_rfc_regression_vector() -> None:
    es = shared_secret(X25519, ALICE_25519, BOB_25519_PUB)
    prk = compute_prk(n_a=N_A, eno_transcript=V7_TRANSCRIPT, init1=INIT1_X25519, init2=INIT2_X25519, es=es)
    assert prk.hex() == RFC_PRK
    assert session_id(0x23, prk).hex() == "2360583ca04231aa3be00fb3d3e878f7f5a8e610875816bebcb7cecca7780e386f"
    mk = master_key(prk)
    assert mk.hex() == "3f67b8c27ad91954c6d1e3d52f3b9613f6c97f98b3f523ba37580c4f6145aa12"
    keys: KeySet = key_set(mk, AEAD_AES_128_GCM)
    assert (keys.k_ab.key + keys.k_ab.nr).hex() == "2f92ea21324d987d1fd4d63ac755d03d7ac13d921cab49db0b4d0830"
    assert (keys.k_ba.key + keys.k_ba.nr).hex() == "6572aa65310eaaaa07f8d65dc132875057d8dd408b3e77d989ca2cd7"
    ss1 = next_session_secret(prk)
    assert ss1.hex() == "1665859b0d79b86d0ee80780a5986c6d7524fd1f5509adbd9d06d684de6dc130"
    assert resumption_identifier(ss1).hex() == "6c85ba61caecae74aa6a92af908d78d80bac"
    # A's first frame follows the 75-byte Init1 in A's stream (frame offsets count Init1, RFC 8548 §3.6)
    frame = seal_frame(keys.k_ab, Plaintext(b"hello"), offset=len(INIT1_X25519))
    assert frame.hex() == "0000166794b1565fafcfab8afcab3f0c0960a9627c71abeeaa"
    assert open_frame(keys.k_ab, pull_frame(Buffer(frame)), offset=75) == Plaintext(b"hello")


# --- the draft-02 profile of tcpcryptd ---------------------------------------------------------------------------------


def test_draft02_profile_values() -> None:
    assert (DRAFT02_ENO_KIND, DRAFT02_ENO_EXID) == (253, 0x454E)
    a, b = bytes.fromhex("fd06454e2122"), bytes.fromhex("fd05454e21")
    assert draft02_transcript(a, b) == a + bytes.fromhex("fd04454e") + b + bytes.fromhex("fd04454e")


def test_draft02_init_messages() -> None:
    point = b"\x04" + IKE_KEI  # tcpcryptd sends the uncompressed point behind pubkey_len = 67
    msg = Init1(sym_cipher_list=(DRAFT02_AEAD_AES_128_GCM,), n_a=N_A, pub_a=point)
    raw = push_draft02_init1(msg, tep=DRAFT02_TEP_ECDHE_P256)
    assert raw[:10] == bytes.fromhex("15101a0e0000006d0101")  # 9 + 1 + 32 + 67 = 109
    assert raw[42:44] == (67).to_bytes(2, "big")
    assert pull_draft02_init1(Buffer(raw), tep=DRAFT02_TEP_ECDHE_P256) == msg
    reply = Init2(sym_cipher=DRAFT02_AEAD_AES_128_GCM, n_b=N_B, pub_b=b"\x04" + IKE_KER)
    raw2 = push_draft02_init2(reply, tep=DRAFT02_TEP_ECDHE_P256)
    assert raw2[:9] == bytes.fromhex("097105e00000006c01")  # 9 + 32 + 67 = 108
    assert pull_draft02_init2(Buffer(raw2), tep=DRAFT02_TEP_ECDHE_P256) == reply


def test_nist_group_orders() -> None:
    for tep, curve in ((TCPCRYPT_ECDHE_P256, ec.SECP256R1()), (TCPCRYPT_ECDHE_P521, ec.SECP521R1())):
        if hasattr(curve, "group_order"):  # cryptography >= 44
            assert _NIST_ORDERS[tep] == curve.group_order
