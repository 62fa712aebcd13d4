"""The tcpcrypt stream layer (RFC 8548 §3-§4): key exchange, then AEAD frames.

Once TCP-ENO has negotiated a tcpcrypt TEP, the whole TCP byte stream in each
direction belongs to this layer. Host A's stream starts with Init1, host B's
with Init2 (§4.1); every later byte belongs to an encryption frame (§4.2)::

    control (1) | clen (2) | ciphertext (clen)      AAD = control | clen
    plaintext = flags (1) | [urgent (2)] | data

The layer is sans-I/O like every endpoint here: ``receive_data(data)`` takes
TCP's in-order bytes in any chunking (``b""`` when the TCP stream ended),
``data_to_send()`` gives the bytes TCP must send, ``next_event()`` what
happened. It reads no clock (``now`` comes with each call) and draws its
private key and nonces only from the ``rng`` it was handed.

What the peer does wrong never raises: a bad Init message, an unknown AEAD
choice, an invalid public key, a frame that fails authentication, a TCP FIN
without a preceding FINp frame, or a stalled key exchange end the stream with
a :class:`StreamAborted` event and an ``error`` trace record; the owner resets
the connection (RFC 8548 §3.3, §3.6, §3.7). No byte of a frame that failed
authentication is ever delivered.

Two profiles:

* ``rfc8548`` (default): two-byte AEAD identifiers, compressed P-256/P-521
  points behind ``pubkey_len``, traffic keys ``CPRF(mk, CONST_KEY_A/B,
  ae_key_len + ae_nonce_len)`` split into key and nonce randomizer NR, frame
  nonce ``frame_ID XOR NR`` with frame IDs counted from the first byte of the
  stream (Init1/Init2 included).
* ``draft02``: what the tcpcryptd reference daemon (tcpcrypt-02 with ENO
  draft 03) sends: one-byte cipher identifiers, uncompressed points, key =
  the first ae_key_len bytes of ``CPRF(mk, CONST_KEY_C/S, 32)``, and an 8-byte
  GCM IV holding, little-endian as the daemon stores it, the frame's offset
  from the first byte after the Init message. A TCP FIN without a FINp frame
  ends the stream here (the daemon's Linux proxy mode closes that way);
  ``bare_fin_ends_stream`` turns this on or off for either profile. Checked
  against tcpcryptd itself (tests/tcpcrypt/test_interop_tcpcryptd.py).
"""

from __future__ import annotations

import enum
import random
from bisect import bisect_right
from collections import deque
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from lab.errors import ConfigError, DecodeError, LocalProtocolError, RemoteProtocolError
from lab.tcpcrypt import keys
from lab.tcpcrypt.events import DataReceived, HandshakeCompleted, StreamAborted, StreamEnded, TcpcryptEvent
from lab.trace import NULL_TRACER, Tracer
from lab.wire.buffer import Buffer
from lab.wire.eno import Role
from lab.wire.tcpcrypt import (
    AEAD_AES_128_GCM,
    AEAD_AES_256_GCM,
    AEAD_CHACHA20_POLY1305,
    AEAD_TAG_LEN,
    AEADS,
    CONST_KEY_A,
    CONST_KEY_B,
    CONTROL_REKEY,
    DRAFT02_CONST_KEY_C,
    DRAFT02_CONST_KEY_S,
    FLAG_FINP,
    FLAG_URGP,
    FRAME_HEADER_LEN,
    INIT1_MAGIC,
    INIT2_MAGIC,
    K_LEN,
    MAX_CIPHERTEXT_LEN,
    N_A_LEN,
    TEPS,
    Init1,
    Init2,
    aead_params,
    pull_draft02_init1,
    pull_draft02_init2,
    pull_init1,
    pull_init2,
    push_draft02_init1,
    push_draft02_init2,
    push_init1,
    push_init2,
    tep_params,
)

LAYER = "tcpcrypt"
PROFILE_RFC8548 = "rfc8548"
PROFILE_DRAFT02 = "draft02"
PROFILES = (PROFILE_RFC8548, PROFILE_DRAFT02)
DRAFT02_AEADS = (AEAD_AES_128_GCM, AEAD_AES_256_GCM)  # the daemon registers only these (ids 1 and 2)
DRAFT02_IV_LEN = 8
MAX_FRAME_DATA = MAX_CIPHERTEXT_LEN - AEAD_TAG_LEN - 1  # clen = flags + data + tag < 2^16

# StreamAborted.reason
ABORT_BAD_INIT = "bad_init"  # wrong magic, bad length, unparsable Init1/Init2
ABORT_NO_COMMON_AEAD = "no_common_aead"  # B supports none of A's AEADs, or B chose one A did not offer
ABORT_BAD_PUBLIC_KEY = "bad_public_key"  # key validation failed (RFC 8548 §5)
ABORT_AUTHENTICATION = "authentication_failed"  # a frame failed AEAD verification (§3.6)
ABORT_BAD_FRAME = "bad_frame"  # a frame that decrypts to a malformed plaintext, or data after FINp
ABORT_TRUNCATED = "truncated"  # the TCP stream ended without a FINp frame, or mid-frame (§3.7)
ABORT_HANDSHAKE_TIMEOUT = "handshake_timeout"  # the peer stopped in the middle of the key exchange
ABORT_LOCAL = "local_abort"


@dataclass(frozen=True, kw_only=True)
class TcpcryptConfig:
    """Settings of one tcpcrypt endpoint; times in seconds, sizes in bytes.

    Raises ConfigError for an unknown profile or AEAD, an empty AEAD list or
    sizes out of range.
    """

    aeads: tuple[int, ...] = (AEAD_AES_128_GCM, AEAD_AES_256_GCM, AEAD_CHACHA20_POLY1305)  # most preferred first
    max_frame_bytes: int = 16384  # application bytes per frame (over TCP-ENO at most: a full frame fills whole segments)
    rekey_after_bytes: int | None = None  # rekey the sending direction after this many bytes under one key
    handshake_timeout_s: float = 10.0  # give up when Init1/Init2 has not arrived by then
    max_init_bytes: int = 4096  # refuse longer Init messages instead of buffering them
    profile: str = PROFILE_RFC8548
    # accept a TCP FIN without a FINp frame as the end of the stream; None: only in the draft02
    # profile, since tcpcryptd's Linux proxy mode ends its streams that way (RFC 8548 §3.7 forbids it)
    bare_fin_ends_stream: bool | None = None

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ConfigError(f"tcpcrypt profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")
        if self.bare_fin_ends_stream is None:
            object.__setattr__(self, "bare_fin_ends_stream", self.profile == PROFILE_DRAFT02)
        object.__setattr__(self, "aeads", tuple(self.aeads))
        if not self.aeads:
            raise ConfigError("tcpcrypt needs at least one AEAD algorithm")
        allowed = DRAFT02_AEADS if self.profile == PROFILE_DRAFT02 else tuple(AEADS)
        for aead in self.aeads:
            if aead not in allowed:
                raise ConfigError(
                    f"AEAD 0x{aead:04x} not available in profile {self.profile}; "
                    f"known: {', '.join(f'0x{a:04x}' for a in allowed)}"
                )
        if len(set(self.aeads)) != len(self.aeads):
            raise ConfigError("AEAD list repeats an algorithm")
        if not 1 <= self.max_frame_bytes <= MAX_FRAME_DATA:
            raise ConfigError(f"max_frame_bytes must be 1..{MAX_FRAME_DATA}, got {self.max_frame_bytes}")
        if self.rekey_after_bytes is not None and self.rekey_after_bytes < 1:
            raise ConfigError("rekey_after_bytes must be positive")
        if not self.handshake_timeout_s > 0:
            raise ConfigError("handshake_timeout_s must be positive")
        if not 64 <= self.max_init_bytes <= 1 << 20:
            raise ConfigError("max_init_bytes must be 64..2**20")


class StreamState(enum.Enum):
    IDLE = "idle"  # created, start() not called yet
    AWAITING_INIT1 = "awaiting-init1"  # host B
    AWAITING_INIT2 = "awaiting-init2"  # host A, Init1 sent
    ENCRYPTING = "encrypting"
    ABORTED = "aborted"


class Input(enum.Enum):
    START_A = "start as host A (Init1 sent)"
    START_B = "start as host B"
    RESUME = "resumed session"
    RECV_INIT1 = "Init1 received (Init2 sent)"
    RECV_INIT2 = "Init2 received"
    ABORT = "abort"


S = StreamState
TRANSITIONS: dict[tuple[StreamState, Input], StreamState] = {
    (S.IDLE, Input.START_A): S.AWAITING_INIT2,
    (S.IDLE, Input.START_B): S.AWAITING_INIT1,
    (S.IDLE, Input.RESUME): S.ENCRYPTING,
    (S.AWAITING_INIT1, Input.RECV_INIT1): S.ENCRYPTING,
    (S.AWAITING_INIT2, Input.RECV_INIT2): S.ENCRYPTING,
}
for _state in S:
    if _state is not S.ABORTED:
        TRANSITIONS[(_state, Input.ABORT)] = S.ABORTED


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumedSession:
    """What both ends agreed on in the SYNs to resume (RFC 8548 §3.5): keys come from ``ss`` at once."""

    ss: bytes  # ss[i], the cached next-session secret
    original_role_a: bool  # whether this host was A in the session ss[0] came from
    sn: bytes  # nonce_a | nonce_b
    aead: int  # the AEAD of the original session


class _Direction:
    """One direction's keys: master key generation, AEAD object and nonce material."""

    __slots__ = ("aead", "bytes_under_key", "generation", "mk", "nr", "origin")

    def __init__(self) -> None:
        self.mk = b""
        self.generation = 0
        self.aead: AESGCM | ChaCha20Poly1305 | None = None
        self.nr = 0  # RFC 8548 NR as an integer (rfc8548 profile)
        self.origin = 0  # first frame offset (draft02 IV origin)
        self.bytes_under_key = 0


class TcpcryptStream:
    """One tcpcrypt session over one TCP connection, for ENO role ``role``.

    ``tep`` is the negotiated TEP identifier, ``tep_byte`` the first byte of
    the TEP suboption host B sent (v bit included; the session ID starts with
    it), ``eno_transcript`` the ENO negotiation transcript (RFC 8547 §4.8).
    """

    def __init__(
        self,
        *,
        role: Role,
        tep: int,
        eno_transcript: bytes,
        tep_byte: int | None = None,
        config: TcpcryptConfig | None = None,
        tracer: Tracer = NULL_TRACER,
        rng: random.Random | None = None,
        conn: str = "",
        resumed: ResumedSession | None = None,
    ) -> None:
        self.role = role
        self.tep = tep_params(tep).tep_id
        self.tep_byte = tep if tep_byte is None else tep_byte
        self.config = config or TcpcryptConfig()
        self._draft = self.config.profile == PROFILE_DRAFT02
        self._transcript = eno_transcript
        self._tracer = tracer
        self._rng = rng or random.Random(0)
        self._conn = conn
        self._resumed = resumed
        self._state = S.IDLE
        self._events: deque[TcpcryptEvent] = deque()
        self._out = bytearray()
        self._send_offset = 0  # bytes of our stream produced so far (frame IDs count from here)
        self._recv_offset = 0  # stream offset of _rbuf[0]
        self._rbuf = bytearray()
        self._pending = bytearray()  # application bytes waiting for keys
        self._fin_queued = False
        self._fin_sent = False
        self._fin_received = False
        self._rekey_requested = False
        self._deadline: float | None = None
        self._private: bytes = b""
        self._init1 = b""
        self._init2 = b""
        self._n_a = b""
        self._offered: tuple[int, ...] = ()
        self.aead: int | None = None
        self.session_id: bytes | None = None
        self.next_session_secret: bytes | None = None  # ss[i+1], what a session cache keeps
        self.abort_reason: str | None = None
        self._ss = b""
        self._tx = _Direction()
        self._rx = _Direction()
        self.bytes_sent = 0  # application bytes sealed
        # draft02: where each Init message and frame ends in our stream, so that TCP can put exactly
        # one of them in each segment (tcpcryptd decrypts packet by packet)
        self._boundaries: list[int] | None = [] if self._draft else None
        self.bytes_received = 0  # application bytes delivered

    # --- properties -------------------------------------------------------------------------------

    @property
    def state(self) -> StreamState:
        return self._state

    @property
    def established(self) -> bool:
        return self._state is S.ENCRYPTING

    @property
    def aborted(self) -> bool:
        return self._state is S.ABORTED

    @property
    def all_sent(self) -> bool:
        """Nothing waits for keys: every byte written (and FINp, once closed) is in data_to_send()."""
        return self._state is S.ENCRYPTING and not self._pending and (self._fin_sent or not self._fin_queued)

    @property
    def send_generation(self) -> int:
        return self._tx.generation

    @property
    def receive_generation(self) -> int:
        return self._rx.generation

    # --- commands ---------------------------------------------------------------------------------

    def start(self, *, now: float) -> None:
        """Begin: host A queues Init1, host B waits for it, a resumed session has keys at once.

        Raises LocalProtocolError when called twice.
        """
        if self._state is not S.IDLE:
            raise LocalProtocolError(f"cannot start a tcpcrypt stream in state {self._state.value}")
        if self._resumed is not None:
            self._set_state(Input.RESUME, now)
            self._install_resumed(self._resumed, now)
            return
        self._deadline = now + self.config.handshake_timeout_s
        if self.role is Role.A:
            self._private = keys.generate_private_key(self.tep, self._rng)
            n_a = self._n_a = self._rng.randbytes(N_A_LEN)
            self._offered = self.config.aeads
            msg = Init1(sym_cipher_list=self._offered, n_a=n_a, pub_a=self._public_key())
            self._init1 = push_draft02_init1(msg, tep=self.tep) if self._draft else push_init1(msg, tep=self.tep)
            self._emit(self._init1)
            self._record(
                now,
                "segment_sent",
                {
                    "message": "INIT1",
                    "length": len(self._init1),
                    "sym_ciphers": [_aead_name(a) for a in self._offered],
                    "tep": _tep_name(self.tep),
                },
            )
            self._set_state(Input.START_A, now)
        else:
            self._set_state(Input.START_B, now)
        if self._rbuf:
            self._process(now)

    def send(self, data: bytes, *, now: float | None = None) -> None:
        """Queue application bytes (sealed at once when keys are in place).

        Raises LocalProtocolError after close() or once the stream aborted.
        """
        if now is not None:
            self._now_hint = now
        if self._state is S.ABORTED:
            raise LocalProtocolError("the tcpcrypt stream was aborted")
        if self._fin_queued:
            raise LocalProtocolError("cannot send after close()")
        if not data:
            return
        if self._state is S.ENCRYPTING:
            self._seal(data, fin=False)
        else:
            self._pending += data

    def close(self, *, now: float) -> None:
        """End our direction: a frame with FINp follows the data (RFC 8548 §4.2.1). Idempotent."""
        if self._fin_queued or self._state is S.ABORTED:
            return
        self._now_hint = now
        self._fin_queued = True
        if self._state is S.ENCRYPTING:
            self._seal(b"", fin=True)

    def rekey(self, *, now: float) -> None:
        """Move our sending direction to the next key generation (RFC 8548 §3.8).

        The next frame carries the rekey bit; if no data is waiting, an empty
        frame carries it now. Raises LocalProtocolError before the keys exist
        or after close().
        """
        if self._state is not S.ENCRYPTING or self._fin_queued:
            raise LocalProtocolError(f"cannot rekey in state {self._state.value}")
        self._now_hint = now
        self._rekey_requested = True
        self._seal(b"", fin=False)

    def abort(self, reason: str = ABORT_LOCAL, *, now: float) -> None:
        """Stop here (the owner is resetting the connection). Idempotent."""
        self._abort(reason, "aborted locally", now, event=False)

    def frame_end(self, offset: int) -> int | None:
        """draft02 profile: where the Init message or frame holding stream ``offset`` ends (else None)."""
        bounds = self._boundaries
        if not bounds:
            return None
        i = bisect_right(bounds, offset)
        return bounds[i] if i < len(bounds) else None

    def data_to_send(self) -> bytes:
        """Bytes for TCP, in order; empties the queue."""
        if not self._out:
            return b""
        data = bytes(self._out)
        self._out.clear()
        return data

    def next_event(self) -> TcpcryptEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """The key-exchange deadline while waiting for Init1/Init2, else None."""
        if self._state in (S.AWAITING_INIT1, S.AWAITING_INIT2):
            return self._deadline
        return None

    def handle_timer(self, *, now: float) -> None:
        deadline = self.get_timer()
        if deadline is not None and now >= deadline:
            waiting = "Init1" if self._state is S.AWAITING_INIT1 else "Init2"
            self._abort(ABORT_HANDSHAKE_TIMEOUT, f"no {waiting} after {self.config.handshake_timeout_s} s", now)

    # --- input ------------------------------------------------------------------------------------

    def receive_data(self, data: bytes, *, now: float = 0.0) -> None:
        """Take the peer's next stream bytes; ``b""`` means the TCP stream ended. Never raises."""
        if self._state is S.ABORTED:
            return
        if not data:
            self._end_of_stream(now)
            return
        self._rbuf += data
        if self._state is not S.IDLE:
            self._process(now)

    def _process(self, now: float) -> None:
        if self._state in (S.AWAITING_INIT1, S.AWAITING_INIT2):
            if not self._read_init(now):
                return
        if self._state is S.ENCRYPTING and len(self._rbuf) >= FRAME_HEADER_LEN:
            self._read_frames(now)

    def _read_init(self, now: float) -> bool:
        """Parse the peer's Init message once it is whole; False while waiting or after an abort."""
        b_side = self._state is S.AWAITING_INIT1
        name = "INIT1" if b_side else "INIT2"
        magic = INIT1_MAGIC if b_side else INIT2_MAGIC
        buf = self._rbuf
        head = bytes(buf[:4])
        if head != magic.to_bytes(4, "big")[: len(head)]:
            self._abort(ABORT_BAD_INIT, f"stream starts with {head.hex()}, not {name}_MAGIC {magic:08x}", now)
            return False
        if len(buf) < 8:
            return False
        message_len = int.from_bytes(buf[4:8], "big")
        if message_len > self.config.max_init_bytes:
            self._abort(ABORT_BAD_INIT, f"{name} message_len {message_len} exceeds {self.config.max_init_bytes}", now)
            return False
        if message_len < 8:
            self._abort(ABORT_BAD_INIT, f"{name} message_len {message_len} shorter than its header", now)
            return False
        if len(buf) < message_len:
            return False
        raw = bytes(buf[:message_len])
        del buf[:message_len]
        self._recv_offset += message_len
        try:
            if b_side:
                pull = pull_draft02_init1 if self._draft else pull_init1
                msg1 = pull(Buffer(raw), tep=self.tep)
                self._on_init1(raw, msg1, now)
            else:
                pull2 = pull_draft02_init2 if self._draft else pull_init2
                msg2 = pull2(Buffer(raw), tep=self.tep)
                self._on_init2(raw, msg2, now)
        except DecodeError as exc:
            self._abort(ABORT_BAD_INIT, f"{name}: {exc}", now)
            return False
        except RemoteProtocolError as exc:
            self._abort(ABORT_BAD_PUBLIC_KEY, f"{name}: {exc}", now)
            return False
        return self._state is S.ENCRYPTING

    def _on_init1(self, raw: bytes, msg: Init1, now: float) -> None:
        self._record(
            now,
            "segment_received",
            {
                "message": "INIT1",
                "length": len(raw),
                "sym_ciphers": [_aead_name(a) for a in msg.sym_cipher_list],
                "tep": _tep_name(self.tep),
                "ignored_bytes": len(msg.ignored),
            },
        )
        offered = set(msg.sym_cipher_list)
        chosen = next((a for a in self.config.aeads if a in offered), None)
        if chosen is None:
            self._abort(
                ABORT_NO_COMMON_AEAD,
                f"A offers {[_aead_name(a) for a in msg.sym_cipher_list]}, B supports "
                f"{[_aead_name(a) for a in self.config.aeads]}",
                now,
            )
            return
        self._private = keys.generate_private_key(self.tep, self._rng)
        es = keys.shared_secret(self.tep, self._private, msg.pub_a)  # RemoteProtocolError: caller aborts
        n_b = self._rng.randbytes(N_A_LEN)
        reply = Init2(sym_cipher=chosen, n_b=n_b, pub_b=self._public_key())
        self._init1 = raw
        self._init2 = push_draft02_init2(reply, tep=self.tep) if self._draft else push_init2(reply, tep=self.tep)
        self._emit(self._init2)
        self._record(
            now,
            "segment_sent",
            {
                "message": "INIT2",
                "length": len(self._init2),
                "sym_cipher": _aead_name(chosen),
                "tep": _tep_name(self.tep),
            },
        )
        prk = keys.compute_prk(n_a=msg.n_a, eno_transcript=self._transcript, init1=raw, init2=self._init2, es=es)
        self._install_fresh(prk, chosen, now, input_=Input.RECV_INIT1)

    def _on_init2(self, raw: bytes, msg: Init2, now: float) -> None:
        self._record(
            now,
            "segment_received",
            {
                "message": "INIT2",
                "length": len(raw),
                "sym_cipher": _aead_name(msg.sym_cipher),
                "tep": _tep_name(self.tep),
                "ignored_bytes": len(msg.ignored),
            },
        )
        if msg.sym_cipher not in self._offered:
            self._abort(ABORT_NO_COMMON_AEAD, f"B chose {_aead_name(msg.sym_cipher)}, which A did not offer", now)
            return
        es = keys.shared_secret(self.tep, self._private, msg.pub_b)
        self._init2 = raw
        prk = keys.compute_prk(n_a=self._n_a, eno_transcript=self._transcript, init1=self._init1, init2=raw, es=es)
        self._install_fresh(prk, msg.sym_cipher, now, input_=Input.RECV_INIT2)

    def _public_key(self) -> bytes:
        pub = keys.public_key(self.tep, self._private)
        if self._draft and TEPS[self.tep].length_prefixed:  # the daemon sends the uncompressed point
            point = ec.EllipticCurvePublicKey.from_encoded_point(keys._NIST_CURVES[self.tep], pub)
            return point.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
        return pub

    # --- keys -------------------------------------------------------------------------------------

    def _install_fresh(self, prk: bytes, aead: int, now: float, *, input_: Input) -> None:
        self._private = b""  # ephemeral: forget it once ES is used
        self._ss = prk
        self.aead = aead
        self.session_id = keys.session_id(self.tep_byte, prk)
        self.next_session_secret = keys.next_session_secret(prk)
        mk = keys.master_key(prk)
        self._set_state(input_, now)
        self._start_keys(mk, original_role_a=self.role is Role.A, now=now, resumed=False)

    def _install_resumed(self, resumed: ResumedSession, now: float) -> None:
        self._ss = resumed.ss
        self.aead = resumed.aead
        self.session_id = keys.session_id(self.tep_byte, resumed.ss, resumed.sn)
        self.next_session_secret = keys.next_session_secret(resumed.ss)
        mk = keys.master_key(resumed.ss, resumed.sn)
        self._start_keys(mk, original_role_a=resumed.original_role_a, now=now, resumed=True)

    def _start_keys(self, mk: bytes, *, original_role_a: bool, now: float, resumed: bool) -> None:
        self._original_role_a = original_role_a
        self._tx.mk = self._rx.mk = mk
        self._tx.origin = len(self._init1 if self.role is Role.A else self._init2)
        self._rx.origin = self._recv_offset
        self._key_direction(self._tx, sending=True)
        self._key_direction(self._rx, sending=False)
        assert self.session_id is not None and self.aead is not None
        self._record(
            now,
            "key_updated",
            {
                "session_id": self.session_id.hex(),
                "tep": _tep_name(self.tep),
                "aead": _aead_name(self.aead),
                "role": self.role.value,
                "direction": "both",
                "generation": 0,
                "resumed": resumed,
                "profile": self.config.profile,
            },
        )
        self._events.append(
            HandshakeCompleted(session_id=self.session_id, tep=self.tep, aead=self.aead, resumed=resumed)
        )
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            self._seal(data, fin=False)
        if self._fin_queued and not self._fin_sent:
            self._seal(b"", fin=True)

    def _key_direction(self, d: _Direction, *, sending: bool) -> None:
        """Derive ``d``'s AEAD from its master key: k_ab for A -> B, k_ba for B -> A."""
        assert self.aead is not None
        a_to_b = sending == self._original_role_a
        params = aead_params(self.aead)
        if self._draft:
            raw = keys.cprf(d.mk, bytes((DRAFT02_CONST_KEY_C if a_to_b else DRAFT02_CONST_KEY_S,)), K_LEN)
            key = raw[: params.ae_key_len]
            d.nr = 0
        else:
            tk = keys.traffic_key(d.mk, CONST_KEY_A if a_to_b else CONST_KEY_B, self.aead)
            key = tk.key
            d.nr = int.from_bytes(tk.nr, "big")
        d.aead = ChaCha20Poly1305(key) if self.aead == AEAD_CHACHA20_POLY1305 else AESGCM(key)
        d.bytes_under_key = 0

    def _nonce(self, d: _Direction, offset: int) -> bytes:
        if self._draft:
            return ((offset - d.origin) & 0xFFFFFFFFFFFFFFFF).to_bytes(DRAFT02_IV_LEN, "little")
        return (offset ^ d.nr).to_bytes(12, "big")  # frame_ID (offset, left-padded) XOR NR (RFC 8548 §3.6)

    def _next_generation(self, d: _Direction, *, sending: bool, now: float) -> None:
        d.mk = keys.next_master_key(d.mk)
        d.generation += 1
        self._key_direction(d, sending=sending)
        self._record(
            now,
            "key_updated",
            {
                "session_id": (self.session_id or b"").hex(),
                "direction": "send" if sending else "receive",
                "generation": d.generation,
                "rekey": True,
            },
        )

    # --- frames -----------------------------------------------------------------------------------

    def _seal(self, data: bytes, *, fin: bool) -> None:
        """Cut ``data`` into frames (one, possibly empty, at least); ``fin`` sets FINp on the last one."""
        step = self.config.max_frame_bytes
        total = len(data)
        if total <= step:
            self._seal_one(data, fin)
            return
        view = memoryview(data)
        for start in range(0, total, step):
            end = start + step
            self._seal_one(view[start:end].tobytes(), fin and end >= total)

    def _seal_one(self, chunk: bytes, fin: bool) -> None:
        d = self._tx
        limit = self.config.rekey_after_bytes
        control = 0
        if self._rekey_requested or (limit is not None and d.bytes_under_key >= limit):
            self._rekey_requested = False
            self._next_generation(d, sending=True, now=self._now_hint)
            control = CONTROL_REKEY
        plaintext = (b"\x01" if fin else b"\x00") + chunk
        clen = len(plaintext) + AEAD_TAG_LEN
        aad = bytes((control, clen >> 8, clen & 0xFF))
        assert d.aead is not None
        offset = self._send_offset
        frame = aad + d.aead.encrypt(self._nonce(d, offset), plaintext, aad)
        self._out += frame
        self._send_offset = offset + len(frame)
        if self._boundaries is not None:
            self._boundaries.append(self._send_offset)
        d.bytes_under_key += len(chunk)
        self.bytes_sent += len(chunk)
        if fin:
            self._fin_sent = True
            self._record(self._now_hint, "segment_sent", {"frame": "FINp", "offset": offset, "length": len(frame)})
        elif control:
            self._record(self._now_hint, "segment_sent", {"frame": "rekey", "offset": offset, "length": len(frame)})

    _now_hint = 0.0  # the time of the last call that carried one (trace records from _seal)

    def _read_frames(self, now: float) -> None:
        """Open every whole frame in the buffer; authenticated data goes up in one event."""
        self._now_hint = now
        buf = self._rbuf
        size = len(buf)
        pos = 0
        d = self._rx
        out: list[bytes] = []
        failure: tuple[str, str] | None = None
        while size - pos >= FRAME_HEADER_LEN:
            clen = (buf[pos + 1] << 8) | buf[pos + 2]
            end = pos + FRAME_HEADER_LEN + clen
            if end > size:
                break
            offset = self._recv_offset + pos
            if self._fin_received:
                failure = (ABORT_BAD_FRAME, f"frame at offset {offset} after the FINp frame")
                break
            control = buf[pos]
            aad = bytes(buf[pos : pos + FRAME_HEADER_LEN])
            if control & CONTROL_REKEY:
                self._next_generation(d, sending=False, now=now)
                self._record(now, "segment_received", {"frame": "rekey", "offset": offset, "length": end - pos})
            assert d.aead is not None
            try:
                plaintext = d.aead.decrypt(self._nonce(d, offset), bytes(buf[pos + FRAME_HEADER_LEN : end]), aad)
            except InvalidTag:
                failure = (
                    ABORT_AUTHENTICATION,
                    f"frame at offset {offset} ({clen}-byte ciphertext, key generation {d.generation}) "
                    "failed authentication",
                )
                break
            flags = plaintext[0] if plaintext else 0
            header = 3 if flags & FLAG_URGP else 1
            if len(plaintext) < header:
                failure = (ABORT_BAD_FRAME, f"frame at offset {offset}: plaintext too short for its flags")
                break
            data = plaintext[header:]
            if data:
                out.append(data)
                d.bytes_under_key += len(data)
            if flags & FLAG_FINP:
                self._fin_received = True
                self._record(now, "segment_received", {"frame": "FINp", "offset": offset, "length": end - pos})
            pos = end
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            self.bytes_received += len(data)
            self._events.append(DataReceived(data=data))
        if failure is not None:
            self._abort(failure[0], failure[1], now, offset=self._recv_offset + pos)
            return
        if pos:
            del buf[:pos]
            self._recv_offset += pos

    def _end_of_stream(self, now: float) -> None:
        if self._state is S.ENCRYPTING and self._fin_received and not self._rbuf:
            self._events.append(StreamEnded())
            return
        if self._state is S.ENCRYPTING and not self._rbuf and self.config.bare_fin_ends_stream:
            self._record(now, "segment_received", {"frame": "none", "end": "TCP FIN without FINp, accepted (draft02)"})
            self._events.append(StreamEnded())
            return
        if self._state is S.ENCRYPTING and self._rbuf:
            detail = f"TCP stream ended inside a frame ({len(self._rbuf)} bytes of it)"
        elif self._state is S.ENCRYPTING:
            detail = "TCP FIN without a preceding FINp frame"
        else:
            detail = f"TCP stream ended in state {self._state.value}"
        self._abort(ABORT_TRUNCATED, detail, now)

    # --- helpers ----------------------------------------------------------------------------------

    def _emit(self, data: bytes) -> None:
        self._out += data
        self._send_offset += len(data)
        if self._boundaries is not None:
            self._boundaries.append(self._send_offset)

    def _abort(self, reason: str, detail: str, now: float, *, event: bool = True, offset: int | None = None) -> None:
        """``offset``: the stream offset of the frame that failed, when a frame did."""
        if self._state is S.ABORTED:
            return
        self.abort_reason = reason
        data: dict[str, Any] = {"reason": reason, "detail": detail, "state": self._state.value}
        if offset is not None:
            data["offset"] = offset
        self._record(now, "error", data)
        self._set_state(Input.ABORT, now)
        self._rbuf.clear()
        self._pending.clear()
        self._out.clear()
        if event:
            self._events.append(StreamAborted(reason=reason, detail=detail))

    def _set_state(self, inp: Input, now: float) -> None:
        old = self._state
        new = TRANSITIONS.get((old, inp))
        if new is None:
            raise AssertionError(f"no transition from {old.value} on {inp.value}")
        self._state = new
        self._now_hint = now
        self._record(now, "state_updated", {"from": old.value, "to": new.value, "input": inp.value})

    def _record(self, now: float, name: str, data: dict[str, Any]) -> None:
        if self._tracer.enabled:
            data = {"conn": self._conn, **data}
            self._tracer.record(now, LAYER, name, data)


def _aead_name(aead: int) -> str:
    params = AEADS.get(aead)
    return params.name if params else f"0x{aead:04x}"


def _tep_name(tep: int) -> str:
    params = TEPS.get(tep)
    return params.name if params else f"0x{tep:02x}"
