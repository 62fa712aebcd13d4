"""Grader for mptcp_token: ``python -m exercises.mptcp_token.grade [DIR] [--json]``."""

from __future__ import annotations

import secrets
import sys
from pathlib import Path

from exercises.grading import Answers, Check, Exercise, Submission, main_for
from exercises.mptcp_token import scenario
from lab.mptcp.crypto import key_idsn, key_token

RANDOM_KEYS = 8


def collect(sub: Submission) -> Answers:
    facts = scenario.facts()
    fresh = [secrets.randbits(64) for _ in range(RANDOM_KEYS)] + [0, (1 << 64) - 1]
    capture_keys = [facts["client_key"], facts["server_key"]]
    calls = [("keys", [])]
    calls += [("token", [k]) for k in fresh + capture_keys]
    calls += [("idsn", [k]) for k in fresh + capture_keys]
    results = sub.call_many(calls)
    answers: dict[str, object] = {}
    errors = {}
    names = ["keys"] + [f"token:{k}" for k in fresh + capture_keys] + [f"idsn:{k}" for k in fresh + capture_keys]
    for name, value in zip(names, results):
        if isinstance(value, Exception):
            errors[name] = value
        else:
            answers[name] = value
    return Answers(answers, truth={"fresh": fresh, **facts}, errors=errors)


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} returned {value!r}, not an int")
    return value


def fresh_tokens(a: Answers) -> tuple[bool, str]:
    for key in a.truth["fresh"]:
        got = _int(a.answer(f"token:{key}"), f"token(0x{key:016x})")
        if got != key_token(key):
            return False, f"token(0x{key:016x}) = 0x{got:08x}, expected 0x{key_token(key):08x}"
    return True, f"{len(a.truth['fresh'])} random keys"


def fresh_idsns(a: Answers) -> tuple[bool, str]:
    for key in a.truth["fresh"]:
        got = _int(a.answer(f"idsn:{key}"), f"idsn(0x{key:016x})")
        if got != key_idsn(key):
            return False, f"idsn(0x{key:016x}) = 0x{got:016x}, expected 0x{key_idsn(key):016x}"
    return True, f"{len(a.truth['fresh'])} random keys"


def capture_keys(a: Answers) -> tuple[bool, str]:
    client, server = a.answer("keys")
    want = (a.truth["client_key"], a.truth["server_key"])
    wrong = [
        f"{who} key: you wrote {got!r}"
        for who, got, exp in (("client", client, want[0]), ("server", server, want[1]))
        if got != exp
    ]
    if wrong:
        swapped = (client, server) == (want[1], want[0])
        return False, "; ".join(wrong) + (" (client and server swapped?)" if swapped else "")
    return True, ""


def join_token(a: Answers) -> tuple[bool, str]:
    server = a.truth["server_key"]
    got = _int(a.answer(f"token:{server}"), "token(server key)")
    tokens = set(a.truth["join_tokens"])
    if got in tokens:
        return True, f"MP_JOIN SYNs carry 0x{got:08x}"
    return (
        False,
        f"token(server key) = 0x{got:08x}; the MP_JOIN SYNs carry {', '.join(f'0x{t:08x}' for t in sorted(tokens))}",
    )


def first_dsn(a: Answers) -> tuple[bool, str]:
    client = a.truth["client_key"]
    got = _int(a.answer(f"idsn:{client}"), "idsn(client key)")
    dsn = a.truth["client_first_dsn"]
    mask = (1 << 64) - 1 if a.truth["client_first_dsn_64"] else (1 << 32) - 1
    if ((got + 1) & mask) == dsn:
        return True, f"first DSN {dsn}"
    return False, f"idsn(client key) + 1 = {(got + 1) & mask}, the client's first DSS mapping says {dsn}"


CHECKS = (
    Check(
        "token() is the top 32 bits of SHA-256(key)",
        fresh_tokens,
        "Hash the key's 8 big-endian bytes with SHA-256 and keep the most significant 32 bits "
        "(RFC 8684 §3.2: 'a truncated (most significant 32 bits) SHA-256 hash of the key'). "
        "int.to_bytes(8, 'big') gives the bytes.",
        points=2,
    ),
    Check(
        "idsn() is the low 64 bits of SHA-256(key)",
        fresh_idsns,
        "The IDSN is the least significant 64 bits of the same SHA-256 hash (RFC 8684 §3.1): the last 8 bytes of the digest.",
        points=2,
    ),
    Check(
        "the keys read from the capture",
        capture_keys,
        "MP_CAPABLE on the SYN/ACK (frame 2) carries the server's key; the third ACK (frame 3) carries the client's key "
        "then the server's (RFC 8684 §3.1). Write them as integers (0x... is fine).",
    ),
    Check(
        "the server key's token is what the MP_JOIN SYNs quote",
        join_token,
        "An MP_JOIN SYN names the connection with the token of the *receiver's* key (RFC 8684 §3.2). "
        "Compare frames 6 and 10 of capture.txt with token(SERVER_KEY).",
    ),
    Check(
        "the client key's IDSN + 1 is the client's first data sequence number",
        first_dsn,
        "The first data byte a host sends has DSN = IDSN + 1 (RFC 8684 §3.3). Frame 14 shows the client's first mapping.",
    ),
)


def prepare(directory: Path) -> None:
    (directory / "capture.txt").write_text(scenario.listing())


EXERCISE = Exercise(
    name="mptcp_token",
    title="Compute an MPTCP token and IDSN from the keys in a real capture",
    topic="mptcp",
    minutes=15,
    rfcs=("RFC 8684 §3.1", "RFC 8684 §3.2", "RFC 8684 §3.3"),
    files=("capture.pcap",),
    collect=collect,
    checks=CHECKS,
    prepare=prepare,
    time_limit_s=20.0,
)

if __name__ == "__main__":
    sys.exit(main_for(EXERCISE))
