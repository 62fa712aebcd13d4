"""mptcp_token: the token and IDSN an MPTCP v1 host derives from its key (RFC 8684 §3.1, §3.2).

Fill in the two functions and the two keys, then run:

    tcplab exercise check mptcp_token

Only the standard library is needed (hashlib). Keys are 64-bit unsigned
integers; read them from capture.txt (the MP_CAPABLE options).
"""

from __future__ import annotations

# The keys the capture shows (frames 2 and 3 of capture.txt), as integers, e.g. 0x0123456789abcdef.
CLIENT_KEY = None
SERVER_KEY = None


def token(key: int) -> int:
    """The 32-bit token that names the connection of the host owning ``key`` (RFC 8684 §3.2)."""
    # TODO: hash the key's 8 bytes (in network byte order) and keep the right part of the digest
    return 0


def idsn(key: int) -> int:
    """The 64-bit initial data sequence number of the host owning ``key`` (RFC 8684 §3.1)."""
    # TODO
    return 0


def keys() -> tuple[int | None, int | None]:
    """(client key, server key): the grader asks for them through this function."""
    return CLIENT_KEY, SERVER_KEY
