"""The tcpcrypt key schedule (RFC 8548 §3.3-§3.6, §5) as pure functions.

::

    ES            = ECDH(own private key, peer's public key)              §5
    PRK           = Extract(N_A, eno_transcript | Init1 | Init2 | ES)      §3.3
    ss[0]         = PRK
    ss[i]         = CPRF(ss[i-1], CONST_NEXTK, K_LEN)
    mk[0]         = CPRF(ss[i], CONST_REKEY | sn[i], K_LEN)
    mk[j]         = CPRF(mk[j-1], CONST_REKEY, K_LEN)                      §3.8 rekeying
    k_ab[j]       = CPRF(mk[j], CONST_KEY_A, ae_key_len + ae_nonce_len)    A encrypts, B decrypts
    k_ba[j]       = CPRF(mk[j], CONST_KEY_B, ae_key_len + ae_nonce_len)
    session_id[i] = TEP-byte | CPRF(ss[i], CONST_SESSID | sn[i], K_LEN)   §3.4
    resume[i]     = CPRF(ss[i], CONST_RESUME, 18)                          §3.5
    sn[i]         = nonce_a | nonce_b    (empty for a fresh session, i = 0)
    AEAD key K = traffic key[:ae_key_len], NR = the rest; nonce N = frame_ID XOR NR   §3.6

Extract and CPRF are HKDF-Extract and HKDF-Expand with SHA-256 (RFC 5869)
for all four TEPs. Nothing here keeps state, reads a clock or draws
randomness: private keys and nonces come from the caller.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, x448, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from lab.errors import DecodeError, RemoteProtocolError
from lab.wire.buffer import Buffer
from lab.wire.tcpcrypt import (
    AEAD_AES_128_GCM,
    AEAD_AES_256_GCM,
    AEAD_CHACHA20_POLY1305,
    CONST_KEY_A,
    CONST_KEY_B,
    CONST_NEXTK,
    CONST_REKEY,
    CONST_RESUME,
    CONST_SESSID,
    CONTROL_REKEY,
    K_LEN,
    MAX_CIPHERTEXT_LEN,
    RESUME_HALF_LEN,
    RESUME_ID_LEN,
    RESUME_NONCE_MAX,
    TCPCRYPT_ECDHE_CURVE448,
    TCPCRYPT_ECDHE_CURVE25519,
    TCPCRYPT_ECDHE_P256,
    TCPCRYPT_ECDHE_P521,
    Frame,
    Plaintext,
    aead_params,
    associated_data,
    frame_id,
    pull_plaintext,
    push_frame,
    push_plaintext,
    tep_params,
)

# --- Extract and CPRF (RFC 8548 §3.1, §5) -----------------------------------------------------


def extract(salt: bytes, ikm: bytes) -> bytes:
    """HKDF-Extract-SHA256: ``HMAC-SHA256(salt, IKM)`` (RFC 5869 §2.2)."""
    mac = hmac.HMAC(salt, hashes.SHA256())
    mac.update(ikm)
    return mac.finalize()


def cprf(key: bytes, const: bytes, length: int) -> bytes:
    """HKDF-Expand-SHA256 with ``info = CONST`` (RFC 8548 Figure 1); raises ValueError beyond 8160 bytes."""
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=const).derive(key)


def _const(value: int) -> bytes:
    return bytes((value,))


# --- session secrets, master keys, traffic keys ------------------------------------------------


def compute_prk(*, n_a: bytes, eno_transcript: bytes, init1: bytes, init2: bytes, es: bytes) -> bytes:
    """``PRK = Extract(N_A, eno_transcript | Init1 | Init2 | ES)`` (RFC 8548 §3.3).

    ``init1`` and ``init2`` are the messages exactly as transmitted, ignored
    trailer included.
    """
    return extract(n_a, eno_transcript + init1 + init2 + es)


def next_session_secret(ss: bytes) -> bytes:
    """``ss[i+1] = CPRF(ss[i], CONST_NEXTK, K_LEN)``: what a host caches for resumption."""
    return cprf(ss, _const(CONST_NEXTK), K_LEN)


def session_secret(prk: bytes, i: int) -> bytes:
    """``ss[i]``, with ``ss[0] = PRK``."""
    ss = prk
    for _ in range(i):
        ss = next_session_secret(ss)
    return ss


def master_key(ss: bytes, sn: bytes = b"") -> bytes:
    """``mk[0] = CPRF(ss[i], CONST_REKEY | sn[i], K_LEN)``; ``sn`` is empty for a fresh session."""
    return cprf(ss, _const(CONST_REKEY) + sn, K_LEN)


def next_master_key(mk: bytes) -> bytes:
    """``mk[j+1] = CPRF(mk[j], CONST_REKEY, K_LEN)``: the next key generation (RFC 8548 §3.8)."""
    return cprf(mk, _const(CONST_REKEY), K_LEN)


@dataclass(frozen=True, slots=True)
class TrafficKey:
    """One direction's traffic key split as RFC 8548 Figure 4: AEAD key ``key``, nonce randomizer ``nr``."""

    aead_id: int
    key: bytes
    nr: bytes

    def nonce(self, offset: int) -> bytes:
        """``N = frame_ID XOR NR`` for a frame starting at ``offset`` in the sender's TCP stream (§3.6)."""
        fid = frame_id(offset, len(self.nr))
        return bytes(a ^ b for a, b in zip(fid, self.nr, strict=True))


@dataclass(frozen=True, slots=True)
class KeySet:
    """Generation ``j``'s two traffic keys (RFC 8548 §3.8 calls this a key set)."""

    k_ab: TrafficKey  # host A -> host B
    k_ba: TrafficKey  # host B -> host A

    def sending(self, original_role_a: bool) -> TrafficKey:
        """The key a host encrypts with: k_ab if it played role A in the session ss[0] came from (§3.5)."""
        return self.k_ab if original_role_a else self.k_ba

    def receiving(self, original_role_a: bool) -> TrafficKey:
        return self.k_ba if original_role_a else self.k_ab


def traffic_key(mk: bytes, const: int, aead_id: int) -> TrafficKey:
    """``CPRF(mk[j], CONST, ae_key_len + ae_nonce_len)`` split into K and NR; raises ValueError for an unknown AEAD."""
    params = aead_params(aead_id)
    raw = cprf(mk, _const(const), params.ae_key_len + params.ae_nonce_len)
    return TrafficKey(aead_id=aead_id, key=raw[: params.ae_key_len], nr=raw[params.ae_key_len :])


def key_set(mk: bytes, aead_id: int) -> KeySet:
    """``k_ab[j]`` and ``k_ba[j]`` from ``mk[j]``."""
    return KeySet(k_ab=traffic_key(mk, CONST_KEY_A, aead_id), k_ba=traffic_key(mk, CONST_KEY_B, aead_id))


def session_id(tep_byte: int, ss: bytes, sn: bytes = b"") -> bytes:
    """``TEP-byte | CPRF(ss[i], CONST_SESSID | sn[i], K_LEN)``: 33 bytes (RFC 8548 §3.4).

    ``tep_byte`` is the byte host B sent for the negotiated TEP, v bit
    included (``TepSuboption.byte``): 0x21-0x24 fresh, 0xa1-0xa4 resumed.
    """
    if not 0 <= tep_byte <= 0xFF:
        raise ValueError(f"TEP byte {tep_byte} is not a byte")
    return bytes((tep_byte,)) + cprf(ss, _const(CONST_SESSID) + sn, K_LEN)


# --- session resumption (RFC 8548 §3.5) ---------------------------------------------------------


def resumption_identifier(ss: bytes) -> bytes:
    """``resume[i] = CPRF(ss[i], CONST_RESUME, 18)``."""
    return cprf(ss, _const(CONST_RESUME), RESUME_ID_LEN)


def resumption_half(ss: bytes, *, original_role_a: bool) -> bytes:
    """The half a host sends: bytes 0..8 if it played role A in the original session, else 9..17."""
    resume = resumption_identifier(ss)
    return resume[:RESUME_HALF_LEN] if original_role_a else resume[RESUME_HALF_LEN:]


def resumption_suboption_data(ss: bytes, nonce: bytes, *, original_role_a: bool) -> bytes:
    """The TEP suboption data proposing resumption with ss[i] (RFC 8548 Figures 2 and 3).

    Raises ValueError if ``nonce`` is longer than 8 bytes.
    """
    if len(nonce) > RESUME_NONCE_MAX:
        raise ValueError(f"resumption nonce of {len(nonce)} bytes, at most {RESUME_NONCE_MAX}")
    return resumption_half(ss, original_role_a=original_role_a) + nonce


def split_resumption_data(data: bytes) -> tuple[bytes, bytes] | None:
    """(identifier half, nonce) from resumption suboption data, or None for an offer of fresh key exchange.

    RFC 8548 §3.5: data shorter than 9 bytes counts as v = 0. Raises
    DecodeError naming ``nonce`` if more than 8 nonce bytes follow.
    """
    if len(data) < RESUME_HALF_LEN:
        return None
    nonce = data[RESUME_HALF_LEN:]
    if len(nonce) > RESUME_NONCE_MAX:
        raise DecodeError(f"resumption nonce of {len(nonce)} bytes", field="nonce", offset=RESUME_HALF_LEN)
    return data[:RESUME_HALF_LEN], nonce


def session_nonce(nonce_a: bytes, nonce_b: bytes) -> bytes:
    """``sn[i] = nonce_a | nonce_b``: nonce_a from the host that was A in the original session."""
    return nonce_a + nonce_b


# --- key agreement (RFC 8548 §5) -------------------------------------------------------------------

_NIST_CURVES: dict[int, ec.EllipticCurve] = {TCPCRYPT_ECDHE_P256: ec.SECP256R1(), TCPCRYPT_ECDHE_P521: ec.SECP521R1()}
_NIST_ORDERS = {  # group orders n (SEC 2 / FIPS 186-4)
    TCPCRYPT_ECDHE_P256: 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
    TCPCRYPT_ECDHE_P521: 0x1FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409,
}
PRIVATE_KEY_LEN = {
    TCPCRYPT_ECDHE_P256: 32,
    TCPCRYPT_ECDHE_P521: 66,
    TCPCRYPT_ECDHE_CURVE25519: 32,
    TCPCRYPT_ECDHE_CURVE448: 56,
}


def generate_private_key(tep: int, rng: random.Random) -> bytes:
    """A private key drawn from ``rng`` (an endpoint uses only the randomness it was handed).

    For P-256/P-521 the bytes are a scalar already reduced into 1..n-1.
    ``random.Random`` is not a CSPRNG: fine for a lab, not for real secrets.
    """
    size = PRIVATE_KEY_LEN[tep_params(tep).tep_id]
    raw = rng.randbytes(size)
    if tep in _NIST_ORDERS:
        scalar = int.from_bytes(raw, "big") % (_NIST_ORDERS[tep] - 1) + 1
        return scalar.to_bytes(size, "big")
    return raw


def _private(
    tep: int, private_key: bytes
) -> ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey | x448.X448PrivateKey:
    tep_params(tep)
    if len(private_key) != PRIVATE_KEY_LEN[tep]:
        raise ValueError(f"private key for TEP 0x{tep:02x} must be {PRIVATE_KEY_LEN[tep]} bytes")
    if tep == TCPCRYPT_ECDHE_CURVE25519:
        return x25519.X25519PrivateKey.from_private_bytes(private_key)
    if tep == TCPCRYPT_ECDHE_CURVE448:
        return x448.X448PrivateKey.from_private_bytes(private_key)
    scalar = int.from_bytes(private_key, "big")
    if not 0 < scalar < _NIST_ORDERS[tep]:
        raise ValueError("private scalar outside 1..n-1")
    return ec.derive_private_key(scalar, _NIST_CURVES[tep])


def public_key(tep: int, private_key: bytes) -> bytes:
    """Pub_A/Pub_B as Init1/Init2 carry it: compressed point for P-256/P-521, raw key for X25519/X448.

    Raises ValueError for a TEP that is not tcpcrypt's or a bad private key.
    """
    key = _private(tep, private_key)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    return key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def shared_secret(tep: int, private_key: bytes, peer_public_key: bytes) -> bytes:
    """ES: the x-coordinate (P-256: 32, P-521: 66 bytes) or the X25519/X448 output.

    Raises RemoteProtocolError when the peer's key fails validation (not a
    point on the curve, wrong length, or an all-zero X25519/X448 result,
    RFC 8548 §5 / RFC 7748 §6): the connection must be aborted (§3.3).
    """
    key = _private(tep, private_key)
    try:
        if isinstance(key, ec.EllipticCurvePrivateKey):
            peer = ec.EllipticCurvePublicKey.from_encoded_point(_NIST_CURVES[tep], peer_public_key)
            return key.exchange(ec.ECDH(), peer)
        if isinstance(key, x25519.X25519PrivateKey):
            es = key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public_key))
        else:
            es = key.exchange(x448.X448PublicKey.from_public_bytes(peer_public_key))
    except ValueError as exc:  # cryptography also raises this for an all-zero X25519/X448 output
        raise RemoteProtocolError(f"peer public key rejected: {exc}") from exc
    if not any(es):
        raise RemoteProtocolError("all-zero shared secret (RFC 7748 §6)")
    return es


# --- frame protection (RFC 8548 §3.6) ------------------------------------------------------------------


def _aead(key: TrafficKey) -> AESGCM | ChaCha20Poly1305:
    if key.aead_id in (AEAD_AES_128_GCM, AEAD_AES_256_GCM):
        return AESGCM(key.key)
    if key.aead_id == AEAD_CHACHA20_POLY1305:
        return ChaCha20Poly1305(key.key)
    raise ValueError(f"0x{key.aead_id:04x} is not a tcpcrypt AEAD algorithm")


def seal_frame(key: TrafficKey, plaintext: Plaintext, *, offset: int, rekey: bool = False) -> bytes:
    """Encrypt ``plaintext`` into a whole frame (header included) starting at stream ``offset``.

    Raises ValueError if the ciphertext would not fit the 16-bit clen.
    """
    data = push_plaintext(plaintext)
    params = aead_params(key.aead_id)
    clen = len(data) + params.tag_len
    if clen > MAX_CIPHERTEXT_LEN:
        raise ValueError(f"a {len(data)}-byte plaintext makes a ciphertext longer than clen allows")
    control = CONTROL_REKEY if rekey else 0
    ciphertext = _aead(key).encrypt(key.nonce(offset), data, associated_data(control, clen))
    return push_frame(Frame(ciphertext=ciphertext, rekey=rekey))


def open_frame(key: TrafficKey, frame: Frame, *, offset: int) -> Plaintext:
    """Decrypt and authenticate ``frame`` received at stream ``offset``.

    Raises RemoteProtocolError when authentication fails (RFC 8548 §3.6: abort),
    DecodeError if the decrypted plaintext is malformed.
    """
    try:
        data = _aead(key).decrypt(key.nonce(offset), frame.ciphertext, frame.associated_data)
    except InvalidTag:
        raise RemoteProtocolError(f"frame at offset {offset} failed authentication") from None
    return pull_plaintext(Buffer(data))
