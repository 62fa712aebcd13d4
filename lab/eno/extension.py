"""TCP-ENO (RFC 8547) as a TCP extension that hands the byte stream to tcpcrypt (RFC 8548).

An :class:`EnoExtension` rides on one :class:`~lab.tcp.connection.TcpConnection`:

* on the SYN it offers the TEPs of its :class:`EnoConfig` (with the global
  suboption's ``b`` and ``a`` bits); a passive opener answers in its SYN-ACK
  with ``b = 1`` and the one TEP it picks; the negotiated TEP is the last
  valid TEP in host B's SYN-form option that host A also offered (§4.5);
* host A repeats an empty non-SYN ENO option on its segments until it hears a
  non-SYN segment from B; host B counts ENO as successful only once A's first
  non-SYN segment carries one (§4.6);
* on success the stream belongs to a :class:`~lab.tcpcrypt.stream.TcpcryptStream`
  keyed with the negotiation transcript (§4.8); on failure the connection
  falls back to plain TCP (policy ``opportunistic``) or is reset (policy
  ``mandatory``: never a byte in the clear).

The extension reads no clock and uses only the randomness handed to it (by
default a generator seeded from the connection's). It records under layer
``eno`` (docs/trace.md) and queues :mod:`lab.eno.events` for ``next_event()``.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from lab.eno.events import (
    EncryptionAborted,
    EncryptionNegotiated,
    EncryptionRefused,
    EnoEvent,
    FallbackToTcp,
    SessionEstablished,
)
from lab.eno.rules import EnoAgreed, EnoFailed, FallbackReason, Role, choose_tep, negotiate
from lab.errors import ConfigError, DecodeError, LocalProtocolError
from lab.tcp.extension import SegmentRole, TcpExtension
from lab.tcp.state import TcpState
from lab.tcpcrypt.events import DataReceived, HandshakeCompleted, StreamAborted, StreamEnded
from lab.tcpcrypt.keys import session_nonce, split_resumption_data
from lab.tcpcrypt.session_cache import CachedSession, SessionCache
from lab.tcpcrypt.stream import PROFILE_DRAFT02, ResumedSession, TcpcryptConfig, TcpcryptStream
from lab.trace import NULL_TRACER, Tracer
from lab.wire.eno import (
    GlobalSuboption,
    NonSynEnoOption,
    SynEnoOption,
    TepSuboption,
    eno_options,
    from_tcp_option,
    negotiation_transcript,
    option_bytes,
    push_syn_eno_option,
    to_tcp_option,
)
from lab.wire.tcp import TcpOption, TcpSegment
from lab.wire.tcpcrypt import (
    AEAD_TAG_LEN,
    FRAME_HEADER_LEN,
    INIT1_MAGIC,
    INIT2_MAGIC,
    TCPCRYPT_ECDHE_CURVE25519,
    TCPCRYPT_ECDHE_P256,
    TEPS,
    draft02_transcript,
)

if TYPE_CHECKING:
    from lab.tcp.connection import TcpConnection

LAYER = "eno"
SYN_ENO_BUDGET = 20  # the 40 option bytes of a SYN less MSS, SACK-permitted, timestamps, window scale
RESUME_NONCE_BYTES = 4  # RFC 8548 §3.5 allows 0..8; 4 keeps a resumption offer within the SYN's room


class EnoPolicy(enum.Enum):
    OPPORTUNISTIC = "opportunistic"  # ENO fails: go on as plain TCP
    MANDATORY = "mandatory"  # ENO fails: reset, never send a byte in the clear


@dataclass(frozen=True, kw_only=True)
class EnoConfig:
    """One endpoint's ENO settings.

    ``teps``: TEP identifiers this host will use, most preferred first (host B
    answers with its most preferred one that A offered). ``passive_role``
    sets the ``b`` bit of an active opener's SYN (needed by exactly one side
    of a simultaneous open); a passive opener always sends ``b = 1``.
    ``require_application_aware`` makes ENO fail unless the peer sets ``a``.
    ``experimental_encoding`` sends kind 253 with ExID 0x454E instead of kind
    69 (either is accepted). The tcpcrypt ``draft02`` profile implies it.
    ``session_cache`` (one object shared by a host's connections) turns on
    session resumption: a later connection to the same peer skips Init1/Init2.
    ``syn_timeouts_before_fallback``: an opportunistic active opener whose SYNs
    with ENO time out this many times sends its next SYNs without ENO and goes
    on as plain TCP (a firewall may drop SYNs with an unknown option; Linux does
    the same for MPTCP SYNs); None never. A mandatory end never retries without.

    Raises ConfigError for an unknown policy or a TEP this lab cannot run.
    """

    teps: tuple[int, ...] = (TCPCRYPT_ECDHE_CURVE25519, TCPCRYPT_ECDHE_P256)
    policy: EnoPolicy | str = EnoPolicy.OPPORTUNISTIC
    application_aware: bool = False
    require_application_aware: bool = False
    passive_role: bool = False
    experimental_encoding: bool = False
    tcpcrypt: TcpcryptConfig = field(default_factory=TcpcryptConfig)
    session_cache: SessionCache | None = field(default=None, compare=False)  # resumption (RFC 8548 §3.5)
    syn_timeouts_before_fallback: int | None = 2

    def __post_init__(self) -> None:
        n = self.syn_timeouts_before_fallback
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64):
            raise ConfigError(f"syn_timeouts_before_fallback must be 1..64 or None, got {n!r}")
        try:
            object.__setattr__(self, "policy", EnoPolicy(self.policy))
        except ValueError:
            raise ConfigError(
                f"ENO policy must be one of {', '.join(p.value for p in EnoPolicy)}, got {self.policy!r}"
            ) from None
        object.__setattr__(self, "teps", tuple(self.teps))
        for tep in self.teps:
            if tep not in TEPS:
                raise ConfigError(
                    f"TEP 0x{tep:02x} has no implementation here; known: {', '.join(f'0x{t:02x}' for t in TEPS)}"
                )
        if len(set(self.teps)) != len(self.teps):
            raise ConfigError("TEP list repeats an identifier")
        if self.tcpcrypt.profile == PROFILE_DRAFT02:
            object.__setattr__(self, "experimental_encoding", True)  # ENO draft 03 knew only kind 253

    @property
    def mandatory(self) -> bool:
        return self.policy is EnoPolicy.MANDATORY


class EnoState(enum.Enum):
    CLOSED = "closed"
    LISTEN = "listen"  # passive opener before the SYN
    SYN_SENT = "syn-sent"  # our SYN offered TEPs
    AWAITING_ACK = "awaiting-ack"  # host B: agreed, waiting for A's first non-SYN ENO option
    NEGOTIATED = "negotiated"  # the TEP runs its handshake
    ENCRYPTED = "encrypted"  # the TEP has keys
    FALLBACK = "fallback"  # plain TCP
    REFUSED = "refused"  # mandatory policy: reset
    ABORTED = "aborted"  # the TEP failed: reset


class Input(enum.Enum):
    ACTIVE_OPEN = "active open"
    PASSIVE_OPEN = "passive open"
    AGREED_AS_A = "agreed, role A"
    AGREED_AS_B = "agreed, role B (awaiting A's non-SYN ENO)"
    CONFIRMED = "A's non-SYN ENO received"
    KEYS_READY = "TEP keys ready"
    FAILED_OPPORTUNISTIC = "ENO failed, opportunistic"
    FAILED_MANDATORY = "ENO failed, mandatory"
    TEP_ABORTED = "TEP aborted"


E = EnoState
_FAILED = (E.FALLBACK, E.REFUSED, E.ABORTED)
TRANSITIONS: dict[tuple[EnoState, Input], EnoState] = {
    (E.CLOSED, Input.ACTIVE_OPEN): E.SYN_SENT,
    (E.CLOSED, Input.PASSIVE_OPEN): E.LISTEN,
    (E.SYN_SENT, Input.AGREED_AS_A): E.NEGOTIATED,
    (E.SYN_SENT, Input.AGREED_AS_B): E.AWAITING_ACK,  # simultaneous open
    (E.LISTEN, Input.AGREED_AS_B): E.AWAITING_ACK,
    (E.AWAITING_ACK, Input.CONFIRMED): E.NEGOTIATED,
    (E.NEGOTIATED, Input.KEYS_READY): E.ENCRYPTED,
    (E.NEGOTIATED, Input.TEP_ABORTED): E.ABORTED,
    (E.ENCRYPTED, Input.TEP_ABORTED): E.ABORTED,
}
for _state in (E.CLOSED, E.LISTEN, E.SYN_SENT, E.AWAITING_ACK):
    TRANSITIONS[(_state, Input.FAILED_OPPORTUNISTIC)] = E.FALLBACK
    TRANSITIONS[(_state, Input.FAILED_MANDATORY)] = E.REFUSED


def _segment_name(role: SegmentRole) -> str:
    return {"syn": "SYN", "syn_ack": "SYN-ACK", "ack": "ACK", "data": "DATA"}[role.value]


def _tep_text(tep: int) -> str:
    params = TEPS.get(tep)
    return f"0x{tep:02x} {params.name}" if params else f"0x{tep:02x}"


def _with_b(option: SynEnoOption, b: bool) -> SynEnoOption:
    """``option`` with its global suboption's b bit set to ``b`` (draft-03 roles follow the TCP handshake)."""
    glob = option.global_suboption
    rest = tuple(s for s in option.suboptions if type(s) is not GlobalSuboption)
    new = GlobalSuboption(passive_role=b, application_aware=glob.application_aware, reserved=glob.reserved)
    return SynEnoOption((new, *rest), experimental=option.experimental)


def describe_option(option: SynEnoOption) -> dict[str, Any]:
    """A SYN-form option as trace fields: b, a, TEP list, suboption data."""
    glob = option.global_suboption
    return {
        "b": glob.passive_role,
        "a": glob.application_aware,
        "teps": [f"0x{t.tep_id:02x}" for t in option.teps],
        "suboptions": [
            {"tep": f"0x{s.tep_id:02x}", "v": s.v, "data": s.data.hex()}
            if type(s) is TepSuboption
            else {"global": s.byte}
            for s in option.suboptions
        ],
        "encoding": "experimental" if option.experimental else "kind69",
    }


class EnoExtension(TcpExtension):
    """TCP-ENO for one connection; give it to ``HostStack.connect(extension=...)`` or a listener's factory."""

    name = "eno"
    owns_stream = True
    data_option_bytes = 4  # the empty non-SYN ENO option (2 or 4 bytes) padded to a 4-byte boundary

    def __init__(
        self, config: EnoConfig | None = None, *, tracer: Tracer | None = None, rng: random.Random | None = None
    ) -> None:
        self.config = config or EnoConfig()
        self._tracer_arg = tracer
        self._rng_arg = rng
        self._tracer: Tracer = NULL_TRACER
        self._rng = random.Random(0)
        self._label = ""
        self._state = EnoState.CLOSED
        self._events: deque[EnoEvent] = deque()
        self._passive = False
        self._local: SynEnoOption | None = None  # our SYN-form option (SYN or SYN-ACK)
        self._local_raw = b""
        self._remote: SynEnoOption | None = None
        self._remote_raw = b""
        self._synack_option: TcpOption | None = None
        self._agreement: EnoAgreed | None = None
        self._tep: TcpcryptStream | None = None
        self._pending = bytearray()  # application bytes written before ENO decided
        self._early_rx = bytearray()  # stream bytes that arrived before ENO decided
        # after a fallback, the peer's first bytes are held until they show they are not a TEP
        # handshake (a split decision, RFC 8547 §4.7: the peer thinks ENO succeeded)
        self._vetting = False
        self._vet = bytearray()
        self._send_ack_option = False  # host A: repeat the non-SYN ENO option until B's first non-SYN segment
        self._heard_non_syn = False
        self._close_requested = False
        self._fin_passed = False
        self._closing = False
        self._abort_at: float | None = None
        self._abort_reason = ""
        self.fallback_reason: str | None = None
        self.session_id: bytes | None = None
        self._resume_entry: CachedSession | None = None  # the cached secret offered (A) or matched (B)
        self._resume_nonce = b""  # this host's resumption nonce
        self._peer_resume_nonce = b""
        self._resumed: ResumedSession | None = None
        self.resumed = False
        # called with this extension after every ENO state change (a workload keeping its
        # result's facts current); it must not call back into the extension
        self.on_state_updated: Callable[[EnoExtension], None] | None = None

    # --- what the application asks -----------------------------------------------------------

    @property
    def state(self) -> EnoState:
        return self._state

    @property
    def encrypted(self) -> bool:
        return self._state is EnoState.ENCRYPTED

    @property
    def role(self) -> Role | None:
        return self._agreement.role if self._agreement else None

    @property
    def negotiated_tep(self) -> int | None:
        return self._agreement.tep_id if self._agreement else None

    @property
    def local_application_aware(self) -> bool | None:
        return self._agreement.local_application_aware if self._agreement else None

    @property
    def remote_application_aware(self) -> bool | None:
        return self._agreement.remote_application_aware if self._agreement else None

    @property
    def transcript(self) -> bytes | None:
        if self._agreement is None:
            return None
        return self._transcript()

    @property
    def tep_stream(self) -> TcpcryptStream | None:
        return self._tep

    def next_event(self) -> EnoEvent | None:
        return self._events.popleft() if self._events else None

    def rekey(self, *, now: float) -> None:
        """Rekey our sending direction (RFC 8548 §3.8); raises LocalProtocolError unless encrypted."""
        if self._tep is None or self._state is not EnoState.ENCRYPTED:
            raise LocalProtocolError(f"cannot rekey in ENO state {self._state.value}")
        self._tep.rekey(now=now)
        self._flush(now)

    # --- TcpExtension hooks ---------------------------------------------------------------------

    @property
    def _draft(self) -> bool:
        return self.config.tcpcrypt.profile == PROFILE_DRAFT02

    def attach(self, conn: TcpConnection) -> None:
        super().attach(conn)
        self._tracer = self._tracer_arg if self._tracer_arg is not None else conn._tracer
        self._rng = self._rng_arg if self._rng_arg is not None else random.Random(conn._rng.getrandbits(64))
        self._label = str(conn.addr)

    def state_changed(self, old: TcpState, new: TcpState, *, now: float) -> None:
        if old is TcpState.CLOSED and new is TcpState.LISTEN:
            self._passive = True
            self._set_state(Input.PASSIVE_OPEN, now)
        elif old is TcpState.CLOSED and new is TcpState.SYN_SENT:
            self._set_state(Input.ACTIVE_OPEN, now)

    def options_to_send(self, role: SegmentRole, *, stream_offset: int, length: int, now: float) -> list[TcpOption]:
        if role is SegmentRole.SYN:
            if self._state is EnoState.FALLBACK:
                return []  # retrying without ENO (see EnoConfig.syn_timeouts_before_fallback)
            limit = self.config.syn_timeouts_before_fallback
            timeouts = self.conn._syn_retries
            if limit is not None and timeouts >= limit and not self.config.mandatory and self._state is EnoState.SYN_SENT:
                self._fail(
                    FallbackReason.SYN_TIMEOUTS.value,
                    f"{timeouts} SYNs with ENO went unanswered: the next ones go without ENO",
                    now,
                    segment=None,
                )
                return []
            if self._local is None:
                self._local = self._our_syn_option()
                self._local_raw = push_syn_eno_option(self._local)
            self._record_option(now, "segment_sent", role, self._local, self._local_raw)
            return [to_tcp_option(self._local)]
        if role is SegmentRole.SYN_ACK:
            if self._passive:
                if self._synack_option is None:
                    return []
                self._record_option(now, "segment_sent", role, self._local, self._local_raw)
                return [self._synack_option]
            if self._local is not None and self._state not in _FAILED:  # simultaneous open repeats the SYN's option
                self._record_option(now, "segment_sent", role, self._local, self._local_raw)
                return [to_tcp_option(self._local)]
            return []
        if self._send_ack_option and self._state in (EnoState.NEGOTIATED, EnoState.ENCRYPTED):
            option = NonSynEnoOption(experimental=self.config.experimental_encoding)
            tcp_option = to_tcp_option(option)
            if self._tracer.enabled:
                self._record(
                    now,
                    "segment_sent",
                    {"segment": _segment_name(role), "form": "non-syn", "option": option_bytes(tcp_option).hex()},
                )
            return [tcp_option]
        return []

    def options_received(self, role: SegmentRole, segment: TcpSegment, *, stream_offset: int, now: float) -> None:
        if role is SegmentRole.SYN or role is SegmentRole.SYN_ACK:
            if self._state in (EnoState.LISTEN, EnoState.SYN_SENT):
                self._on_syn(role, segment, now)
            return
        if self._heard_non_syn:
            return
        self._heard_non_syn = True  # the peer's first non-SYN segment
        self._send_ack_option = False
        self.conn.extension_quiet()  # no option to send or to hear of on a non-SYN segment any more
        if self._state is not EnoState.AWAITING_ACK:
            return
        found = eno_options(segment.options)
        self._record(
            now,
            "segment_received",
            {
                "segment": _segment_name(role),
                "form": "non-syn",
                "option": option_bytes(found[0]).hex() if found else None,
            },
        )
        if not found:
            self._fail(
                FallbackReason.NO_NON_SYN_ENO.value,
                "host A's first non-SYN segment carries no ENO option (stripped on the way?)",
                now,
                segment=None,
            )
            return
        self._set_state(Input.CONFIRMED, now, confirmed_by=_segment_name(role))
        self._start_tep(now)

    def app_send(self, data: bytes) -> None:
        if self._tep is not None:
            if self._tep.aborted:
                return  # the reset follows at once; nothing more goes out
            self._tep.send(data)
            self._flush(None)
        elif self._state in _FAILED:
            self.conn.send_stream(data)
        else:
            self._pending += data

    def app_close(self, *, now: float) -> bool:
        if self._closing or self._state is EnoState.FALLBACK:
            return True
        if self._state in (EnoState.REFUSED, EnoState.ABORTED):
            return True
        self._close_requested = True
        if self._tep is None:
            return False  # ENO still undecided: the FIN waits (see _start_tep / _fail)
        self._tep.close(now=now)
        self._flush(now)
        if self._tep.all_sent or self._tep.aborted:
            self._fin_passed = True
            return True
        return False  # keys not there yet: FINp and FIN go out once they are

    def stream_received(self, data: bytes, *, stream_offset: int, now: float) -> None:
        if not data:
            return  # b"" would tell the TEP that the stream ended
        if self._tep is not None:
            self._tep.receive_data(data, now=now)
            self._pump(now)
        elif self._state is EnoState.FALLBACK:
            if self._vetting:
                self._vet_received(data, now)
            else:
                self.conn.deliver(data)
        elif self._state not in _FAILED:
            self._early_rx += data

    def stream_ended(self, *, now: float) -> bool:
        if self._tep is None:
            if self._vetting:
                self._vet_received(b"", now)  # fewer than 4 bytes came: they are the application's
            return self._state is EnoState.FALLBACK and self.conn.state is not TcpState.CLOSED
        self._tep.receive_data(b"", now=now)
        self._pump(now)
        return not self._tep.aborted

    def segment_limit(self, stream_offset: int) -> int:
        """draft02 profile only: a segment ends where an Init message or frame ends (tcpcryptd's records
        are per packet); RFC 8548 frames may be split and coalesced freely."""
        tep = self._tep
        if tep is None or not self._draft:
            return 1 << 62
        end = tep.frame_end(stream_offset)
        return end - stream_offset if end is not None else 1 << 62

    def get_timer(self) -> float | None:
        best = self._abort_at
        if self._tep is not None:
            t = self._tep.get_timer()
            if t is not None and (best is None or t < best):
                best = t
        return best

    def handle_timer(self, *, now: float) -> None:
        if self._abort_at is not None and now >= self._abort_at:
            self._abort_at = None
            self.conn.abort(self._abort_reason, now=now)
            return
        if self._tep is not None:
            self._tep.handle_timer(now=now)
            self._pump(now)

    # --- negotiation ----------------------------------------------------------------------------

    def _our_syn_option(self) -> SynEnoOption:
        """Global suboption (left out when it is all zero, RFC 8547 §4.2), then the TEPs.

        A resumption offer goes last, where its data needs no length byte. The
        whole option must fit the room TCP leaves on a SYN; what does not fit
        is left out (the resumption offer first, then the least preferred TEPs).
        """
        cfg = self.config
        glob = GlobalSuboption(passive_role=cfg.passive_role, application_aware=cfg.application_aware)
        head = (glob,) if glob.byte else ()
        teps = [TepSuboption(t) for t in cfg.teps]
        cache = cfg.session_cache
        entry = cache.take(self.conn.addr.remote_addr, cfg.teps) if cache is not None else None
        if entry is not None:  # offer resumption: the TEP with v = 1, our half of resume[i] and a nonce
            nonce = self._rng.randbytes(RESUME_NONCE_BYTES)
            offer = TepSuboption(entry.tep, v=True, data=entry.own_half() + nonce)
            option = SynEnoOption(
                (*head, *[t for t in teps if t.tep_id != entry.tep], offer), cfg.experimental_encoding
            )
            if len(push_syn_eno_option(option)) <= SYN_ENO_BUDGET:
                self._resume_entry = entry
                self._resume_nonce = nonce
                return option
            cache.store(self.conn.addr.remote_addr, entry)  # does not fit: keep it for another time
        while True:
            option = SynEnoOption((*head, *teps), experimental=cfg.experimental_encoding)
            if len(push_syn_eno_option(option)) <= SYN_ENO_BUDGET or not teps:
                return option
            teps.pop()

    def _resumption_answer(self, remote: SynEnoOption) -> TepSuboption | None:
        """Host B: the v = 1 answer when A offers a resumption this host's cache can match."""
        cache = self.config.session_cache
        if cache is None:
            return None
        for offer in remote.teps:
            if not offer.v or offer.tep_id not in self.config.teps:
                continue
            try:
                split = split_resumption_data(offer.data)
            except DecodeError:
                continue
            if split is None:
                continue  # fewer than 9 bytes: an offer of fresh key exchange (RFC 8548 §3.5)
            half, nonce_a = split
            entry = cache.take_matching(self.conn.addr.remote_addr, offer.tep_id, half)
            if entry is None:
                continue
            self._resume_entry = entry
            self._resume_nonce = self._rng.randbytes(RESUME_NONCE_BYTES)
            self._peer_resume_nonce = nonce_a
            return TepSuboption(offer.tep_id, v=True, data=entry.own_half() + self._resume_nonce)
        return None

    def _resumption_agreed(self, outcome: EnoAgreed, now: float) -> bool | None:
        """After agreement: None for a fresh session, True when resuming, False for a bad resumption answer."""
        entry = self._resume_entry
        tep = outcome.tep
        if not tep.v or entry is None or tep.tep_id != entry.tep:
            return None  # no resumption (B declined: the offered secret stays spent, a fresh exchange follows)
        if outcome.role is Role.A:
            try:
                split = split_resumption_data(tep.data)
            except DecodeError:
                split = None
            if split is None or split[0] != entry.peer_half():
                return False
            peer_nonce = split[1]
        else:
            peer_nonce = self._peer_resume_nonce
        mine = self._resume_nonce
        sn = session_nonce(mine, peer_nonce) if entry.original_role_a else session_nonce(peer_nonce, mine)
        self._resumed = ResumedSession(ss=entry.ss, original_role_a=entry.original_role_a, sn=sn, aead=entry.aead)
        self.resumed = True
        return True

    def _parse_remote(self, role: SegmentRole, segment: TcpSegment, now: float) -> tuple[SynEnoOption | None, str, str]:
        """The peer's SYN-form option, or None with a fallback reason and detail."""
        found = eno_options(segment.options)
        if not found:
            self._record(now, "segment_received", {"segment": _segment_name(role), "option": None})
            return None, FallbackReason.NO_ENO_OPTION.value, f"the {_segment_name(role)} carries no ENO option"
        if len(found) > 1:
            self._record(
                now,
                "segment_received",
                {"segment": _segment_name(role), "options": [option_bytes(o).hex() for o in found]},
            )
            return None, FallbackReason.NO_ENO_OPTION.value, f"{len(found)} ENO options in one SYN count as none (§4.1)"
        raw = option_bytes(found[0])
        try:
            option = from_tcp_option(found[0])
        except DecodeError as exc:
            self._record(
                now,
                "segment_dropped",
                {
                    "segment": _segment_name(role),
                    "option": raw.hex(),
                    "reason": f"malformed ENO option: {exc.reason}",
                    "field": exc.field,
                    "offset": exc.offset,
                },
            )
            return None, FallbackReason.MALFORMED.value, f"malformed ENO option {raw.hex()}: {exc}"
        self._remote_raw = raw
        self._record_option(now, "segment_received", role, option, raw)
        return option, "", ""

    def _on_syn(self, role: SegmentRole, segment: TcpSegment, now: float) -> None:
        remote, reason, detail = self._parse_remote(role, segment, now)
        cfg = self.config
        if self._passive:
            if remote is None:
                self._fail(reason, detail, now, segment=segment)
                return
            tep = choose_tep(remote, cfg.teps)
            glob = GlobalSuboption(passive_role=True, application_aware=cfg.application_aware)
            answer = self._resumption_answer(remote)
            if answer is not None:
                subs = (glob, answer)
            else:
                subs = (glob,) if tep is None else (glob, TepSuboption(tep))
            if self._draft and tep is not None:
                # ENO draft 03 (tcpcryptd) had no b bit: roles follow the TCP handshake, and B's SYN-ACK
                # is the chosen TEP alone (an a bit would follow it as its own byte)
                subs = (TepSuboption(tep),) + (
                    (GlobalSuboption(application_aware=True),) if glob.application_aware else ()
                )
            self._local = SynEnoOption(subs, experimental=remote.experimental)  # answer in the peer's encoding
            self._local_raw = push_syn_eno_option(self._local)
            self._synack_option = to_tcp_option(self._local)
        self._remote = remote
        if remote is None:
            self._fail(reason, detail, now, segment=segment)
            return
        assert self._local is not None
        local, remote_for_roles = self._local, remote
        simultaneous = role is SegmentRole.SYN and not self._passive
        if self._draft and not simultaneous:
            local, remote_for_roles = _with_b(local, self._passive), _with_b(remote, not self._passive)
        outcome = negotiate(local, remote_for_roles, mandatory_application_aware=cfg.require_application_aware)
        if isinstance(outcome, EnoFailed) and self._passive and self._local.teps:
            # host B disabled ENO: a vacuous SYN-ACK option (no TEP) makes A fail too (RFC 8547 §4.6)
            self._local = SynEnoOption(self._local.suboptions[:1], experimental=self._local.experimental)
            self._local_raw = push_syn_eno_option(self._local)
            self._synack_option = to_tcp_option(self._local)
        if isinstance(outcome, EnoFailed):
            self._fail(outcome.reason.value, self._failure_detail(outcome.reason), now, segment=segment)
            return
        self._agreement = outcome
        resuming = self._resumption_agreed(outcome, now)
        if resuming is False:
            self._agreement = None
            self._fail(
                "bad_resumption", "host B's resumption half does not match the cached secret", now, segment=segment
            )
            return
        details = self._agreement_details(outcome)
        details["resumed"] = bool(resuming)
        self._events.append(
            EncryptionNegotiated(
                tep=outcome.tep_id,
                role=outcome.role.value,
                local_application_aware=outcome.local_application_aware,
                remote_application_aware=outcome.remote_application_aware,
            )
        )
        if outcome.role is Role.A:
            self._send_ack_option = True
            self._set_state(Input.AGREED_AS_A, now, **details)
            self._start_tep(now)
        else:
            self._set_state(Input.AGREED_AS_B, now, **details)

    def _failure_detail(self, reason: FallbackReason) -> str:
        local, remote = self._local, self._remote
        if reason is FallbackReason.SAME_ROLE and local and remote:
            return f"both SYNs carry b = {int(local.global_suboption.passive_role)} (§4.3)"
        if reason is FallbackReason.NOT_APPLICATION_AWARE:
            return "the peer did not set the application-aware bit a, which this host requires"
        if reason is FallbackReason.NO_COMMON_TEP and local and remote:
            return (
                f"no common TEP: this host offers {[f'0x{t.tep_id:02x}' for t in local.teps]}, "
                f"the peer {[f'0x{t.tep_id:02x}' for t in remote.teps]}"
            )
        return reason.value

    def _agreement_details(self, outcome: EnoAgreed) -> dict[str, Any]:
        assert self._local is not None and self._remote is not None
        option_a, option_b = (self._local, self._remote) if outcome.role is Role.A else (self._remote, self._local)
        a_teps = [f"0x{t.tep_id:02x}" for t in option_a.teps]
        b_teps = [f"0x{t.tep_id:02x}" for t in option_b.teps]
        return {
            "role": outcome.role.value,
            "tep": f"0x{outcome.tep_id:02x}",
            "tep_name": TEPS[outcome.tep_id].name,
            "why": (
                f"last TEP in host B's SYN-form option {b_teps} that host A also offered {a_teps} "
                f"(RFC 8547 §4.5): {_tep_text(outcome.tep_id)}"
            ),
            "local_a": outcome.local_application_aware,
            "remote_a": outcome.remote_application_aware,
            "local_b": self._local.global_suboption.passive_role,
            "remote_b": self._remote.global_suboption.passive_role,
            "transcript": self._transcript_for(outcome.role).hex(),
        }

    def _transcript_for(self, role: Role) -> bytes:
        raw_a, raw_b = (self._local_raw, self._remote_raw) if role is Role.A else (self._remote_raw, self._local_raw)
        if self.config.tcpcrypt.profile == PROFILE_DRAFT02:
            return draft02_transcript(raw_a, raw_b)
        return negotiation_transcript(raw_a, raw_b)

    def _transcript(self) -> bytes:
        assert self._agreement is not None
        return self._transcript_for(self._agreement.role)

    def _start_tep(self, now: float) -> None:
        agreement = self._agreement
        assert agreement is not None
        tcpcrypt = self.config.tcpcrypt
        frame_overhead = FRAME_HEADER_LEN + 1 + AEAD_TAG_LEN  # control and clen, flags, tag
        segment = self.conn.mss - self.data_option_bytes  # payload bytes of a full data segment
        if self._draft:  # one frame per segment: flags, data and tag within the MSS
            room = max(1, segment - frame_overhead)
            tcpcrypt = replace(tcpcrypt, max_frame_bytes=min(tcpcrypt.max_frame_bytes, room))
        elif segment > frame_overhead and tcpcrypt.max_frame_bytes + frame_overhead > segment:
            # a full frame fills whole segments: no short segment after each frame once the
            # sender has caught up with the application (the most whole segments within the limit)
            whole = (tcpcrypt.max_frame_bytes + frame_overhead) // segment
            tcpcrypt = replace(tcpcrypt, max_frame_bytes=whole * segment - frame_overhead)
        self._tep = TcpcryptStream(
            role=agreement.role,
            tep=agreement.tep_id,
            tep_byte=agreement.tep.byte,
            eno_transcript=self._transcript(),
            config=tcpcrypt,
            tracer=self._tracer,
            rng=random.Random(self._rng.getrandbits(64)),
            conn=self._label,
            resumed=self._resumed,
        )
        self._tep.start(now=now)
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            self._tep.send(data, now=now)
        if self._close_requested:
            self._tep.close(now=now)
        if self._early_rx:
            data = bytes(self._early_rx)
            self._early_rx.clear()
            self._tep.receive_data(data, now=now)
        self._pump(now)

    def _fail(self, reason: str, detail: str, now: float, *, segment: TcpSegment | None) -> None:
        """ENO failed: plain TCP (opportunistic) or a reset (mandatory)."""
        self.fallback_reason = reason
        self._send_ack_option = False
        if self.config.mandatory:
            self._set_state(Input.FAILED_MANDATORY, now, reason=reason, detail=detail, policy="mandatory")
            self._record(now, "error", {"reason": reason, "detail": detail, "action": "reset (mandatory policy)"})
            self._events.append(EncryptionRefused(reason=reason, detail=detail))
            self._pending.clear()
            conn = self.conn
            if segment is not None and conn.state in (TcpState.LISTEN, TcpState.SYN_SENT):
                conn._emit_raw_rst(segment, now)  # refuse the SYN / SYN-ACK itself
            conn.abort(f"ENO refused ({reason})", now=now)
            return
        self._set_state(Input.FAILED_OPPORTUNISTIC, now, reason=reason, detail=detail, policy="opportunistic")
        self._events.append(FallbackToTcp(reason=reason, detail=detail))
        # the connection carries the application's bytes itself from now on, once the peer's first
        # bytes have shown they are no TEP handshake (see _vet_received)
        self._vetting = True
        if self._pending:
            data = bytes(self._pending)
            self._pending.clear()
            self.conn.send_stream(data)
        if self._close_requested:
            self._close_conn(now)
        if self._early_rx:
            data = bytes(self._early_rx)
            self._early_rx.clear()
            self._vet_received(data, now)

    def _vet_received(self, data: bytes, now: float) -> None:
        """After a fallback: a host that disabled ENO must not pass TEP data up (RFC 8547 §4.7). When
        the peer's stream begins with a tcpcrypt INIT1/INIT2, the peer went on with the TEP (ENO was
        stripped or mangled on the way): both ends cannot agree, so the connection is reset."""
        self._vet += data
        if len(self._vet) < 4 and data:
            return
        self._vetting = False
        self.owns_stream = False
        held, self._vet = bytes(self._vet), bytearray()
        if len(held) >= 4 and int.from_bytes(held[:4], "big") in (INIT1_MAGIC, INIT2_MAGIC):
            detail = "the peer sent a tcpcrypt handshake on a connection that fell back to TCP: ENO split decision"
            self._record(now, "error", {"reason": "split_decision", "detail": detail, "action": "reset"})
            self._events.append(EncryptionAborted(reason="split_decision", detail=detail))
            self.conn.abort("ENO split decision: TEP handshake after fallback", now=now)
            return
        if held:
            self.conn.deliver(held)

    # --- moving bytes -----------------------------------------------------------------------------

    def _flush(self, now: float | None) -> None:
        tep = self._tep
        if tep is None:
            return
        out = tep.data_to_send()
        if out and not self._fin_passed:
            self.conn.send_stream(out)

    def _pump(self, now: float) -> None:
        tep = self._tep
        if tep is None:
            return
        self._flush(now)
        while (event := tep.next_event()) is not None:
            t = type(event)
            if t is DataReceived:
                self.conn.deliver(event.data)
            elif t is HandshakeCompleted:
                self.session_id = event.session_id
                self._cache_next_secret(tep, event.aead)
                self._set_state(Input.KEYS_READY, now, session_id=event.session_id.hex())
                self._events.append(
                    SessionEstablished(
                        tep=event.tep, session_id=event.session_id, aead=event.aead, resumed=event.resumed
                    )
                )
            elif t is StreamAborted:
                self._on_tep_abort(event.reason, event.detail, now)
            elif t is StreamEnded:
                pass  # the connection hands StreamEnded on (stream_ended returns True)
        if self._close_requested and not self._fin_passed and (tep.all_sent or tep.aborted):
            self._close_conn(now)

    def _cache_next_secret(self, tep: TcpcryptStream, aead: int) -> None:
        cache = self.config.session_cache
        if cache is None or tep.next_session_secret is None or self._agreement is None:
            return
        original_a = self._resumed.original_role_a if self._resumed else self._agreement.role is Role.A
        entry = CachedSession(ss=tep.next_session_secret, tep=tep.tep, aead=aead, original_role_a=original_a)
        cache.store(self.conn.addr.remote_addr, entry)

    def _close_conn(self, now: float) -> None:
        if self._fin_passed:
            return
        self._fin_passed = True
        if self.conn.state not in (TcpState.SYN_RECEIVED, TcpState.ESTABLISHED, TcpState.CLOSE_WAIT):
            return
        self._closing = True
        try:
            self.conn.close(now=now)
        except LocalProtocolError:
            pass  # already closing
        finally:
            self._closing = False

    def _on_tep_abort(self, reason: str, detail: str, now: float) -> None:
        if self._state in (EnoState.NEGOTIATED, EnoState.ENCRYPTED):
            self._set_state(Input.TEP_ABORTED, now, reason=reason, detail=detail)
        self._events.append(EncryptionAborted(reason=reason, detail=detail))
        # reset from the timer hook, at this same instant: the connection is in the middle of
        # processing a segment and must not be torn down under its feet
        self._abort_at = now
        self._abort_reason = f"tcpcrypt: {reason}"

    # --- trace ------------------------------------------------------------------------------------

    def _set_state(self, inp: Input, now: float, **details: Any) -> None:
        old = self._state
        new = TRANSITIONS.get((old, inp))
        if new is None:
            raise AssertionError(f"no ENO transition from {old.value} on {inp.value}")
        self._state = new
        self._record(now, "state_updated", {"from": old.value, "to": new.value, "input": inp.value, **details})
        if self.on_state_updated is not None:
            self.on_state_updated(self)

    def _record_option(self, now: float, name: str, role: SegmentRole, option: SynEnoOption | None, raw: bytes) -> None:
        if not self._tracer.enabled or option is None:
            return
        self._record(
            now, name, {"segment": _segment_name(role), "form": "syn", "option": raw.hex(), **describe_option(option)}
        )

    def _record(self, now: float, name: str, data: dict[str, Any]) -> None:
        if self._tracer.enabled:
            self._tracer.record(now, LAYER, name, {"conn": self._label, **data})


def eno_listener(config: EnoConfig | None = None, *, tracer: Tracer | None = None) -> Callable[[], EnoExtension]:
    """An ``extension_factory`` for ``HostStack.listen``: a fresh EnoExtension per accepted connection."""
    return lambda: EnoExtension(config, tracer=tracer)
