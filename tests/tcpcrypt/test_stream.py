"""TcpcryptStream: known answers, key exchange, frames, rekeying, and every way a peer can get it wrong."""

from __future__ import annotations

import random

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.eno.rules import Role
from lab.errors import ConfigError, LocalProtocolError
from lab.tcpcrypt.events import DataReceived, HandshakeCompleted, StreamAborted, StreamEnded
from lab.tcpcrypt.stream import TRANSITIONS, Input, StreamState, TcpcryptConfig, TcpcryptStream
from lab.trace import MemoryTracer
from lab.wire.tcpcrypt import AEAD_AES_128_GCM, AEAD_AES_256_GCM, AEAD_CHACHA20_POLY1305, Init1, push_init1

X25519 = 0x23
N_A = bytes(range(32))
N_B = bytes(range(32, 64))
ALICE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")  # RFC 7748 §6.1
BOB = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
ALICE_PUB = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
TRANSCRIPT = bytes.fromhex("45032345040123")  # vectors.md §7: A's SYN 450323, B's SYN-ACK 45040123

# RFC 8548 encodings of the same inputs (tests/tcpcrypt/test_keys.py, DERIVED regression values)
RFC_INIT1 = bytes.fromhex("15101a0e0000004b010001") + N_A + ALICE_PUB
RFC_INIT2 = (
    bytes.fromhex("097105e00000004a0001")
    + N_B
    + bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
)
RFC_SESSION_ID = "2360583ca04231aa3be00fb3d3e878f7f5a8e610875816bebcb7cecca7780e386f"
RFC_FIRST_FRAME = "0000166794b1565fafcfab8afcab3f0c0960a9627c71abeeaa"  # "hello" at offset 75

# vectors.md §7: the draft-02 encodings (one-byte cipher identifiers)
V7_INIT1 = bytes.fromhex("15101a0e0000004a0101") + N_A + ALICE_PUB
V7_INIT2 = (
    bytes.fromhex("097105e00000004901")
    + N_B
    + bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
)
V7_SESSION_ID = "23864280a19d09c269c98588b9cdfc8d02f9ee965f2aff28e03d085003dbcd605d"
V7_K_AB = bytes.fromhex("01f8cc5cfec7423a66a9103b42a52785")


class Scripted(random.Random):
    """A Random whose randbytes() hands out given values first (private keys, nonces)."""

    def __init__(self, *values: bytes) -> None:
        super().__init__(0)
        self.values = list(values)

    def randbytes(self, n: int) -> bytes:
        if self.values:
            value = self.values.pop(0)
            assert len(value) == n
            return value
        return super().randbytes(n)


def pair(
    tep: int = X25519,
    *,
    a_config: TcpcryptConfig | None = None,
    b_config: TcpcryptConfig | None = None,
    tracer: MemoryTracer | None = None,
) -> tuple[TcpcryptStream, TcpcryptStream]:
    t = tracer or MemoryTracer()
    a = TcpcryptStream(
        role=Role.A, tep=tep, eno_transcript=TRANSCRIPT, config=a_config, rng=random.Random(1), tracer=t.bind("a")
    )
    b = TcpcryptStream(
        role=Role.B, tep=tep, eno_transcript=TRANSCRIPT, config=b_config, rng=random.Random(2), tracer=t.bind("b")
    )
    a.start(now=0.0)
    b.start(now=0.0)
    return a, b


def shuttle(a: TcpcryptStream, b: TcpcryptStream, *, rounds: int = 4) -> None:
    for _ in range(rounds):  # b"" would mean "the TCP stream ended": pass only real bytes
        if data := a.data_to_send():
            b.receive_data(data)
        if data := b.data_to_send():
            a.receive_data(data)


def events(stream: TcpcryptStream) -> list:
    out = []
    while (ev := stream.next_event()) is not None:
        out.append(ev)
    return out


def received(evs: list) -> bytes:
    return b"".join(e.data for e in evs if isinstance(e, DataReceived))


def aborted(evs: list) -> StreamAborted:
    found = [e for e in evs if isinstance(e, StreamAborted)]
    assert len(found) == 1, evs
    return found[0]


# --- known answers -----------------------------------------------------------------------------------------


def test_known_answer_rfc8548_host_a() -> None:
    a = TcpcryptStream(
        role=Role.A,
        tep=X25519,
        eno_transcript=TRANSCRIPT,
        config=TcpcryptConfig(aeads=(AEAD_AES_128_GCM,)),
        rng=Scripted(ALICE, N_A),
    )
    a.start(now=0.0)
    assert a.data_to_send() == RFC_INIT1
    a.receive_data(RFC_INIT2)
    [done] = events(a)
    assert done == HandshakeCompleted(session_id=bytes.fromhex(RFC_SESSION_ID), tep=X25519, aead=AEAD_AES_128_GCM)
    a.send(b"hello")
    assert a.data_to_send().hex() == RFC_FIRST_FRAME


def test_known_answer_rfc8548_host_b() -> None:
    b = TcpcryptStream(role=Role.B, tep=X25519, eno_transcript=TRANSCRIPT, rng=Scripted(BOB, N_B))
    b.start(now=0.0)
    b.receive_data(RFC_INIT1 + bytes.fromhex(RFC_FIRST_FRAME))
    assert b.data_to_send() == RFC_INIT2
    evs = events(b)
    assert evs[0].session_id.hex() == RFC_SESSION_ID
    assert received(evs) == b"hello"


def test_known_answer_draft02_profile() -> None:
    """vectors.md §7 is the draft-02 encoding: the draft02 profile reproduces its Init bytes and keys."""
    config = TcpcryptConfig(profile="draft02", aeads=(AEAD_AES_128_GCM,))
    a = TcpcryptStream(role=Role.A, tep=X25519, eno_transcript=TRANSCRIPT, config=config, rng=Scripted(ALICE, N_A))
    a.start(now=0.0)
    assert a.data_to_send() == V7_INIT1
    a.receive_data(V7_INIT2)
    assert a.session_id is not None and a.session_id.hex() == V7_SESSION_ID
    a.send(b"hello")
    frame = a.data_to_send()
    # tcpcryptd: key = CPRF(mk, CONST_KEY_C, 32)[:16], 8-byte GCM IV = little-endian offset after Init1
    aad = bytes.fromhex("000016")
    assert frame == aad + AESGCM(V7_K_AB).encrypt(bytes(8), b"\x00hello", aad)
    a.send(b"again")
    second = a.data_to_send()
    assert second == aad + AESGCM(V7_K_AB).encrypt((len(frame)).to_bytes(8, "little"), b"\x00again", aad)


@pytest.mark.parametrize("profile", ["rfc8548", "draft02"])
@pytest.mark.parametrize("tep", [0x21, 0x22, 0x23, 0x24])
def test_every_tep_both_profiles(tep: int, profile: str) -> None:
    aeads = (AEAD_AES_256_GCM, AEAD_AES_128_GCM)
    a, b = pair(
        tep,
        a_config=TcpcryptConfig(profile=profile, aeads=aeads),
        b_config=TcpcryptConfig(profile=profile, aeads=aeads),
    )
    shuttle(a, b)
    assert a.session_id == b.session_id and a.session_id[0] == tep
    assert a.aead == b.aead == AEAD_AES_256_GCM  # B takes its own preference among A's offers


@pytest.mark.parametrize("aead", [AEAD_AES_128_GCM, AEAD_AES_256_GCM, AEAD_CHACHA20_POLY1305])
def test_every_aead_both_directions(aead: int) -> None:
    a, b = pair(a_config=TcpcryptConfig(aeads=(aead,)))
    data_ab = random.Random(1).randbytes(100_000)
    data_ba = random.Random(2).randbytes(70_000)
    a.send(data_ab)
    b.send(data_ba)  # B's data waits for Init1, then follows Init2 at once
    a.close(now=0.0)
    b.close(now=0.0)
    shuttle(a, b)
    b.receive_data(b"")
    a.receive_data(b"")
    evs_a, evs_b = events(a), events(b)
    assert received(evs_b) == data_ab and received(evs_a) == data_ba
    assert isinstance(evs_a[-1], StreamEnded) and isinstance(evs_b[-1], StreamEnded)
    assert a.aead == aead


# --- rekeying ---------------------------------------------------------------------------------------------------


def test_rekey_on_demand_and_by_volume() -> None:
    tracer = MemoryTracer()
    a, b = pair(a_config=TcpcryptConfig(rekey_after_bytes=40_000, max_frame_bytes=10_000), tracer=tracer)
    shuttle(a, b)
    data = random.Random(3).randbytes(100_000)
    a.send(data)
    b.rekey(now=1.0)
    b.send(b"after rekey")
    shuttle(a, b)
    assert received(events(b)) == data
    assert received(events(a)) == b"after rekey"
    assert a.send_generation == b.receive_generation == 2  # 100 kB at 40 kB per key
    assert b.send_generation == a.receive_generation == 1
    rekeys = [r for r in tracer.select(layer="tcpcrypt", name="key_updated") if r.data.get("rekey")]
    assert {(r.node, r.data["direction"]) for r in rekeys} == {
        ("a", "send"),
        ("b", "receive"),
        ("b", "send"),
        ("a", "receive"),
    }
    with pytest.raises(LocalProtocolError):
        TcpcryptStream(role=Role.A, tep=X25519, eno_transcript=b"").rekey(now=0.0)


# --- chunking ---------------------------------------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=40))
def test_any_chunking(cuts: list[int]) -> None:
    a, b = pair(a_config=TcpcryptConfig(max_frame_bytes=300))
    shuttle(a, b, rounds=1)
    data = random.Random(len(cuts)).randbytes(3000)
    a.send(data)
    a.close(now=0.0)
    wire = a.data_to_send()
    pos = 0
    for cut in cuts * 20:
        if pos >= len(wire):
            break
        b.receive_data(wire[pos : pos + cut])
        pos += cut
    b.receive_data(wire[pos:])
    b.receive_data(b"")
    evs = events(b)
    assert received(evs) == data and isinstance(evs[-1], StreamEnded)


# --- bad Init messages ----------------------------------------------------------------------------------------


def fresh(role: Role, **config: object) -> tuple[TcpcryptStream, MemoryTracer]:
    tracer = MemoryTracer()
    s = TcpcryptStream(
        role=role,
        tep=X25519,
        eno_transcript=TRANSCRIPT,
        rng=random.Random(9),
        tracer=tracer,
        config=TcpcryptConfig(**config),
    )
    s.start(now=0.0)
    return s, tracer


BAD_INIT1 = [
    pytest.param(b"GET / HTTP/1.1\r\n", "bad_init", id="plaintext"),
    pytest.param(bytes.fromhex("15101a0f"), "bad_init", id="wrong-magic"),
    pytest.param(bytes.fromhex("097105e0"), "bad_init", id="init2-magic-at-b"),
    pytest.param(bytes.fromhex("15101a0e7fffffff"), "bad_init", id="huge-message-len"),
    pytest.param(bytes.fromhex("15101a0e00000004"), "bad_init", id="message-len-below-header"),
    pytest.param(bytes.fromhex("15101a0e0000000c") + bytes(4), "bad_init", id="message-len-too-short-for-fields"),
    pytest.param(RFC_INIT1[:8] + b"\x05" + RFC_INIT1[9:], "bad_init", id="nciphers-overflow"),
    pytest.param(RFC_INIT1[:43] + bytes(32), "bad_public_key", id="all-zero-x25519-key"),
    pytest.param(
        push_init1(Init1((0x0003, 0x0007), N_A, ALICE_PUB), tep=X25519), "no_common_aead", id="no-common-aead"
    ),
]


@pytest.mark.parametrize(("raw", "reason"), BAD_INIT1)
def test_bad_init1(raw: bytes, reason: str) -> None:
    b, tracer = fresh(Role.B)
    b.receive_data(raw)
    event = aborted(events(b))
    assert event.reason == reason
    assert b.state is StreamState.ABORTED and b.data_to_send() == b""
    [error] = tracer.select(layer="tcpcrypt", name="error")
    assert error.data["reason"] == reason and error.data["detail"]
    b.receive_data(b"more bytes")  # ignored, never raises
    assert events(b) == []


def test_init1_with_ignored_trailer_is_accepted() -> None:
    b, _ = fresh(Role.B)
    raw = push_init1(Init1((AEAD_AES_128_GCM,), N_A, ALICE_PUB, ignored=b"future extension"), tep=X25519)
    b.receive_data(raw)
    assert b.established


def test_init2_bad_cases() -> None:
    a, _ = fresh(Role.A, aeads=(AEAD_AES_128_GCM,))
    init1 = a.data_to_send()
    b = TcpcryptStream(role=Role.B, tep=X25519, eno_transcript=TRANSCRIPT, rng=random.Random(3))
    b.start(now=0.0)
    b.receive_data(init1)
    init2 = bytearray(b.data_to_send())
    init2[9] = AEAD_AES_256_GCM  # B "chose" an AEAD A never offered
    a.receive_data(bytes(init2))
    assert aborted(events(a)).reason == "no_common_aead"
    a2, _ = fresh(Role.A)
    a2.receive_data(b"HTTP/1.1 200 OK\r\n")  # B fell back and answers in the clear
    assert aborted(events(a2)).reason == "bad_init"


def test_init_split_byte_by_byte() -> None:
    a, b = pair()
    for byte in a.data_to_send():
        b.receive_data(bytes((byte,)))
    assert b.established


def test_truncated_init_then_end_of_stream() -> None:
    b, _ = fresh(Role.B)
    b.receive_data(RFC_INIT1[:40])
    assert events(b) == []
    b.receive_data(b"")
    assert aborted(events(b)).reason == "truncated"


def test_handshake_timeout() -> None:
    a, tracer = fresh(Role.A, handshake_timeout_s=5.0)
    assert a.get_timer() == 5.0
    a.handle_timer(now=4.0)
    assert events(a) == []
    a.handle_timer(now=5.0)
    assert aborted(events(a)).reason == "handshake_timeout"
    assert a.get_timer() is None
    b, _ = fresh(Role.B, handshake_timeout_s=2.0)
    b.receive_data(RFC_INIT1[:10])  # half an Init1, then silence
    b.handle_timer(now=2.0)
    assert aborted(events(b)).reason == "handshake_timeout"


# --- forged, corrupted, truncated frames -------------------------------------------------------------------


def established(**a_config: object) -> tuple[TcpcryptStream, TcpcryptStream]:
    a, b = pair(a_config=TcpcryptConfig(**a_config))
    shuttle(a, b)
    events(a)
    events(b)
    return a, b


@pytest.mark.parametrize("where", [0, 1, 2, 3, 10, -1, -16])
def test_any_flipped_byte_aborts_and_delivers_nothing_of_it(where: int) -> None:
    a, b = established(max_frame_bytes=1000)
    a.send(b"first frame ok")
    b.receive_data(a.data_to_send())
    assert received(events(b)) == b"first frame ok"
    a.send(b"x" * 500)
    a.send(b"y" * 500)
    a.close(now=0.0)
    wire = bytearray(a.data_to_send())
    wire[where] ^= 0x01
    b.receive_data(bytes(wire))
    b.receive_data(b"")
    evs = events(b)
    # frames before the damaged one are intact and delivered; not one byte of it or what follows
    intact = b"" if where >= 0 else b"x" * 500 + b"y" * 500  # a negative index hits the FINp frame
    assert received(evs) == intact
    assert aborted(evs).reason in ("authentication_failed", "truncated")
    assert not [e for e in evs if isinstance(e, StreamEnded)]


def test_forged_frame_from_a_third_party() -> None:
    a, b = established()
    forged = bytes((0, 0, 30)) + random.Random(1).randbytes(30)
    b.receive_data(forged)
    assert aborted(events(b)).reason == "authentication_failed"


def test_replayed_and_reordered_frames_fail() -> None:
    a, b = established()
    a.send(b"one")
    one = a.data_to_send()
    a.send(b"two")
    two = a.data_to_send()
    b.receive_data(one)
    b.receive_data(one)  # replay: same frame at a later offset, another nonce
    assert aborted(events(b)).reason == "authentication_failed"
    a2, b2 = established()
    a2.send(b"one")
    one = a2.data_to_send()
    a2.send(b"two")
    two = a2.data_to_send()
    b2.receive_data(two + one)
    assert aborted(events(b2)).reason == "authentication_failed"


def test_tcp_fin_without_finp_is_truncation() -> None:
    a, b = established()
    a.send(b"data")
    b.receive_data(a.data_to_send())
    b.receive_data(b"")  # an attacker's FIN (or RST-free close) cuts the stream short
    evs = events(b)
    assert received(evs) == b"data"
    assert aborted(evs).reason == "truncated"


def test_fin_inside_a_frame_is_truncation() -> None:
    a, b = established()
    a.send(b"a whole frame")
    a.close(now=0.0)
    wire = a.data_to_send()
    b.receive_data(wire[:-5])
    b.receive_data(b"")
    evs = events(b)
    assert aborted(evs).reason == "truncated"
    assert received(evs) == b"a whole frame"  # the complete first frame was fine


def test_frame_after_finp_aborts() -> None:
    a, b = established()
    a.close(now=0.0)
    fin_frame = a.data_to_send()
    b.receive_data(fin_frame)
    b.receive_data(bytes((0, 0, 17)) + bytes(17))
    assert aborted(events(b)).reason == "bad_frame"


def test_urgent_pointer_frames_deliver_their_data() -> None:
    a, b = established()
    # build a frame with URGp through the sending direction's own AEAD: flags 02, urgent 0003, data
    d = a._tx
    offset = a._send_offset
    plaintext = bytes.fromhex("020003") + b"urgent!"
    aad = bytes((0, 0, len(plaintext) + 16))
    b.receive_data(aad + d.aead.encrypt(a._nonce(d, offset), plaintext, aad))
    assert received(events(b)) == b"urgent!"


# --- API misuse ---------------------------------------------------------------------------------------------


def test_api_misuse_raises_and_changes_nothing() -> None:
    a, b = established()
    with pytest.raises(LocalProtocolError):
        a.start(now=0.0)
    a.close(now=0.0)
    with pytest.raises(LocalProtocolError):
        a.send(b"late")
    with pytest.raises(LocalProtocolError):
        a.rekey(now=0.0)
    b.abort(now=0.0)
    with pytest.raises(LocalProtocolError):
        b.send(b"x")
    with pytest.raises(ConfigError):
        TcpcryptConfig(aeads=())
    with pytest.raises(ConfigError):
        TcpcryptConfig(profile="draft02", aeads=(AEAD_CHACHA20_POLY1305,))
    with pytest.raises(ConfigError):
        TcpcryptConfig(max_frame_bytes=70_000)
    with pytest.raises(ValueError):
        TcpcryptStream(role=Role.A, tep=0x30, eno_transcript=b"")


def test_state_table() -> None:
    for (state, inp), new in TRANSITIONS.items():
        assert isinstance(inp, Input)
        if inp is Input.ABORT:
            assert new is StreamState.ABORTED
    assert not [k for k in TRANSITIONS if k[0] is StreamState.ABORTED]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(list(Input)), max_size=10))
def test_every_state_input_pair_follows_the_table(inputs: list[Input]) -> None:
    stream = TcpcryptStream(role=Role.A, tep=X25519, eno_transcript=b"")
    for inp in inputs:
        before = stream.state
        expected = TRANSITIONS.get((before, inp))
        if expected is None:
            with pytest.raises(AssertionError):
                stream._set_state(inp, 0.0)
            assert stream.state is before
        else:
            stream._set_state(inp, 0.0)
            assert stream.state is expected


def test_bare_fin_only_ends_a_draft02_stream() -> None:
    for profile, aeads, clean in (("rfc8548", (1,), False), ("draft02", (1,), True)):
        config = TcpcryptConfig(profile=profile, aeads=aeads)
        a, b = pair(a_config=config, b_config=config)
        shuttle(a, b)
        a.send(b"last words")
        b.receive_data(a.data_to_send())
        b.receive_data(b"")  # TCP FIN, no FINp frame
        evs = events(b)
        assert received(evs) == b"last words"
        assert isinstance(evs[-1], StreamEnded) is clean
    strict = TcpcryptConfig(profile="draft02", aeads=(1,), bare_fin_ends_stream=False)
    a, b = pair(a_config=strict, b_config=strict)
    shuttle(a, b)
    b.receive_data(b"")
    assert aborted(events(b)).reason == "truncated"
