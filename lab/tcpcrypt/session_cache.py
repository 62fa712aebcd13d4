"""The session cache behind tcpcrypt session resumption (RFC 8548 §3.5).

After a session, each host keeps ``ss[i+1]`` for its peer. The next
connection's SYN offers the TEP with ``v = 1`` and ``resume[i+1]``'s half of
the offering host (bytes 0..8 if it was host A in the session ss[0] came
from, 9..17 if it was B) plus a nonce; a host B holding the same secret
answers with the other half and its nonce, and both skip Init1/Init2. Every
secret serves at most one resumption: :meth:`take` removes what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.tcpcrypt.keys import resumption_half


@dataclass(frozen=True, slots=True)
class CachedSession:
    ss: bytes  # the next session secret, ss[i+1]
    tep: int
    aead: int
    original_role_a: bool  # this host's role in the session ss[0] came from

    def own_half(self) -> bytes:
        return resumption_half(self.ss, original_role_a=self.original_role_a)

    def peer_half(self) -> bytes:
        return resumption_half(self.ss, original_role_a=not self.original_role_a)


class SessionCache:
    """Cached secrets per peer address (a host's tcpcrypt state; share one object across connections)."""

    def __init__(self, *, max_per_peer: int = 8) -> None:
        self._by_peer: dict[str, list[CachedSession]] = {}
        self.max_per_peer = max_per_peer

    def store(self, peer: str, session: CachedSession) -> None:
        entries = self._by_peer.setdefault(peer, [])
        entries.append(session)
        del entries[: -self.max_per_peer]

    def take(self, peer: str, teps: tuple[int, ...]) -> CachedSession | None:
        """The newest secret for ``peer`` whose TEP is in ``teps``, removed from the cache (host A)."""
        entries = self._by_peer.get(peer, [])
        for i in range(len(entries) - 1, -1, -1):
            if entries[i].tep in teps:
                return entries.pop(i)
        return None

    def take_matching(self, peer: str, tep: int, half: bytes) -> CachedSession | None:
        """The secret whose peer half is ``half`` (what host A sent), removed from the cache (host B)."""
        entries = self._by_peer.get(peer, [])
        for i, entry in enumerate(entries):
            if entry.tep == tep and entry.peer_half() == half:
                return entries.pop(i)
        return None

    def __len__(self) -> int:
        return sum(len(v) for v in self._by_peer.values())
