"""IKEv2 keys as pure functions: DH, SKEYSEED and prf+, PSK AUTH, Child SA KEYMAT, the SK payload.

::

    g^ir      = DH shared secret: MODP padded to the modulus (RFC 7296 §2.14, computed
                with Python's pow(): cryptography 50 deprecates finite-field DH),
                ECP x-coordinate (RFC 5903 §7), X25519 output (RFC 8031 §2)
    SKEYSEED  = prf(Ni | Nr, g^ir)                                        RFC 7296 §2.14
    SKEYSEED  = prf(SK_d (old), g^ir (new) | Ni | Nr)     IKE SA rekey, RFC 7296 §2.18
    {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
              = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)
    prf+(K,S) = T1 | T2 | ...,  T1 = prf(K, S | 0x01),  Tn = prf(K, Tn-1 | S | n)   §2.13
    AUTH      = prf(prf(PSK, "Key Pad for IKEv2"), RealMessage | Nonce | prf(SK_p, RestOfIDPayload))  §2.15
    KEYMAT    = prf+(SK_d, [g^ir (new) |] Ni | Nr): initiator->responder keys first   §2.17

SK_d, SK_pi and SK_pr are as long as the PRF's output (§2.13); with an AEAD
(AES-GCM) SK_ai/SK_ar are empty and SK_ei/SK_er carry the key *and* a
4-byte salt (RFC 5282 §7.1). The SK payload with AES-GCM (RFC 5282 §3-§5):
8-byte IV, nonce = salt | IV, AAD = the message from the IKE header through
the SK payload's generic header, plaintext = payloads | padding | Pad Length.
With AES-CBC (RFC 7296 §3.14): 16-byte IV, the plaintext padded to the
block, and the ICV a truncated HMAC (RFC 4868) under SK_ai/SK_ar over the
whole message from the IKE header through the ciphertext.

Nothing here keeps state, reads a clock or draws randomness except from the
``random.Random`` handed in. The last section writes tshark's decryption
tables (``ikev2_decryption_table``, ``esp_sa``) for the same keys.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from lab.errors import DecodeError, RemoteProtocolError
from lab.esp.sa import (
    aes_cbc_decrypt,
    aes_cbc_encrypt,
    aes_gcm_open,
    aes_gcm_seal,
    hmac_icv,
    integ_icv_len,
    split_keymat,
)
from lab.wire.buffer import Buffer
from lab.wire.esp import CBC_BLOCK_LEN, CBC_IV_LEN, GCM_IV_LEN, GCM_SALT_LEN
from lab.wire.ikev2 import (
    AUTH_HMAC_SHA1_96,
    AUTH_HMAC_SHA2_256_128,
    AUTH_HMAC_SHA2_384_192,
    AUTH_HMAC_SHA2_512_256,
    DH_CURVE25519,
    DH_ECP_256,
    DH_ECP_384,
    DH_ECP_521,
    DH_MODP_2048,
    ENCR_AES_CBC,
    ENCR_AES_GCM_8,
    ENCR_AES_GCM_12,
    ENCR_AES_GCM_16,
    GENERIC_HEADER_LEN,
    INTEG_NONE,
    PRF_HMAC_SHA1,
    PRF_HMAC_SHA2_256,
    PRF_HMAC_SHA2_384,
    PRF_HMAC_SHA2_512,
    EncryptedPayload,
    IkeMessage,
    Payload,
    decode_ike_message,
    pull_payload_chain,
    push_ike_message,
    push_payload_chain,
)

KEY_PAD = b"Key Pad for IKEv2"  # RFC 7296 §2.15: 17 ASCII characters, no terminator
MAX_PRF_PLUS_BLOCKS = 255  # "prf+ ... is not defined beyond 255 times the size of the prf function output"


class IkeIntegrityError(RemoteProtocolError):
    """An SK payload's ICV did not verify: drop the message (RFC 7296 §2.21), nothing leaks."""


# --- PRFs (RFC 7296 §3.3.2, RFC 4868) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrfAlgorithm:
    transform_id: int
    name: str
    hash_name: str  # hashlib name
    key_len: int  # preferred key size = HMAC output size (RFC 7296 §2.13)


PRFS: dict[int, PrfAlgorithm] = {
    PRF_HMAC_SHA1: PrfAlgorithm(PRF_HMAC_SHA1, "PRF_HMAC_SHA1", "sha1", 20),
    PRF_HMAC_SHA2_256: PrfAlgorithm(PRF_HMAC_SHA2_256, "PRF_HMAC_SHA2_256", "sha256", 32),
    PRF_HMAC_SHA2_384: PrfAlgorithm(PRF_HMAC_SHA2_384, "PRF_HMAC_SHA2_384", "sha384", 48),
    PRF_HMAC_SHA2_512: PrfAlgorithm(PRF_HMAC_SHA2_512, "PRF_HMAC_SHA2_512", "sha512", 64),
}


def prf_algorithm(prf_id: int) -> PrfAlgorithm:
    """Raises ValueError for a PRF transform ID this module does not implement."""
    try:
        return PRFS[prf_id]
    except KeyError:
        raise ValueError(f"PRF transform ID {prf_id} is not supported") from None


def prf(prf_id: int, key: bytes, data: bytes) -> bytes:
    """``prf(K, S)``: HMAC with the PRF's hash (RFC 2104 accepts any key length)."""
    return hmac.new(key, data, prf_algorithm(prf_id).hash_name).digest()


def prf_plus(prf_id: int, key: bytes, seed: bytes, length: int) -> bytes:
    """``prf+(K, S)`` truncated to ``length`` bytes (RFC 7296 §2.13).

    Raises ValueError beyond 255 PRF outputs, where prf+ is not defined.
    """
    out_len = prf_algorithm(prf_id).key_len
    if length > MAX_PRF_PLUS_BLOCKS * out_len:
        raise ValueError(
            f"prf+ is defined for at most {MAX_PRF_PLUS_BLOCKS} outputs ({MAX_PRF_PLUS_BLOCKS * out_len} bytes), {length} asked"
        )
    out = bytearray()
    block = b""
    counter = 1
    while len(out) < length:
        block = prf(prf_id, key, block + seed + bytes((counter,)))
        out += block
        counter += 1
    return bytes(out[:length])


# --- key lengths (RFC 7296 §2.13, RFC 5282 §7.1, RFC 4106 §8.1, RFC 4868) --------------------------------

AEAD_ENCRS = {ENCR_AES_GCM_8: 8, ENCR_AES_GCM_12: 12, ENCR_AES_GCM_16: 16}  # transform ID -> ICV bytes
INTEG_KEY_LENS = {
    INTEG_NONE: 0,
    AUTH_HMAC_SHA1_96: 20,
    AUTH_HMAC_SHA2_256_128: 32,  # RFC 4868 §2.1.1: the key is the hash output size
    AUTH_HMAC_SHA2_384_192: 48,
    AUTH_HMAC_SHA2_512_256: 64,
}


def encr_key_len(encr_id: int, key_bits: int) -> int:
    """Bytes of keying material one direction's cipher takes: AES-GCM adds the 4-byte salt.

    Raises ValueError for other ciphers or key lengths.
    """
    if key_bits not in (128, 192, 256):
        raise ValueError(f"AES key length {key_bits} bits, expected 128, 192 or 256")
    if encr_id in AEAD_ENCRS:
        return key_bits // 8 + GCM_SALT_LEN
    if encr_id == ENCR_AES_CBC:
        return key_bits // 8
    raise ValueError(f"ENCR transform ID {encr_id} is not supported")


def integ_key_len(integ_id: int) -> int:
    """Raises ValueError for an integrity transform this module does not know."""
    try:
        return INTEG_KEY_LENS[integ_id]
    except KeyError:
        raise ValueError(f"INTEG transform ID {integ_id} is not supported") from None


# --- the IKE SA's keys (RFC 7296 §2.14) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IkeSaKeys:
    skeyseed: bytes
    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes  # AES-GCM: key | salt
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes


def skeyseed(prf_id: int, *, ni: bytes, nr: bytes, shared_secret: bytes) -> bytes:
    """``prf(Ni | Nr, g^ir)``; nonces are payload bodies. (AES-XCBC/CMAC PRFs, which use 64 bits of each, are not supported.)"""
    return prf(prf_id, ni + nr, shared_secret)


def rekey_skeyseed(old_prf_id: int, *, old_sk_d: bytes, shared_secret: bytes, ni: bytes, nr: bytes) -> bytes:
    """``prf(SK_d (old), g^ir (new) | Ni | Nr)`` with the old IKE SA's PRF (RFC 7296 §2.18)."""
    return prf(old_prf_id, old_sk_d, shared_secret + ni + nr)


def derive_ike_sa_keys(
    *,
    prf_id: int,
    shared_secret: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    encr_key_len: int,
    integ_key_len: int = 0,
    seed: bytes | None = None,
) -> IkeSaKeys:
    """SKEYSEED and the seven SK_* in prf+ order; lengths in bytes (see ``encr_key_len``).

    ``seed`` is a SKEYSEED already computed (an IKE SA rekey, ``rekey_skeyseed``);
    then ``shared_secret`` is not used.
    """
    if seed is None:
        seed = skeyseed(prf_id, ni=ni, nr=nr, shared_secret=shared_secret)
    prf_len = prf_algorithm(prf_id).key_len
    sizes = (prf_len, integ_key_len, integ_key_len, encr_key_len, encr_key_len, prf_len, prf_len)
    stream = prf_plus(prf_id, seed, ni + nr + spi_i + spi_r, sum(sizes))
    parts = []
    pos = 0
    for size in sizes:
        parts.append(stream[pos : pos + size])
        pos += size
    return IkeSaKeys(seed, *parts)


@dataclass(frozen=True, slots=True)
class ChildSaKeys:
    """One Child SA's two ESP directions; each encryption key is key | salt for AES-GCM."""

    encr_i2r: bytes
    integ_i2r: bytes
    encr_r2i: bytes
    integ_r2i: bytes


def derive_child_sa_keys(
    *,
    prf_id: int,
    sk_d: bytes,
    ni: bytes,
    nr: bytes,
    encr_key_len: int,
    integ_key_len: int = 0,
    shared_secret: bytes | None = None,
) -> ChildSaKeys:
    """``KEYMAT = prf+(SK_d, [g^ir (new) |] Ni | Nr)`` split per RFC 7296 §2.17.

    Initiator-to-responder keys come first; within a direction the encryption
    key precedes the integrity key. ``shared_secret`` is the CREATE_CHILD_SA
    PFS secret, None for the Child SA of IKE_AUTH.
    """
    seed = (shared_secret or b"") + ni + nr
    keymat = prf_plus(prf_id, sk_d, seed, 2 * (encr_key_len + integ_key_len))
    e, i = encr_key_len, integ_key_len
    return ChildSaKeys(
        encr_i2r=keymat[:e],
        integ_i2r=keymat[e : e + i],
        encr_r2i=keymat[e + i : 2 * e + i],
        integ_r2i=keymat[2 * e + i :],
    )


# --- AUTH with a pre-shared key (RFC 7296 §2.15) --------------------------------------------------------------


def signed_octets(*, prf_id: int, real_message: bytes, peer_nonce: bytes, sk_p: bytes, id_body: bytes) -> bytes:
    """``RealMessage | NonceData | prf(SK_p, RestOfIDPayload)``.

    For the initiator: its IKE_SA_INIT request (no non-ESP marker, no TCP
    length), Nr, SK_pi, its IDi body; for the responder: its IKE_SA_INIT
    response, Ni, SK_pr, its IDr body.
    """
    return real_message + peer_nonce + prf(prf_id, sk_p, id_body)


def psk_auth(*, prf_id: int, psk: bytes, real_message: bytes, peer_nonce: bytes, sk_p: bytes, id_body: bytes) -> bytes:
    """``prf(prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>)``: AUTH data for method 2."""
    octets = signed_octets(prf_id=prf_id, real_message=real_message, peer_nonce=peer_nonce, sk_p=sk_p, id_body=id_body)
    return prf(prf_id, prf(prf_id, psk, KEY_PAD), octets)


def nat_detection_hash(spi_i: bytes, spi_r: bytes, address: str, port: int) -> bytes:
    """``SHA-1(SPIi | SPIr | IP address | port)``, the NAT_DETECTION_*_IP data (RFC 7296 §2.23).

    Over TCP the TCP addresses and ports are used (RFC 9329 §6.5).
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    return hashlib.sha1(spi_i + spi_r + socket.inet_pton(family, address) + port.to_bytes(2, "big")).digest()


# --- Diffie-Hellman groups 14, 19, 20, 21, 31 ------------------------------------------------------------------------

MODP_2048_PRIME = int(  # RFC 3526 §3, generator 2
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A08798E3404DD"
    "EF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED"
    "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF0598DA48361C55D39A69163FA8FD24CF5F"
    "83655D23DCA3AD961C62F356208552BB9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B"
    "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF6955817183995497CEA956AE515D2261898FA0510"
    "15728E5A8AACAA68FFFFFFFFFFFFFFFF",
    16,
)
MODP_2048_GENERATOR = 2
MODP_2048_LEN = 256
_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # SEC 2 / FIPS 186-4
# ECP groups (RFC 5903 §3): curve and the byte length of one coordinate (= of the shared secret, §7)
ECP_GROUPS: dict[int, tuple[type[ec.EllipticCurve], int]] = {
    DH_ECP_256: (ec.SECP256R1, 32),
    DH_ECP_384: (ec.SECP384R1, 48),
    DH_ECP_521: (ec.SECP521R1, 66),
}
DH_PRIVATE_KEY_LEN = {DH_MODP_2048: 32, DH_ECP_256: 32, DH_ECP_384: 48, DH_ECP_521: 66, DH_CURVE25519: 32}
DH_PUBLIC_VALUE_LEN = {
    DH_MODP_2048: MODP_2048_LEN,
    DH_ECP_256: 64,
    DH_ECP_384: 96,
    DH_ECP_521: 132,
    DH_CURVE25519: 32,
}


def _group(group: int) -> None:
    if group not in DH_PRIVATE_KEY_LEN:
        raise ValueError(f"DH group {group} is not supported (14, 19, 20, 21, 31)")


def generate_dh_private_key(group: int, rng: random.Random) -> bytes:
    """A private value drawn from ``rng`` (not a CSPRNG: fine for a lab, not for real secrets).

    For group 19 the bytes are a scalar already in 1..n-1; for group 14 an exponent of at least 2.
    """
    _group(group)
    size = DH_PRIVATE_KEY_LEN[group]
    raw = rng.randbytes(size)
    if group == DH_ECP_256:
        return (int.from_bytes(raw, "big") % (_P256_ORDER - 1) + 1).to_bytes(size, "big")
    if group in ECP_GROUPS:  # P-384, P-521: draw again until the scalar is in 1..n-1 (almost always at once)
        curve, _ = ECP_GROUPS[group]
        bits = curve.key_size
        while True:
            scalar = int.from_bytes(raw, "big") >> (8 * size - bits)
            try:
                ec.derive_private_key(scalar, curve())
                return scalar.to_bytes(size, "big")
            except ValueError:
                raw = rng.randbytes(size)
    if group == DH_MODP_2048:
        return max(int.from_bytes(raw, "big"), 2).to_bytes(size, "big")
    return raw


def _private_key(group: int, private_key: bytes) -> ec.EllipticCurvePrivateKey | x25519.X25519PrivateKey | int:
    _group(group)
    if group == DH_CURVE25519:
        return x25519.X25519PrivateKey.from_private_bytes(private_key)
    scalar = int.from_bytes(private_key, "big")
    if group == DH_ECP_256:
        if not 0 < scalar < _P256_ORDER:
            raise ValueError("ECP-256 private scalar outside 1..n-1")
        return ec.derive_private_key(scalar, ec.SECP256R1())
    if group in ECP_GROUPS:
        return ec.derive_private_key(scalar, ECP_GROUPS[group][0]())  # ValueError outside 1..n-1
    if not 1 < scalar < MODP_2048_PRIME - 1:
        raise ValueError("MODP private exponent outside 2..p-2")
    return scalar  # MODP: Python's pow(); cryptography deprecates finite-field DH (FFDH) as of version 50


def dh_public_value(group: int, private_key: bytes) -> bytes:
    """The KE payload's Key Exchange Data: MODP y padded to 256 bytes, ECP x | y (RFC 5903 §7), X25519 raw.

    Raises ValueError for an unsupported group or a bad private key.
    """
    key = _private_key(group, private_key)
    if isinstance(key, x25519.X25519PrivateKey):
        return key.public_key().public_bytes_raw()
    if isinstance(key, ec.EllipticCurvePrivateKey):
        numbers = key.public_key().public_numbers()
        size = ECP_GROUPS[group][1]
        return numbers.x.to_bytes(size, "big") + numbers.y.to_bytes(size, "big")
    return pow(MODP_2048_GENERATOR, key, MODP_2048_PRIME).to_bytes(MODP_2048_LEN, "big")


def dh_shared_secret(group: int, private_key: bytes, peer_public_value: bytes) -> bytes:
    """g^ir: MODP padded to the modulus (RFC 7296 §2.14), ECP x-coordinate (RFC 5903 §9), X25519 output (RFC 8031 §2).

    Raises RemoteProtocolError when the peer's value is unusable: wrong
    length, not on the curve, outside 2..p-2 for MODP (RFC 6989), or an
    all-zero X25519 result (RFC 7748 §6.1); ValueError for our own bad key.
    """
    key = _private_key(group, private_key)
    expected = DH_PUBLIC_VALUE_LEN[group]
    if len(peer_public_value) != expected:
        raise RemoteProtocolError(f"KE data of {len(peer_public_value)} bytes for group {group}, expected {expected}")
    try:
        if isinstance(key, x25519.X25519PrivateKey):
            secret = key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public_value))
            if not any(secret):
                raise ValueError("all-zero X25519 shared secret")
            return secret
        if isinstance(key, ec.EllipticCurvePrivateKey):
            curve, size = ECP_GROUPS[group]
            x = int.from_bytes(peer_public_value[:size], "big")
            y = int.from_bytes(peer_public_value[size:], "big")
            peer = ec.EllipticCurvePublicNumbers(x, y, curve()).public_key()
            return key.exchange(ec.ECDH(), peer)
        y = int.from_bytes(peer_public_value, "big")
        if not 1 < y < MODP_2048_PRIME - 1:
            raise ValueError("MODP public value outside 2..p-2")
        return pow(y, key, MODP_2048_PRIME).to_bytes(MODP_2048_LEN, "big")  # padded to the modulus (§2.14)
    except ValueError as exc:  # cryptography raises ValueError for points off the curve and all-zero X25519
        raise RemoteProtocolError(f"peer KE value rejected: {exc}") from exc


# --- the SK payload with AES-GCM (RFC 5282) ----------------------------------------------------------------------


def encrypt_message(
    message: IkeMessage,
    inner: Sequence[Payload],
    *,
    sk_e: bytes,
    iv: bytes,
    icv_len: int = 16,
    padding: bytes = b"",
    encr_id: int = ENCR_AES_GCM_16,
    integ_id: int = INTEG_NONE,
    sk_a: bytes = b"",
) -> bytes:
    """The whole message: ``message``'s own payloads (sent in the clear, usually none) then SK{inner}.

    ``sk_e`` is SK_ei (initiator) or SK_er (responder), key | salt for
    AES-GCM; ``iv`` the explicit IV (8 bytes for AES-GCM, 16 for AES-CBC),
    unique under the key and, for CBC, unpredictable. With AES-CBC
    (``encr_id=ENCR_AES_CBC``) ``integ_id``/``sk_a`` give the HMAC and
    ``padding`` must fill the last block (empty: the least that does).
    Raises ValueError for bad lengths or more than 255 bytes of padding.
    """
    if len(padding) > 255:
        raise ValueError(f"{len(padding)} bytes of padding, at most 255")
    first, chain = push_payload_chain(tuple(inner))
    if encr_id == ENCR_AES_CBC:
        if not padding:
            padding = bytes(-(len(chain) + 1) % CBC_BLOCK_LEN)
        plaintext = chain + padding + bytes((len(padding),))
        icv_len = integ_icv_len(integ_id)
        ciphertext = aes_cbc_encrypt(sk_e, iv, plaintext)
        placeholder = EncryptedPayload(first, bytes(len(iv) + len(ciphertext) + icv_len))
        template = push_ike_message(replace(message, payloads=(*message.payloads, placeholder)))
        covered = template[: len(template) - len(iv) - len(ciphertext) - icv_len] + iv + ciphertext
        return covered + hmac_icv(integ_id, sk_a, covered)
    key, salt = split_keymat(sk_e)
    plaintext = chain + padding + bytes((len(padding),))
    sealed_len = len(plaintext) + icv_len
    placeholder = EncryptedPayload(first, bytes(GCM_IV_LEN + sealed_len))
    template = push_ike_message(replace(message, payloads=(*message.payloads, placeholder)))
    aad = template[: len(template) - GCM_IV_LEN - sealed_len]  # header .. SK generic header (RFC 5282 §5.1)
    return aad + iv + aes_gcm_seal(key, salt, iv, plaintext, aad, icv_len=icv_len)


def decrypt_message(
    data: bytes,
    *,
    sk_e: bytes,
    icv_len: int = 16,
    encr_id: int = ENCR_AES_GCM_16,
    integ_id: int = INTEG_NONE,
    sk_a: bytes = b"",
) -> tuple[IkeMessage, tuple[Payload, ...]]:
    """(the message as decoded, its SK payload still encrypted; the payloads inside SK).

    ``sk_e`` is the sender's SK_ei or SK_er (and ``sk_a`` its SK_ai or
    SK_ar with AES-CBC). Raises DecodeError for a malformed message, a
    missing SK payload or a bad Pad Length (offsets count from the message
    start, inner payloads at their place in it), and IkeIntegrityError when
    the ICV does not verify.
    """
    message = decode_ike_message(data)
    if not message.payloads or not isinstance(message.payloads[-1], EncryptedPayload):
        raise DecodeError("no Encrypted payload", field="next_payload", offset=16)
    sk = message.payloads[-1]
    sk_start = len(data) - GENERIC_HEADER_LEN - len(sk.data)
    cbc = encr_id == ENCR_AES_CBC
    iv_len = CBC_IV_LEN if cbc else GCM_IV_LEN
    if cbc:
        icv_len = integ_icv_len(integ_id)
    if len(sk.data) < iv_len + icv_len + 1:
        raise DecodeError(
            f"Encrypted payload of {len(sk.data)} bytes has no room for IV, Pad Length and ICV",
            field="payload_length",
            offset=sk_start + 2,
        )
    iv = sk.data[:iv_len]
    if cbc:
        expected = hmac_icv(integ_id, sk_a, data[: len(data) - icv_len])
        if not hmac.compare_digest(expected, data[len(data) - icv_len :]):
            raise IkeIntegrityError(f"SK payload of message ID {message.message_id} failed its ICV")
        ciphertext = sk.data[iv_len : len(sk.data) - icv_len]
        if len(ciphertext) % CBC_BLOCK_LEN:
            raise DecodeError(
                f"AES-CBC ciphertext of {len(ciphertext)} bytes is not whole blocks",
                field="payload_length",
                offset=sk_start + 2,
            )
        plaintext = aes_cbc_decrypt(sk_e, iv, ciphertext)
    else:
        key, salt = split_keymat(sk_e)
        aad = data[: sk_start + GENERIC_HEADER_LEN]
        try:
            plaintext = aes_gcm_open(key, salt, iv, sk.data[GCM_IV_LEN:], aad, icv_len=icv_len)
        except InvalidTag:
            raise IkeIntegrityError(f"SK payload of message ID {message.message_id} failed its ICV") from None
    inner_start = sk_start + GENERIC_HEADER_LEN + iv_len
    pad_length = plaintext[-1]
    if pad_length + 1 > len(plaintext):
        raise DecodeError(
            f"Pad Length {pad_length} exceeds the plaintext",
            field="pad_length",
            offset=inner_start + len(plaintext) - 1,
        )
    inner = Buffer(plaintext[: len(plaintext) - 1 - pad_length], base_offset=inner_start)
    return message, pull_payload_chain(inner, sk.first_payload, allow_encrypted=False)


# --- tshark decryption tables (tshark 4.0 UAT records) -------------------------------------------------------------

TSHARK_IKEV2_ENCR: dict[tuple[int, int], str] = {
    **{(ENCR_AES_CBC, bits): f"AES-CBC-{bits} [RFC3602]" for bits in (128, 192, 256)},
    **{
        (encr, bits): f"AES-GCM-{bits} with {icv} octet ICV [RFC5282]"
        for encr, icv in AEAD_ENCRS.items()
        for bits in (128, 192, 256)
    },
}
TSHARK_IKEV2_INTEG = {
    INTEG_NONE: "NONE [RFC4306]",
    AUTH_HMAC_SHA2_256_128: "HMAC_SHA2_256_128 [RFC4868]",
    AUTH_HMAC_SHA2_384_192: "HMAC_SHA2_384_192 [RFC4868]",
    AUTH_HMAC_SHA2_512_256: "HMAC_SHA2_512_256 [RFC4868]",
}
TSHARK_ESP_ENCR = {
    ENCR_AES_CBC: "AES-CBC [RFC3602]",
    ENCR_AES_GCM_8: "AES-GCM with 8 octet ICV [RFC4106]",
    ENCR_AES_GCM_12: "AES-GCM with 12 octet ICV [RFC4106]",
    ENCR_AES_GCM_16: "AES-GCM with 16 octet ICV [RFC4106]",
}
TSHARK_ESP_AUTH = {
    INTEG_NONE: "NULL",
    AUTH_HMAC_SHA2_256_128: "HMAC-SHA-256-128 [RFC4868]",
    AUTH_HMAC_SHA2_384_192: "HMAC-SHA-384-192 [RFC4868]",
    AUTH_HMAC_SHA2_512_256: "HMAC-SHA-512-256 [RFC4868]",
}


def tshark_ikev2_record(
    *,
    spi_i: bytes,
    spi_r: bytes,
    sk_ei: bytes,
    sk_er: bytes,
    encr_id: int = ENCR_AES_GCM_16,
    key_bits: int = 256,
    integ_id: int = INTEG_NONE,
    sk_ai: bytes = b"",
    sk_ar: bytes = b"",
) -> str:
    """One ``ikev2_decryption_table`` record: ``SPIi,SPIr,SK_ei,SK_er,"ENCR",SK_ai,SK_ar,"INTEG"``.

    For AES-GCM the SK_e values include their salt. Pass it to tshark as
    ``-o "uat:ikev2_decryption_table:<record>"``. Raises ValueError for an
    algorithm tshark's table does not name.
    """
    try:
        encr = TSHARK_IKEV2_ENCR[(encr_id, key_bits)]
        integ = TSHARK_IKEV2_INTEG[integ_id]
    except KeyError:
        raise ValueError(f"tshark has no IKEv2 name for ENCR {encr_id}/{key_bits} or INTEG {integ_id}") from None
    fields = (spi_i.hex(), spi_r.hex(), sk_ei.hex(), sk_er.hex(), f'"{encr}"', sk_ai.hex(), sk_ar.hex(), f'"{integ}"')
    return ",".join(fields)


def tshark_esp_record(
    *,
    src: str,
    dst: str,
    spi: int,
    encr_key: bytes,
    encr_id: int = ENCR_AES_GCM_16,
    auth_id: int = INTEG_NONE,
    auth_key: bytes = b"",
) -> str:
    """One ``esp_sa`` record: ``"IPv4","SRC","DST","0xSPI","ENCR","0xKEY","AUTH","0xKEY"``.

    For AES-GCM ``encr_key`` is key | salt. Use with ``-o esp.enable_encryption_decode:TRUE``
    and ``-o "uat:esp_sa:<record>"``. Raises ValueError for an algorithm tshark does not name.
    """
    try:
        encr = TSHARK_ESP_ENCR[encr_id]
        auth = TSHARK_ESP_AUTH[auth_id]
    except KeyError:
        raise ValueError(f"tshark has no ESP name for ENCR {encr_id} or AUTH {auth_id}") from None
    protocol = "IPv6" if ":" in src else "IPv4"
    auth_hex = f"0x{auth_key.hex()}" if auth_key else ""
    fields = (protocol, src, dst, f"0x{spi:08x}", encr, f"0x{encr_key.hex()}", auth, auth_hex)
    return ",".join(f'"{f}"' for f in fields)
