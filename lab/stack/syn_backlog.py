"""A listener's backlog of half-open connections, and SYN cookies beyond it.

A SYN to a listening port makes a connection in SYN-RECEIVED, which holds its
buffers until the handshake completes or times out (more than a minute with the
default ``syn_retries``). A flood of SYNs from addresses that never answer would
hold one such connection per SYN, so a listener keeps at most ``backlog``
half-open connections. Beyond that, as Linux does with ``tcp_syncookies=1``, a
SYN to a plain TCP listener is answered with a SYN/ACK whose initial sequence
number is a SYN cookie (a keyed hash of the four-tuple, the peer's ISN and a
64-second time slot, plus the MSS in 2 bits) and no state at all; an ACK that
acknowledges a valid cookie makes the connection. What cookies cannot carry is
lost for that connection, as with Linux without timestamps: window scaling,
SACK and timestamps are not offered. A SYN for a listener whose connections need
state from the SYN (an extension such as TCP-ENO, or a connection group such as
MPTCP) is dropped instead once the backlog is full; the client retries. For a
group listener the backlog counts the SYNs that make a new connection (MPTCP:
MP_CAPABLE or plain SYNs; MP_JOINs are bounded by ``max_subflows`` and refused
beyond it with MP_TCPRST "administratively prohibited"), and a new SYN may take
the place of the oldest half-open connection once that one's SYN/ACK has gone
unanswered for the initial RTO (BSD's syncache likewise drops its oldest entry):
a flood's spoofed SYNs never answer, so a real client gets in when it retries.
"""

from __future__ import annotations

import hashlib
import hmac
import struct

COOKIE_SLOT_S = 64.0  # a cookie is good for the slot it was made in and the one after
COOKIE_MSS = (536, 1220, 1440, 1460)  # the MSS a cookie can carry (2 bits), the largest at most the peer's
DEFAULT_BACKLOG = 128  # half-open connections per listener (Linux's tcp_max_syn_backlog floor)


class SynCookies:
    """Makes and checks SYN cookies with a host secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def _hash24(self, four: bytes, peer_isn: int, slot: int, mss_index: int) -> int:
        msg = four + struct.pack("!IIB", peer_isn & 0xFFFFFFFF, slot & 0xFFFFFFFF, mss_index)
        return int.from_bytes(hmac.new(self._secret, msg, hashlib.sha256).digest()[:3], "big")

    def make(self, four: bytes, peer_isn: int, peer_mss: int, *, now: float) -> tuple[int, int]:
        """(our ISN, the MSS it carries) for a SYN from the peer ``four`` (addresses and ports)."""
        mss_index = max((i for i, m in enumerate(COOKIE_MSS) if m <= peer_mss), default=0)
        slot = int(now // COOKIE_SLOT_S)
        isn = ((slot & 0x1F) << 27) | (mss_index << 24) | self._hash24(four, peer_isn, slot, mss_index)
        return isn, COOKIE_MSS[mss_index]

    def check(self, four: bytes, peer_isn: int, our_isn: int, *, now: float) -> int | None:
        """The MSS a valid cookie ``our_isn`` carries, else None."""
        slot_bits = our_isn >> 27
        mss_index = (our_isn >> 24) & 0x3
        current = int(now // COOKIE_SLOT_S)
        for slot in (current, current - 1):
            if slot & 0x1F == slot_bits and self._hash24(four, peer_isn, slot, mss_index) == our_isn & 0xFFFFFF:
                return COOKIE_MSS[mss_index]
        return None
