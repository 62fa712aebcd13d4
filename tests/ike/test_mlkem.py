"""lab.ike.mlkem: ML-KEM-768/1024 as IKEv2 key exchange methods 36/37."""

from __future__ import annotations

import hashlib
import random

import pytest

from lab.errors import RemoteProtocolError
from lab.ike.mlkem import (
    KE_ML_KEM_512,
    KE_ML_KEM_768,
    KE_ML_KEM_1024,
    ML_KEM_METHODS,
    generate_ml_kem_seed,
    ml_kem_decapsulate,
    ml_kem_encapsulate,
    ml_kem_encapsulation_key,
    ml_kem_method,
)
from lab.ike.mlkem_encaps import encapsulate_with

SIZES = {KE_ML_KEM_768: (1184, 1088), KE_ML_KEM_1024: (1568, 1568)}  # draft-ietf-ipsecme-ikev2-mlkem-08 Table 1


def test_transform_ids_and_sizes_are_the_drafts() -> None:
    assert (KE_ML_KEM_512, KE_ML_KEM_768, KE_ML_KEM_1024) == (35, 36, 37)
    assert [(m.name, m.encapsulation_key_len, m.ciphertext_len) for m in ML_KEM_METHODS.values()] == [
        ("ml-kem-512", 800, 768),
        ("ml-kem-768", 1184, 1088),
        ("ml-kem-1024", 1568, 1568),
    ]


@pytest.mark.parametrize("method", [KE_ML_KEM_768, KE_ML_KEM_1024])
def test_round_trip_gives_both_sides_the_same_32_octet_secret(method: int) -> None:
    rng = random.Random(7)
    seed = generate_ml_kem_seed(rng)
    ek = ml_kem_encapsulation_key(method, seed)
    ciphertext, responder_secret = ml_kem_encapsulate(method, ek)
    assert (len(ek), len(ciphertext)) == SIZES[method]
    assert len(responder_secret) == 32
    assert ml_kem_decapsulate(method, seed, ciphertext) == responder_secret


@pytest.mark.parametrize("method", [KE_ML_KEM_768, KE_ML_KEM_1024])
def test_the_encapsulation_key_follows_the_seed(method: int) -> None:
    seed = generate_ml_kem_seed(random.Random(1))
    assert ml_kem_encapsulation_key(method, seed) == ml_kem_encapsulation_key(method, bytes(seed))
    assert ml_kem_encapsulation_key(method, seed) != ml_kem_encapsulation_key(
        method, generate_ml_kem_seed(random.Random(2))
    )


def test_encapsulation_key_matches_fips203_structure() -> None:
    # FIPS 203 §7.1: ek = ByteEncode12(t_hat) | rho; the last 32 octets are rho = G(d | k)[:32] (Algorithm 13).
    seed = bytes(range(64))
    d = seed[:32]
    for method, k in ((KE_ML_KEM_768, 3), (KE_ML_KEM_1024, 4)):
        ek = ml_kem_encapsulation_key(method, seed)
        rho = hashlib.sha3_512(d + bytes((k,))).digest()[:32]
        assert ek[-32:] == rho
        coefficients = int.from_bytes(ek[:-32], "little")
        # every 12-bit coefficient is below q = 3329 (the modulus check the responder runs)
        assert all((coefficients >> (12 * i)) & 0xFFF < 3329 for i in range(256 * k))


@pytest.mark.parametrize("method", [KE_ML_KEM_768, KE_ML_KEM_1024])
def test_responder_refuses_a_bad_encapsulation_key(method: int) -> None:
    ek_len, _ = SIZES[method]
    with pytest.raises(RemoteProtocolError, match="expected"):
        ml_kem_encapsulate(method, bytes(ek_len - 1))
    good = ml_kem_encapsulation_key(method, bytes(64))
    not_reduced = b"\xff\xff" + good[2:]  # first coefficient 0xfff >= q: FIPS 203 §7.2 modulus check
    with pytest.raises(RemoteProtocolError, match="modulus"):
        ml_kem_encapsulate(method, not_reduced)


@pytest.mark.parametrize("method", [KE_ML_KEM_768, KE_ML_KEM_1024])
def test_initiator_refuses_a_short_ciphertext_and_a_tampered_one_gives_another_secret(method: int) -> None:
    seed = bytes(64)
    ciphertext, secret = ml_kem_encapsulate(method, ml_kem_encapsulation_key(method, seed))
    with pytest.raises(RemoteProtocolError, match="ciphertext"):
        ml_kem_decapsulate(method, seed, ciphertext[:-1])
    tampered = bytes((ciphertext[0] ^ 1,)) + ciphertext[1:]
    assert ml_kem_decapsulate(method, seed, tampered) != secret  # implicit rejection, not an error


def test_unsupported_methods_and_bad_seeds_are_local_errors() -> None:
    with pytest.raises(ValueError, match="ml-kem-512"):
        ml_kem_method(KE_ML_KEM_512)
    with pytest.raises(ValueError, match="not ML-KEM"):
        ml_kem_method(19)
    with pytest.raises(ValueError, match="seed"):
        ml_kem_encapsulation_key(KE_ML_KEM_768, bytes(32))


@pytest.mark.parametrize("method", [KE_ML_KEM_768, KE_ML_KEM_1024])
def test_seeded_encapsulation_decapsulates_with_cryptography(method: int) -> None:
    # cryptography's Decaps re-encrypts and compares the whole ciphertext (FIPS 203 Algorithm 18):
    # a matching secret means our Encaps_internal produced exactly the ciphertext FIPS 203 defines.
    rng = random.Random(21)
    for _ in range(3):
        seed = generate_ml_kem_seed(rng)
        ek = ml_kem_encapsulation_key(method, seed)
        ciphertext, secret = ml_kem_encapsulate(method, ek, rng)
        assert len(ciphertext) == SIZES[method][1]
        assert ml_kem_decapsulate(method, seed, ciphertext) == secret


def test_seeded_encapsulation_repeats_with_the_seed() -> None:
    ek = ml_kem_encapsulation_key(KE_ML_KEM_768, bytes(64))
    first = ml_kem_encapsulate(KE_ML_KEM_768, ek, random.Random(4))
    assert ml_kem_encapsulate(KE_ML_KEM_768, ek, random.Random(4)) == first
    assert ml_kem_encapsulate(KE_ML_KEM_768, ek, random.Random(5)) != first


def test_encaps_internal_known_answer() -> None:
    # FIPS 203 §6.2 with all-zero inputs: K = G(m | H(ek))[:32] whatever the ciphertext; checked with hashlib alone.
    ek = ml_kem_encapsulation_key(KE_ML_KEM_768, bytes(64))
    ciphertext, secret = encapsulate_with(KE_ML_KEM_768, ek, bytes(32))
    assert secret == hashlib.sha3_512(bytes(32) + hashlib.sha3_256(ek).digest()).digest()[:32]
    assert ml_kem_decapsulate(KE_ML_KEM_768, bytes(64), ciphertext) == secret
    with pytest.raises(ValueError):
        encapsulate_with(KE_ML_KEM_768, ek, bytes(31))
    with pytest.raises(ValueError):
        encapsulate_with(KE_ML_KEM_512, bytes(800), bytes(32))


def test_published_ml_kem_768_vector() -> None:
    # The ML-KEM-768 self-test vector of libcrux, also used by the SymCrypt/symcrust ML-KEM examples:
    # KeyGen from d | z, Encaps_internal with m, then SHA3-256 of ek and c and the shared secret K.
    seed = bytes.fromhex(
        "7c9935a0b07694aa0c6d10e4db6b1add2fd81a25ccb148032dcd739936737f2d"
        "8626ed79d451140800e03b59b956f8210e556067407d13dc90fa9e8b872bfb8f"
    )
    m = bytes.fromhex("147c03f7a5bebba406c8fae1874d7f13c80efe79a3a9a874cc09fe76f6997615")
    ek = ml_kem_encapsulation_key(KE_ML_KEM_768, seed)
    assert hashlib.sha3_256(ek).hexdigest() == "f57262661358cde8d3ebf990e5fd1d5b896c992ccfaadb5256b68bbf5943b132"
    ciphertext, secret = encapsulate_with(KE_ML_KEM_768, ek, m)
    assert (
        hashlib.sha3_256(ciphertext).hexdigest() == "6e777e2cf8054659136a971d9e70252f301226930c19c470ee0688163a63c15b"
    )
    assert secret.hex() == "e7184a0975ee3470878d2d159ec83129c8aec253d4ee17b4810311d198cd0368"
    assert ml_kem_decapsulate(KE_ML_KEM_768, seed, ciphertext) == secret
