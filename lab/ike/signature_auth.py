"""Digital Signature authentication (RFC 7427): AUTH method 14 with RSA-PSS and ECDSA.

AUTH data for method 14 (RFC 7427 §3)::

    | ASN.1 Length (1) | AlgorithmIdentifier (DER) | Signature Value |

The signature is computed over the signed octets of RFC 7296 §2.15
(lab.ike.keys.signed_octets, or lab.ike.multi_ke.signed_octets_with_int_auth
after IKE_INTERMEDIATE exchanges) with the private key of the first CERT;
no PRF is applied. The AlgorithmIdentifier blobs are those of RFC 7427
Appendix A (A.1 RSASSA-PKCS1-v1_5, A.3 ECDSA, A.4 RSASSA-PSS):

::

    RSASSA-PSS, SHA-256, MGF1 SHA-256, salt 32
        30 41 06 09 2a 86 48 86 f7 0d 01 01 0a 30 34 a0 0f 30 0d 06 09 60 86 48 01
        65 03 04 02 01 05 00 a1 1c 30 1a 06 09 2a 86 48 86 f7 0d 01 01 08 30 0d 06
        09 60 86 48 01 65 03 04 02 01 05 00 a2 03 02 01 20
    RSASSA-PSS, SHA-384 / SHA-512, MGF1 with the same hash, salt 48 / 64: the same
        bytes with the hash OID's last octet 02 / 03 (twice) and the salt 30 / 40
    ecdsa-with-SHA256           30 0a 06 08 2a 86 48 ce 3d 04 03 02
    ecdsa-with-SHA384           30 0a 06 08 2a 86 48 ce 3d 04 03 03
    ecdsa-with-SHA512           30 0a 06 08 2a 86 48 ce 3d 04 03 04
    sha256WithRSAEncryption     30 0d 06 09 2a 86 48 86 f7 0d 01 01 0b 05 00

The ECDSA signature value is the DER ECDSA-Sig-Value (RFC 7427 §3 refers
to the AlgorithmIdentifier's own encoding, RFC 3279 §2.2.3). Peers announce
the hashes they accept with SIGNATURE_HASH_ALGORITHMS (16431) in
IKE_SA_INIT (§4): SHA1 1, SHA2-256 2, SHA2-384 3, SHA2-512 4. We announce
SHA2-256/384/512 and verify each with RSA-PSS and ECDSA (libreswan signs with
the strongest hash announced: RSA-PSS SHA-512 and ECDSA SHA-512, also with
P-256 keys); we sign with SHA-256 (P-384 keys: SHA-384) unless the peer's
list leaves that hash out (``choose_algorithm``). RSA-PSS
signatures use a random salt (``cryptography`` offers no seed), so their
bytes, not their length, change between runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from lab.errors import RemoteProtocolError
from lab.wire.ikev2 import AUTH_DIGITAL_SIGNATURE, NotifyPayload

SIGNATURE_HASH_ALGORITHMS = 16431  # status Notify, RFC 7427 §4
HASH_SHA1 = 1  # "IKEv2 Hash Algorithms" registry, RFC 7427 §7
HASH_SHA2_256 = 2
HASH_SHA2_384 = 3
HASH_SHA2_512 = 4

RSA_PSS_SHA256 = bytes.fromhex(
    "304106092a864886f70d01010a3034a00f300d06096086480165030402010500"
    "a11c301a06092a864886f70d010108300d06096086480165030402010500a203020120"
)
RSA_PSS_SHA384 = bytes.fromhex(
    "304106092a864886f70d01010a3034a00f300d06096086480165030402020500"
    "a11c301a06092a864886f70d010108300d06096086480165030402020500a203020130"
)
RSA_PSS_SHA512 = bytes.fromhex(
    "304106092a864886f70d01010a3034a00f300d06096086480165030402030500"
    "a11c301a06092a864886f70d010108300d06096086480165030402030500a203020140"
)
ECDSA_SHA256 = bytes.fromhex("300a06082a8648ce3d040302")
ECDSA_SHA384 = bytes.fromhex("300a06082a8648ce3d040303")
ECDSA_SHA512 = bytes.fromhex("300a06082a8648ce3d040304")
RSA_PKCS1_SHA256 = bytes.fromhex("300d06092a864886f70d01010b0500")


@dataclass(frozen=True, slots=True)
class SignatureAlgorithm:
    name: str
    blob: bytes  # DER AlgorithmIdentifier, RFC 7427 Appendix A
    hash_id: int  # in SIGNATURE_HASH_ALGORITHMS
    key_kind: str  # "rsa" or "ecdsa"


SIGNATURE_ALGORITHMS = {
    a.name: a
    for a in (
        SignatureAlgorithm("rsa-pss-sha256", RSA_PSS_SHA256, HASH_SHA2_256, "rsa"),
        SignatureAlgorithm("rsa-pss-sha384", RSA_PSS_SHA384, HASH_SHA2_384, "rsa"),
        SignatureAlgorithm("rsa-pss-sha512", RSA_PSS_SHA512, HASH_SHA2_512, "rsa"),
        SignatureAlgorithm("ecdsa-sha256", ECDSA_SHA256, HASH_SHA2_256, "ecdsa"),
        SignatureAlgorithm("ecdsa-sha384", ECDSA_SHA384, HASH_SHA2_384, "ecdsa"),
        SignatureAlgorithm("ecdsa-sha512", ECDSA_SHA512, HASH_SHA2_512, "ecdsa"),
        SignatureAlgorithm("rsa-pkcs1-sha256", RSA_PKCS1_SHA256, HASH_SHA2_256, "rsa"),
    )
}
_BY_BLOB = {a.blob: a for a in SIGNATURE_ALGORITHMS.values()}
_HASHES = {HASH_SHA2_256: hashes.SHA256, HASH_SHA2_384: hashes.SHA384, HASH_SHA2_512: hashes.SHA512}
_PSS = ("rsa-pss-sha256", "rsa-pss-sha384", "rsa-pss-sha512")


class SignatureAuthError(RemoteProtocolError):
    """An AUTH payload of method 14 that is malformed, names an algorithm we do not accept, or does not verify."""


def default_algorithm(private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> SignatureAlgorithm:
    """RSA-PSS with SHA-256 for RSA keys; ECDSA with SHA-256 (P-256) or SHA-384 (P-384 and up)."""
    if isinstance(private_key, rsa.RSAPrivateKey):
        return SIGNATURE_ALGORITHMS["rsa-pss-sha256"]
    return SIGNATURE_ALGORITHMS["ecdsa-sha384" if private_key.curve.key_size > 256 else "ecdsa-sha256"]


def choose_algorithm(
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, peer_hashes: tuple[int, ...] = ()
) -> SignatureAlgorithm:
    """The algorithm to sign with: the key's default, unless the peer's SIGNATURE_HASH_ALGORITHMS
    (``peer_hashes``; empty when it sent none) leaves its hash out; then the first of SHA2-256, -384, -512
    that the peer listed (RFC 7427 §4: libreswan with authby=rsa-sha2_512 lists SHA2-512 alone and refuses
    anything else). When the peer listed none of ours, the default (the peer will refuse it, saying so)."""
    default = default_algorithm(private_key)
    if not peer_hashes or default.hash_id in peer_hashes:
        return default
    for hash_id in (HASH_SHA2_256, HASH_SHA2_384, HASH_SHA2_512):
        if hash_id in peer_hashes:
            return next(
                a
                for a in SIGNATURE_ALGORITHMS.values()
                if a.key_kind == default.key_kind and a.hash_id == hash_id and a.name != "rsa-pkcs1-sha256"
            )
    return default


def _check_kind(algorithm: SignatureAlgorithm, key: object) -> None:
    is_rsa = isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey)
    if (algorithm.key_kind == "rsa") != is_rsa:
        raise ValueError(f"{algorithm.name} needs an {algorithm.key_kind.upper()} key")


def _pss(algorithm: SignatureAlgorithm) -> padding.PSS:
    """MGF1 with the signature's hash, a salt as long as the hash (RFC 7427 A.4.3, RFC 8247 §3.2)."""
    digest = _HASHES[algorithm.hash_id]()
    return padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size)


def sign_auth(
    private_key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    signed_octets: bytes,
    algorithm: SignatureAlgorithm | None = None,
) -> bytes:
    """AUTH data of method 14: length | AlgorithmIdentifier | signature over ``signed_octets``.

    Raises ValueError when the algorithm does not fit the key.
    """
    algorithm = algorithm or default_algorithm(private_key)
    _check_kind(algorithm, private_key)
    digest = _HASHES[algorithm.hash_id]()
    if algorithm.name in _PSS:
        signature = private_key.sign(signed_octets, _pss(algorithm), digest)
    elif algorithm.name == "rsa-pkcs1-sha256":
        signature = private_key.sign(signed_octets, padding.PKCS1v15(), digest)
    else:
        signature = private_key.sign(signed_octets, ec.ECDSA(digest, deterministic_signing=True))
    return bytes((len(algorithm.blob),)) + algorithm.blob + signature


def verify_auth(
    public_key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
    auth_data: bytes,
    signed_octets: bytes,
    *,
    accepted: frozenset[str] = frozenset(SIGNATURE_ALGORITHMS),
) -> SignatureAlgorithm:
    """Check AUTH data of method 14 against the peer's public key (from its validated end-entity certificate).

    Returns the algorithm used. Raises SignatureAuthError (answer
    AUTHENTICATION_FAILED) for a truncated blob, an AlgorithmIdentifier not
    in ``accepted``, one that does not fit the key, or a bad signature.
    """
    if not auth_data:
        raise SignatureAuthError("empty AUTH data")
    blob_len = auth_data[0]
    blob = auth_data[1 : 1 + blob_len]
    if len(blob) != blob_len or len(auth_data) == 1 + blob_len:
        raise SignatureAuthError(
            f"AUTH data of {len(auth_data)} octets is too short for its {blob_len}-octet AlgorithmIdentifier"
        )
    algorithm = _BY_BLOB.get(blob)
    if algorithm is None or algorithm.name not in accepted:
        raise SignatureAuthError(f"signature algorithm {blob.hex()} is not accepted")
    if (algorithm.key_kind == "rsa") != isinstance(public_key, rsa.RSAPublicKey):
        raise SignatureAuthError(f"{algorithm.name} does not fit the certificate's {type(public_key).__name__}")
    signature = auth_data[1 + blob_len :]
    digest = _HASHES[algorithm.hash_id]()
    try:
        if algorithm.name in _PSS:
            public_key.verify(signature, signed_octets, _pss(algorithm), digest)
        elif algorithm.name == "rsa-pkcs1-sha256":
            public_key.verify(signature, signed_octets, padding.PKCS1v15(), digest)
        else:
            public_key.verify(signature, signed_octets, ec.ECDSA(digest))
    except InvalidSignature:
        raise SignatureAuthError(f"{algorithm.name} signature does not verify") from None
    return algorithm


def signature_hash_algorithms_notify(
    hash_ids: tuple[int, ...] = (HASH_SHA2_256, HASH_SHA2_384, HASH_SHA2_512),
) -> NotifyPayload:
    """SIGNATURE_HASH_ALGORITHMS for IKE_SA_INIT: 2 octets per hash (RFC 7427 §4)."""
    return NotifyPayload(SIGNATURE_HASH_ALGORITHMS, b"".join(h.to_bytes(2, "big") for h in hash_ids))


def parse_signature_hash_algorithms(notify: NotifyPayload) -> tuple[int, ...]:
    """The hash IDs a peer accepts. Raises RemoteProtocolError for an odd-length list."""
    if len(notify.data) % 2:
        raise RemoteProtocolError(f"SIGNATURE_HASH_ALGORITHMS of {len(notify.data)} octets, not whole 2-octet IDs")
    return tuple(int.from_bytes(notify.data[i : i + 2], "big") for i in range(0, len(notify.data), 2))


__all__ = [
    "AUTH_DIGITAL_SIGNATURE",
    "ECDSA_SHA256",
    "ECDSA_SHA384",
    "ECDSA_SHA512",
    "RSA_PKCS1_SHA256",
    "RSA_PSS_SHA256",
    "RSA_PSS_SHA384",
    "RSA_PSS_SHA512",
    "SIGNATURE_ALGORITHMS",
    "SIGNATURE_HASH_ALGORITHMS",
    "SignatureAlgorithm",
    "SignatureAuthError",
    "choose_algorithm",
    "default_algorithm",
    "parse_signature_hash_algorithms",
    "sign_auth",
    "signature_hash_algorithms_notify",
    "verify_auth",
]
