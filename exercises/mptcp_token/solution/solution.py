"""mptcp_token, reference solution (not handed out by `tcplab exercise start`)."""

from __future__ import annotations

import hashlib

CLIENT_KEY = 0xC8D9A211A0CE4F1B
SERVER_KEY = 0x2601956E3097781E


def _digest(key: int) -> bytes:
    return hashlib.sha256(key.to_bytes(8, "big")).digest()


def token(key: int) -> int:
    """Most significant 32 bits of SHA-256 of the key (RFC 8684 §3.2)."""
    return int.from_bytes(_digest(key)[:4], "big")


def idsn(key: int) -> int:
    """Least significant 64 bits of SHA-256 of the key (RFC 8684 §3.1)."""
    return int.from_bytes(_digest(key)[-8:], "big")


def keys() -> tuple[int | None, int | None]:
    return CLIENT_KEY, SERVER_KEY
