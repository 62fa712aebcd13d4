"""ML-KEM (FIPS 203) as an IKEv2 key exchange method (draft-ietf-ipsecme-ikev2-mlkem).

ML-KEM is a key encapsulation mechanism, not a Diffie-Hellman group, so the
two KE payloads carry different things (draft-ietf-ipsecme-ikev2-mlkem-08 §2.1):

::

    initiator  KeyGen() -> (ek, dk)      KEi data = ek, the encapsulation key (ByteEncode, FIPS 203 §7.1)
    responder  Encaps(ek) -> (ct, ss)    KEr data = ct, the ciphertext
    initiator  Decaps(dk, ct) -> ss      ss: 32 octets, used unpadded like g^ir (§2)

    method       Transform Type 4 ID   KEi / KEr data (octets)
    ML-KEM-512   35                    800 / 768
    ML-KEM-768   36                    1184 / 1088
    ML-KEM-1024  37                    1568 / 1568

The IDs and sizes are the draft's Table 1 and IANA section (IKEv2 "Transform
Type 4 - Key Exchange Method Transform IDs"); strongSwan's key_exchange.h
assigns the same numbers. The ``cryptography`` package (51) provides
ML-KEM-768 and ML-KEM-1024 only, so ML-KEM-512 is named but not implemented.

Recipient tests (draft §2.2): the responder runs FIPS 203 §7.2's
encapsulation-key checks (length, and every coefficient below q) before
Encaps and answers INVALID_SYNTAX when they fail; the initiator checks the
ciphertext's length (§7.3) before Decaps. Decaps itself never fails: a
tampered ciphertext yields an unrelated secret (implicit rejection), which
IKE_AUTH then exposes. Here both checks raise RemoteProtocolError.

Reproducibility: the decapsulation key is derived from a 64-octet seed
``d | z`` (FIPS 203 Algorithm 16, ``from_seed_bytes``) drawn from the run's
``random.Random``, so the initiator's KEi is the same for the same seed.
Encapsulation cannot be seeded in ``cryptography`` (``encapsulate()`` takes
no randomness); given an ``rng``, ``ml_kem_encapsulate`` draws the 32-octet
m from it and runs FIPS 203's Encaps_internal in lab.ike.mlkem_encaps
instead, so a seeded run repeats its ciphertext and shared secret too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import mlkem

from lab.errors import RemoteProtocolError
from lab.ike.mlkem_encaps import encapsulate_with

KE_ML_KEM_512 = 35  # draft-ietf-ipsecme-ikev2-mlkem-08 §2.1 Table 1 / §4 (IANA)
KE_ML_KEM_768 = 36
KE_ML_KEM_1024 = 37

MLKEM_SEED_LEN = 64  # d | z, FIPS 203 §7.1 (ML-KEM.KeyGen_internal takes d and z, 32 octets each)
MLKEM_SHARED_SECRET_LEN = 32  # FIPS 203 §8: every parameter set gives a 32-octet key


@dataclass(frozen=True, slots=True)
class MlKemMethod:
    transform_id: int
    name: str  # the IANA name
    encapsulation_key_len: int  # KEi data
    ciphertext_len: int  # KEr data


ML_KEM_METHODS: dict[int, MlKemMethod] = {
    KE_ML_KEM_512: MlKemMethod(KE_ML_KEM_512, "ml-kem-512", 800, 768),
    KE_ML_KEM_768: MlKemMethod(KE_ML_KEM_768, "ml-kem-768", 1184, 1088),
    KE_ML_KEM_1024: MlKemMethod(KE_ML_KEM_1024, "ml-kem-1024", 1568, 1568),
}
_PRIVATE = {KE_ML_KEM_768: mlkem.MLKEM768PrivateKey, KE_ML_KEM_1024: mlkem.MLKEM1024PrivateKey}
_PUBLIC = {KE_ML_KEM_768: mlkem.MLKEM768PublicKey, KE_ML_KEM_1024: mlkem.MLKEM1024PublicKey}
SUPPORTED_ML_KEM = frozenset(_PRIVATE)


def is_ml_kem(method_id: int) -> bool:
    """True for the three ML-KEM Transform Type 4 IDs (implemented or not)."""
    return method_id in ML_KEM_METHODS


def ml_kem_method(method_id: int) -> MlKemMethod:
    """Raises ValueError for an ID that is not an ML-KEM method this module implements."""
    if method_id not in SUPPORTED_ML_KEM:
        known = ML_KEM_METHODS.get(method_id)
        what = (
            f"{known.name} (ID {method_id}) is not provided by the cryptography package"
            if known
            else f"ID {method_id} is not ML-KEM"
        )
        raise ValueError(what)
    return ML_KEM_METHODS[method_id]


def generate_ml_kem_seed(rng: random.Random) -> bytes:
    """64 octets ``d | z`` from ``rng`` (not a CSPRNG: fine for a lab, not for real secrets)."""
    return rng.randbytes(MLKEM_SEED_LEN)


def _private_key(method_id: int, seed: bytes) -> mlkem.MLKEM768PrivateKey | mlkem.MLKEM1024PrivateKey:
    ml_kem_method(method_id)
    if len(seed) != MLKEM_SEED_LEN:
        raise ValueError(f"ML-KEM seed of {len(seed)} octets, expected {MLKEM_SEED_LEN}")
    return _PRIVATE[method_id].from_seed_bytes(seed)


def ml_kem_encapsulation_key(method_id: int, seed: bytes) -> bytes:
    """The initiator's KE data: the encapsulation key of the key pair derived from ``seed``.

    Raises ValueError for an unsupported method or a seed that is not 64 octets.
    """
    return _private_key(method_id, seed).public_key().public_bytes_raw()


def ml_kem_encapsulate(
    method_id: int, encapsulation_key: bytes, rng: random.Random | None = None
) -> tuple[bytes, bytes]:
    """The responder's side: (ciphertext for KEr, 32-octet shared secret).

    With ``rng`` the randomness m comes from it (reproducible, plain Python);
    without, ``cryptography`` draws it from the OS. Raises RemoteProtocolError when the initiator's key fails FIPS 203 §7.2's
    checks (wrong length, a coefficient not below q): the responder answers
    INVALID_SYNTAX (draft §2.2). ValueError for an unsupported method.
    """
    method = ml_kem_method(method_id)
    if len(encapsulation_key) != method.encapsulation_key_len:
        raise RemoteProtocolError(
            f"{method.name} encapsulation key of {len(encapsulation_key)} octets, expected {method.encapsulation_key_len}"
        )
    try:
        public = _PUBLIC[method_id].from_public_bytes(encapsulation_key)
    except ValueError as exc:
        raise RemoteProtocolError(f"{method.name} encapsulation key rejected (FIPS 203 §7.2 modulus check)") from exc
    if rng is not None:
        return encapsulate_with(method_id, encapsulation_key, rng.randbytes(32))
    shared_secret, ciphertext = public.encapsulate()
    return ciphertext, shared_secret


def ml_kem_decapsulate(method_id: int, seed: bytes, ciphertext: bytes) -> bytes:
    """The initiator's side: the 32-octet shared secret from the responder's ciphertext.

    Raises RemoteProtocolError when the ciphertext has the wrong length (FIPS
    203 §7.3: the initiator fails the exchange, draft §2.2); a ciphertext of
    the right length always decapsulates (implicit rejection). ValueError for
    an unsupported method or a bad seed.
    """
    method = ml_kem_method(method_id)
    key = _private_key(method_id, seed)
    if len(ciphertext) != method.ciphertext_len:
        raise RemoteProtocolError(
            f"{method.name} ciphertext of {len(ciphertext)} octets, expected {method.ciphertext_len}"
        )
    return key.decapsulate(ciphertext)
