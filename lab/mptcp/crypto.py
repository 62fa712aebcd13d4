"""What MPTCP derives from its keys, and the DSS checksum.

Each host draws a 64-bit key per connection. Hashing the key's 8 big-endian
bytes gives the **token** (the most significant 32 bits, which names the
connection in MP_JOIN) and the **IDSN** (the least significant 64 bits, the
initial data sequence number) — with SHA-256 in v1 (RFC 8684 §3.1, §3.2) and
SHA-1 in v0 (RFC 6824 §3.1, §3.2). MACs are HMAC-SHA256 (v1) or HMAC-SHA1 (v0)
keyed with the two keys, the sender's first:

* MP_JOIN (§3.2): ``HMAC(Key_sender ‖ Key_receiver, R_sender ‖ R_receiver)``;
  the SYN/ACK carries its leftmost 64 bits, the third ACK its leftmost 160.
* ADD_ADDR (RFC 8684 §3.4.1, v1 only):
  ``HMAC(Key_sender ‖ Key_receiver, Address ID ‖ Address ‖ Port)`` with a
  zero port when none is sent; the option carries its *rightmost* 64 bits.

The DSS checksum (RFC 8684 §3.3.1) is the Internet checksum over a
pseudo-header (64-bit DSN, subflow sequence number, Data-Level Length, two
zero bytes) followed by the mapped payload.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

from lab.wire.checksum import internet_checksum, ones_sum, pack_address

MP_JOIN_SYNACK_HMAC_LEN = 8  # leftmost 64 bits (RFC 8684 §3.2, RFC 6824 §3.2)
MP_JOIN_ACK_HMAC_LEN = 20  # leftmost 160 bits: all of HMAC-SHA1, a truncation of HMAC-SHA256
ADD_ADDR_HMAC_LEN = 8  # rightmost 64 bits (RFC 8684 §3.4.1)

_HASHES = {0: "sha1", 1: "sha256"}
_KEY = struct.Struct("!Q")
_NONCES = struct.Struct("!II")
_PSEUDO_HEADER = struct.Struct("!QIHH")


def _hash_name(version: int) -> str:
    try:
        return _HASHES[version]
    except KeyError:
        raise ValueError(f"MPTCP version {version!r} is neither 0 (RFC 6824) nor 1 (RFC 8684)") from None


def _key_bytes(key: int, name: str = "key") -> bytes:
    if not 0 <= key <= 0xFFFF_FFFF_FFFF_FFFF:
        raise ValueError(f"{name} {key!r} is not a 64-bit unsigned integer")
    return _KEY.pack(key)


def key_digest(key: int, *, version: int = 1) -> bytes:
    """SHA-256 (v1) or SHA-1 (v0) of the key's 8 big-endian bytes. Raises ValueError on a bad key or version."""
    return hashlib.new(_hash_name(version), _key_bytes(key)).digest()


def key_token(key: int, *, version: int = 1) -> int:
    """The 32-bit token of ``key``: the most significant 32 bits of its hash."""
    return int.from_bytes(key_digest(key, version=version)[:4], "big")


def key_idsn(key: int, *, version: int = 1) -> int:
    """The initial data sequence number of ``key``: the least significant 64 bits of its hash.

    The first data byte has DSN IDSN + 1.
    """
    return int.from_bytes(key_digest(key, version=version)[-8:], "big")


def mptcp_hmac(key1: int, key2: int, message: bytes, *, version: int = 1) -> bytes:
    """HMAC-SHA256 (v1) or HMAC-SHA1 (v0) keyed with ``key1 ‖ key2`` (8 big-endian bytes each).

    The whole output (32 or 20 bytes); Linux's ``mptcp_crypto_hmac_sha``.
    Raises ValueError on a bad key or version.
    """
    return hmac.new(_key_bytes(key1, "key1") + _key_bytes(key2, "key2"), message, _hash_name(version)).digest()


def mp_join_hmac(
    sender_key: int, receiver_key: int, sender_nonce: int, receiver_nonce: int, *, version: int = 1
) -> bytes:
    """The full MP_JOIN HMAC the *sender* of the option computes.

    B's SYN/ACK: ``mp_join_hmac(key_b, key_a, r_b, r_a)``; A's third ACK:
    ``mp_join_hmac(key_a, key_b, r_a, r_b)``. Raises ValueError on a bad
    key, nonce or version.
    """
    try:
        nonces = _NONCES.pack(sender_nonce, receiver_nonce)
    except struct.error:
        raise ValueError(f"nonces {sender_nonce!r}, {receiver_nonce!r} are not 32-bit unsigned integers") from None
    return mptcp_hmac(sender_key, receiver_key, nonces, version=version)


def mp_join_synack_hmac(
    sender_key: int, receiver_key: int, sender_nonce: int, receiver_nonce: int, *, version: int = 1
) -> bytes:
    """The 8 bytes of HMAC an MP_JOIN SYN/ACK carries (its leftmost 64 bits)."""
    full = mp_join_hmac(sender_key, receiver_key, sender_nonce, receiver_nonce, version=version)
    return full[:MP_JOIN_SYNACK_HMAC_LEN]


def mp_join_ack_hmac(
    sender_key: int, receiver_key: int, sender_nonce: int, receiver_nonce: int, *, version: int = 1
) -> bytes:
    """The 20 bytes of HMAC an MP_JOIN third ACK carries (its leftmost 160 bits)."""
    full = mp_join_hmac(sender_key, receiver_key, sender_nonce, receiver_nonce, version=version)
    return full[:MP_JOIN_ACK_HMAC_LEN]


def add_addr_hmac(sender_key: int, receiver_key: int, address_id: int, address: str, port: int | None) -> bytes:
    """The 8 bytes of HMAC-SHA256 a v1 ADD_ADDR carries (its rightmost 64 bits).

    ``sender_key`` is the key of the host sending the ADD_ADDR. Raises
    ValueError on a bad key, address ID, address or port.
    """
    try:
        packed = pack_address(address)
    except (OSError, TypeError):
        raise ValueError(f"address {address!r} is neither IPv4 nor IPv6") from None
    try:
        message = bytes((address_id,)) + packed + struct.pack("!H", 0 if port is None else port)
    except (ValueError, struct.error):
        raise ValueError(f"address ID {address_id!r} or port {port!r} out of range") from None
    return mptcp_hmac(sender_key, receiver_key, message, version=1)[-ADD_ADDR_HMAC_LEN:]


def dss_pseudo_header(data_seq: int, subflow_seq: int, data_level_length: int, checksum: int = 0) -> bytes:
    """DSN (always 64 bits) ‖ relative subflow sequence number ‖ Data-Level Length ‖ checksum (zero to compute).

    Raises ValueError when a field does not fit its width.
    """
    try:
        return _PSEUDO_HEADER.pack(data_seq, subflow_seq, data_level_length, checksum)
    except struct.error:
        raise ValueError("DSS pseudo-header field out of range") from None


def dss_checksum(data_seq: int, subflow_seq: int, data_level_length: int, payload: bytes = b"") -> int:
    """The DSS checksum of a mapping (RFC 8684 §3.3.1).

    ``data_seq`` is the full 64-bit DSN even when the option sends 32 bits;
    ``payload`` is every byte the mapping covers (none for a DATA_FIN alone,
    whose Data-Level Length is 1). Raises ValueError as dss_pseudo_header.
    """
    return internet_checksum(dss_pseudo_header(data_seq, subflow_seq, data_level_length) + payload)


def dss_checksum_ok(data_seq: int, subflow_seq: int, data_level_length: int, payload: bytes, checksum: int) -> bool:
    """True when ``checksum`` verifies: the sum with it in place is 0xFFFF."""
    return ones_sum(dss_pseudo_header(data_seq, subflow_seq, data_level_length, checksum) + payload) == 0xFFFF
