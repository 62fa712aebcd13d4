"""The cases for eno_tep: pairs of SYN-form ENO options (RFC 8547 §4) and what ENO makes of them.

Each case is the ENO option of the active opener's SYN and of the passive
opener's SYN-ACK, as bytes on the wire (kind 69, length, suboptions), built
with ``lab.wire.eno``. The expected outcome is ``lab.eno.rules.negotiate``:
the negotiated TEP identifier, or None when ENO falls back to plain TCP.
Fixed cases cover one rule each; ``random_cases`` draws fresh ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lab.eno.rules import EnoAgreed, negotiate
from lab.wire.eno import GlobalSuboption, SynEnoOption, TepSuboption, decode_syn_eno_option, push_syn_eno_option
from lab.wire.tcpcrypt import (
    TCPCRYPT_ECDHE_CURVE448,
    TCPCRYPT_ECDHE_CURVE25519,
    TCPCRYPT_ECDHE_P256,
    TCPCRYPT_ECDHE_P521,
)


@dataclass(frozen=True)
class Case:
    label: str
    client: bytes  # the SYN's ENO option, kind and length included
    server: bytes  # the SYN-ACK's

    @property
    def expected(self) -> int | None:
        outcome = negotiate(decode_syn_eno_option(self.client), decode_syn_eno_option(self.server))
        return outcome.tep_id if isinstance(outcome, EnoAgreed) else None


def option(*teps: int | TepSuboption, passive: bool | None = False, app_aware: bool = False) -> bytes:
    """A SYN-form option: a global suboption (left out when ``passive`` is None: implicit 0x00), then TEPs."""
    subs: list[GlobalSuboption | TepSuboption] = []
    if passive is not None:
        subs.append(GlobalSuboption(passive_role=passive, application_aware=app_aware))
    subs += [t if isinstance(t, TepSuboption) else TepSuboption(t) for t in teps]
    return push_syn_eno_option(SynEnoOption(suboptions=tuple(subs)))


A, B, C, D = TCPCRYPT_ECDHE_P256, TCPCRYPT_ECDHE_P521, TCPCRYPT_ECDHE_CURVE25519, TCPCRYPT_ECDHE_CURVE448

CASES: dict[str, list[Case]] = {
    "one common TEP": [
        Case("both offer only 0x21", option(A), option(A, passive=True)),
        Case("one overlap", option(A, B), option(B, passive=True)),
        Case("implicit global suboption on the SYN", option(A, C, passive=None), option(C, passive=True)),
    ],
    "host B's order decides": [
        Case("B prefers its last", option(A, B), option(A, B, passive=True)),
        Case("A's order does not matter", option(B, A), option(A, B, passive=True)),
        Case("last common in B's list", option(A, B, C), option(C, B, D, passive=True)),
        Case("B's last is not offered by A", option(A, B), option(B, A, D, passive=True)),
    ],
    "roles come from the b bits": [
        Case("the active opener plays B", option(A, B, passive=True), option(B, A, passive=False)),
        Case("active opener B, three TEPs", option(C, A, B, passive=True), option(A, B, C)),
    ],
    "fallback to plain TCP": [
        Case("no common TEP", option(A, B), option(C, D, passive=True)),
        Case("both sides b = 0", option(A, B), option(A, B, passive=False)),
        Case("both sides b = 1", option(A, passive=True), option(A, passive=True)),
        Case("vacuous SYN-ACK option", option(A), option(passive=True)),
    ],
    "suboptions with data": [
        Case(
            "v = 1 TEP last, with data",
            option(A, TepSuboption(B, v=True, data=b"\x01\x02")),
            option(A, TepSuboption(B, v=True, data=b"\x09"), passive=True),
        ),
        Case(
            "length byte before a TEP with data",
            option(TepSuboption(C, v=True, data=b"\xaa\xbb\xcc"), A),
            option(A, TepSuboption(C, v=True, data=b"\x01"), B, passive=True),
        ),
        Case(
            "v bit differs between the sides",
            option(TepSuboption(D, v=True, data=b"\x00\x01"), A),
            option(D, A, passive=True),
        ),
    ],
}


def random_cases(rng: random.Random, n: int) -> list[Case]:
    """``n`` fresh pairs: random TEP lists (0x20..0x2f), random b bits (mostly A active, B passive)."""
    pool = list(range(0x20, 0x30))
    out = []
    for i in range(n):
        a = rng.sample(pool, rng.randint(1, 5))
        b = rng.sample(pool, rng.randint(0, 5))
        roll = rng.random()
        client_passive, server_passive = (False, True) if roll < 0.7 else (True, False) if roll < 0.85 else (True, True)
        out.append(Case(f"random #{i + 1}", option(*a, passive=client_passive), option(*b, passive=server_passive)))
    return out
