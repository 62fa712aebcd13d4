"""IKE fragmentation (RFC 7383): negotiation, a fragmenter sized to the path MTU and a bounded reassembler.

Negotiation (§2.3): each side puts an IKEV2_FRAGMENTATION_SUPPORTED notify
(16430, Protocol ID 0, no SPI, no data) in IKE_SA_INIT; fragmentation may be
used once both did. Only messages with an Encrypted payload are fragmented
(never IKE_SA_INIT), and only when they do not fit (§2.5).

Sending (§2.5, §2.5.1): the SK payload's plaintext (the inner payload chain)
is cut into pieces; each piece travels in its own message with the original
header (same Message ID and exchange type) and one SKF payload, encrypted
on its own: own IV, own padding, own ICV. With AES-GCM the associated data
is the message from the IKE header through SKF's Total Fragments field
(§2.5.3 with RFC 5282 §5.1). A fragment message fits ``max_message_len``,
which follows from the path MTU: IP header (20 / 40), UDP header (8) and, on
port 4500, the 4-octet non-ESP marker. Without PMTU discovery §2.5.1
recommends messages no larger than what fits 576 (IPv4) and 1280 (IPv6)
octet datagrams.

Receiving (§2.6): a fragment is checked (Fragment Number in 1..Total, ICV)
before it is kept; a set is complete when every number is in; then the
pieces are joined and parsed as the inner payload chain. A fragment whose
Total Fragments exceeds the set's starts the set over with it (the sender
re-fragmented for a smaller MTU, §2.5.2); one with fewer is discarded.
Duplicates are dropped (§2.6.1: Fragment Number and Total Fragments with
the Message ID detect retransmissions). Limits the RFC leaves to the
implementation (§5, "Security Considerations": keep resources bounded) are
``ReassemblyLimits``: fragments per message, bytes per message, sets at
once, bytes buffered in all, and a timeout. Every refusal is counted by
reason and the last ones kept, so an endpoint can trace them.

Only AES-GCM (through lab.esp.sa's seal/open, as lab.ike.keys does) is
implemented.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag

from lab.errors import DecodeError
from lab.esp.sa import aes_gcm_open, aes_gcm_seal, split_keymat
from lab.wire.buffer import Buffer
from lab.wire.esp import GCM_IV_LEN
from lab.wire.ikev2 import (
    IKE_HEADER_LEN,
    IKEV2_FRAGMENTATION_SUPPORTED,
    NON_ESP_MARKER,
    IkeHeader,
    IkeMessage,
    NotifyPayload,
    Payload,
    pull_payload_chain,
    push_payload_chain,
)
from lab.wire.ikev2_fragment import (
    MAX_FRAGMENTS,
    SKF_FIXED_LEN,
    EncryptedFragmentPayload,
    decode_fragment_message,
    encode_fragment_message,
)

IPV4_HEADER_LEN = 20
IPV6_HEADER_LEN = 40
UDP_HEADER_LEN = 8
IKE_PORT = 500
IKE_NAT_T_PORT = 4500
DEFAULT_PATH_MTU_IPV4 = 576  # RFC 7383 §2.5.1
DEFAULT_PATH_MTU_IPV6 = 1280


def fragmentation_supported_notify() -> NotifyPayload:
    """The IKEV2_FRAGMENTATION_SUPPORTED notify for IKE_SA_INIT (RFC 7383 §2.3)."""
    return NotifyPayload(IKEV2_FRAGMENTATION_SUPPORTED)


def offers_fragmentation(payloads: Sequence[Payload]) -> bool:
    """True when an IKE_SA_INIT message carries IKEV2_FRAGMENTATION_SUPPORTED."""
    return any(isinstance(p, NotifyPayload) and p.notify_type == IKEV2_FRAGMENTATION_SUPPORTED for p in payloads)


def max_ike_message_len(*, path_mtu: int, ipv6: bool = False, port: int = IKE_PORT) -> int:
    """The largest IKE message (header included) that fits one datagram on the path, in octets.

    Subtracts the IP and UDP headers and, on port 4500, the non-ESP marker.
    Raises ValueError when not even a fragment with one octet of plaintext fits.
    """
    overhead = (IPV6_HEADER_LEN if ipv6 else IPV4_HEADER_LEN) + UDP_HEADER_LEN
    if port == IKE_NAT_T_PORT:
        overhead += len(NON_ESP_MARKER)
    if path_mtu - overhead <= fragment_overhead():
        raise ValueError(f"a path MTU of {path_mtu} leaves no room for an IKE fragment")
    return path_mtu - overhead


def choose_udp_sending(
    message_len: int, *, max_message_len: int, encrypted: bool, fragmentation_negotiated: bool
) -> str:
    """How a message of ``message_len`` octets can go over UDP on this path: a policy helper.

    ``"whole"`` when it fits one datagram; ``"fragments"`` when it does not
    but it is encrypted (not IKE_SA_INIT) and both peers sent
    IKEV2_FRAGMENTATION_SUPPORTED; otherwise ``"ip-fragments"``: the datagram
    would need IP fragmentation, which many middleboxes drop, so a careful
    initiator goes to TCP (RFC 9329) instead.
    """
    if message_len <= max_message_len:
        return "whole"
    if encrypted and fragmentation_negotiated:
        return "fragments"
    return "ip-fragments"


def fragment_overhead(icv_len: int = 16) -> int:
    """Octets of each fragment message that are not plaintext: header, SKF fields, IV, Pad Length, ICV."""
    return IKE_HEADER_LEN + SKF_FIXED_LEN + GCM_IV_LEN + 1 + icv_len


def fragment_message(
    message: IkeMessage,
    inner: Sequence[Payload],
    *,
    sk_e: bytes,
    next_iv: Callable[[], bytes],
    max_message_len: int,
    icv_len: int = 16,
) -> list[bytes]:
    """The fragment messages of ``message`` with SK{inner}, each at most ``max_message_len`` octets.

    ``message`` gives the header (its own payloads must be empty: unprotected
    payloads are not fragmented here); ``sk_e`` is the sender's SK_ei/SK_er
    (key | salt); ``next_iv`` yields a fresh 8-octet IV per fragment. Always
    returns at least one fragment. Raises ValueError when no plaintext fits
    a fragment, the message needs more than 65535 fragments, or ``message``
    has unprotected payloads.
    """
    if message.payloads:
        raise ValueError("fragmenting a message with unprotected payloads is not supported")
    room = max_message_len - fragment_overhead(icv_len)
    if room < 1:
        raise ValueError(f"{max_message_len}-octet messages leave no room for a fragment's plaintext")
    first, chain = push_payload_chain(tuple(inner))
    pieces = [chain[i : i + room] for i in range(0, len(chain), room)] or [b""]
    if len(pieces) > MAX_FRAGMENTS:
        raise ValueError(f"{len(pieces)} fragments, at most {MAX_FRAGMENTS}")
    header = IkeHeader(
        spi_i=message.spi_i,
        spi_r=message.spi_r,
        next_payload=0,
        exchange_type=message.exchange_type,
        message_id=message.message_id,
        length=0,
        initiator=message.initiator,
        response=message.response,
        higher_version=message.higher_version,
        major_version=message.major_version,
        minor_version=message.minor_version,
        reserved_flags=message.reserved_flags,
    )
    key, salt = split_keymat(sk_e)
    out = []
    for number, piece in enumerate(pieces, start=1):
        plaintext = piece + b"\x00"  # no padding, Pad Length 0
        iv = next_iv()
        placeholder = EncryptedFragmentPayload(
            first if number == 1 else 0, number, len(pieces), bytes(GCM_IV_LEN + len(plaintext) + icv_len)
        )
        template = encode_fragment_message(header, placeholder)
        aad = template[: IKE_HEADER_LEN + SKF_FIXED_LEN]
        out.append(aad + iv + aes_gcm_seal(key, salt, iv, plaintext, aad, icv_len=icv_len))
    return out


@dataclass(frozen=True, slots=True)
class Fragment:
    """One decrypted fragment: its header, numbers, first inner payload type (fragment 1) and plaintext piece."""

    header: IkeHeader
    fragment_number: int
    total_fragments: int
    first_payload: int
    plaintext: bytes


class FragmentIntegrityError(DecodeError):
    """A fragment's ICV did not verify."""


def decrypt_fragment(data: bytes, *, sk_e: bytes, icv_len: int = 16) -> Fragment:
    """Check and decrypt one fragment message.

    Raises DecodeError for a malformed message or Pad Length, and
    FragmentIntegrityError (a DecodeError naming ``icv``) when the ICV fails.
    """
    decoded = decode_fragment_message(data)
    skf = decoded.fragment
    if len(skf.data) < GCM_IV_LEN + 1 + icv_len:
        raise DecodeError(
            f"Encrypted Fragment payload of {len(skf.data)} octets has no room for IV, Pad Length and ICV",
            field="payload_length",
            offset=IKE_HEADER_LEN + 2,
        )
    key, salt = split_keymat(sk_e)
    aad = data[: IKE_HEADER_LEN + SKF_FIXED_LEN]
    iv = skf.data[:GCM_IV_LEN]
    try:
        plaintext = aes_gcm_open(key, salt, iv, skf.data[GCM_IV_LEN:], aad, icv_len=icv_len)
    except InvalidTag:
        raise FragmentIntegrityError(
            f"fragment {skf.fragment_number}/{skf.total_fragments} of message ID {decoded.header.message_id} failed its ICV",
            field="icv",
            offset=len(data) - icv_len,
        ) from None
    pad_length = plaintext[-1]
    if pad_length + 1 > len(plaintext):
        raise DecodeError(
            f"Pad Length {pad_length} exceeds the plaintext", field="pad_length", offset=len(data) - icv_len - 1
        )
    return Fragment(
        decoded.header, skf.fragment_number, skf.total_fragments, skf.first_payload, plaintext[: -1 - pad_length]
    )


# --- reassembly ------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ReassemblyLimits:
    """What one reassembler keeps at most; sizes in octets of plaintext."""

    max_fragments: int = 64  # per message
    max_message_len: int = 64 * 1024  # reassembled inner payloads of one message
    max_pending_messages: int = 2  # sets in progress at once (a request and a response)
    max_buffered_len: int = 128 * 1024  # all sets together
    timeout_s: float = 30.0  # from a set's first fragment


@dataclass(frozen=True, slots=True)
class FragmentPending:
    message_id: int
    received: int
    total: int


@dataclass(frozen=True, slots=True)
class MessageReassembled:
    """All fragments are in: ``message`` has the header's fields (no payloads), ``inner`` the payloads of SK."""

    message: IkeMessage
    inner: tuple[Payload, ...]
    fragments: int


@dataclass(frozen=True, slots=True)
class FragmentRefused:
    reason: str  # one of REFUSAL_REASONS
    detail: str
    message_id: int | None = None


@dataclass(frozen=True, slots=True)
class FragmentOfReassembledMessage:
    """A fragment of a message already reassembled: a retransmission (§2.6.1); the caller decides what to resend."""

    message_id: int
    fragment_number: int


ReassemblyResult = FragmentPending | MessageReassembled | FragmentRefused | FragmentOfReassembledMessage

REFUSAL_REASONS = (
    "malformed",  # does not decode, bad Fragment Number / Total Fragments, bad Pad Length
    "integrity",  # ICV failed: nothing is stored
    "too_many_fragments",  # Total Fragments above max_fragments
    "duplicate",  # this fragment number is already in
    "inconsistent",  # same number, different content; or a header that differs from the set's
    "stale_total",  # Total Fragments below the set's: a fragment of an older fragmentation
    "too_large",  # the set's plaintext would exceed max_message_len
    "buffer_full",  # all sets together would exceed max_buffered_len
    "restarted",  # a set dropped for one with a higher Total Fragments
    "evicted",  # a set dropped to make room for a newer message
    "timed_out",  # a set not completed within timeout_s
    "bad_chain",  # the reassembled plaintext is not a payload chain
)


@dataclass(slots=True)
class _Set:
    header: IkeHeader
    total: int
    started: float
    first_payload: int = 0
    pieces: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class FragmentReassembler:
    """Reassembles one direction's fragmented messages of one IKE SA (sans-I/O: time comes in as ``now``).

    ``refusals`` counts every refusal and dropped set by reason; ``recent``
    keeps the last 32 FragmentRefused results for traces.
    """

    def __init__(self, limits: ReassemblyLimits | None = None) -> None:
        self.limits = limits or ReassemblyLimits()
        self._sets: dict[tuple[int, bool], _Set] = {}
        self._done: deque[tuple[int, bool]] = deque(maxlen=4)
        self.refusals: Counter[str] = Counter()
        self.recent: deque[FragmentRefused] = deque(maxlen=32)

    @property
    def buffered_len(self) -> int:
        """Plaintext octets held across all sets in progress."""
        return sum(s.size for s in self._sets.values())

    @property
    def pending_messages(self) -> int:
        return len(self._sets)

    def get_timer(self) -> float | None:
        """When the oldest set times out, or None."""
        if not self._sets:
            return None
        return min(s.started for s in self._sets.values()) + self.limits.timeout_s

    def handle_timer(self, *, now: float) -> list[FragmentRefused]:
        """Drop the sets whose time is up; returns one ``timed_out`` refusal per dropped set."""
        dropped = []
        for key, s in list(self._sets.items()):
            if now >= s.started + self.limits.timeout_s:
                del self._sets[key]
                dropped.append(self._refuse("timed_out", f"{len(s.pieces)} of {s.total} fragments in", key[0]))
        return dropped

    def add(self, data: bytes, *, sk_e: bytes, now: float, icv_len: int = 16) -> ReassemblyResult:
        """Take one fragment message as received; never raises for anything the peer sent.

        ``sk_e`` is the sender's SK_ei/SK_er.
        """
        self.handle_timer(now=now)
        try:
            fragment = decrypt_fragment(data, sk_e=sk_e, icv_len=icv_len)
        except FragmentIntegrityError as exc:
            return self._refuse("integrity", exc.reason)
        except DecodeError as exc:
            return self._refuse("malformed", str(exc))
        header = fragment.header
        mid = header.message_id
        key = (mid, header.response)
        if key in self._done:
            return FragmentOfReassembledMessage(mid, fragment.fragment_number)
        if fragment.total_fragments > self.limits.max_fragments:
            return self._refuse(
                "too_many_fragments", f"Total Fragments {fragment.total_fragments} > {self.limits.max_fragments}", mid
            )
        current = self._sets.get(key)
        if current is not None:
            if _header_fields(current.header) != _header_fields(header):
                return self._refuse("inconsistent", "header differs from the set's first fragment", mid)
            if fragment.total_fragments < current.total:
                return self._refuse(
                    "stale_total", f"Total Fragments {fragment.total_fragments} below the set's {current.total}", mid
                )
            if fragment.total_fragments > current.total:
                del self._sets[key]
                self._refuse(
                    "restarted", f"Total Fragments rose from {current.total} to {fragment.total_fragments}", mid
                )
                current = None
        if current is not None and fragment.fragment_number in current.pieces:
            if current.pieces[fragment.fragment_number] != fragment.plaintext:
                return self._refuse("inconsistent", f"a different fragment {fragment.fragment_number}", mid)
            return self._refuse("duplicate", f"fragment {fragment.fragment_number} again", mid)
        size = len(fragment.plaintext)
        if (current.size if current else 0) + size > self.limits.max_message_len:
            if current is not None:
                del self._sets[key]
            return self._refuse("too_large", f"more than {self.limits.max_message_len} octets", mid)
        if current is None:
            while len(self._sets) >= self.limits.max_pending_messages:
                self._evict_oldest()
            current = self._sets[key] = _Set(header, fragment.total_fragments, now)
        while self.buffered_len + size > self.limits.max_buffered_len and len(self._sets) > 1:
            self._evict_oldest(keep=key)
        if self.buffered_len + size > self.limits.max_buffered_len:
            del self._sets[key]
            return self._refuse("buffer_full", f"more than {self.limits.max_buffered_len} octets buffered", mid)
        current.pieces[fragment.fragment_number] = fragment.plaintext
        current.size += size
        if fragment.fragment_number == 1:
            current.first_payload = fragment.first_payload
        if len(current.pieces) < current.total:
            return FragmentPending(mid, len(current.pieces), current.total)
        del self._sets[key]
        plaintext = b"".join(current.pieces[n] for n in range(1, current.total + 1))
        try:
            inner = pull_payload_chain(Buffer(plaintext), current.first_payload, allow_encrypted=False)
        except DecodeError as exc:
            return self._refuse("bad_chain", str(exc), mid)
        self._done.append(key)
        message = IkeMessage(
            spi_i=header.spi_i,
            spi_r=header.spi_r,
            exchange_type=header.exchange_type,
            message_id=mid,
            initiator=header.initiator,
            response=header.response,
            higher_version=header.higher_version,
            major_version=header.major_version,
            minor_version=header.minor_version,
            reserved_flags=header.reserved_flags,
        )
        return MessageReassembled(message, inner, current.total)

    def _evict_oldest(self, keep: tuple[int, bool] | None = None) -> None:
        candidates = [(s.started, k) for k, s in self._sets.items() if k != keep]
        _, key = min(candidates)
        dropped = self._sets.pop(key)
        self._refuse("evicted", f"{len(dropped.pieces)} of {dropped.total} fragments dropped for newer ones", key[0])

    def _refuse(self, reason: str, detail: str, message_id: int | None = None) -> FragmentRefused:
        refused = FragmentRefused(reason, detail, message_id)
        self.refusals[reason] += 1
        self.recent.append(refused)
        return refused


def _header_fields(header: IkeHeader) -> tuple[object, ...]:
    return (header.spi_i, header.spi_r, header.exchange_type, header.initiator, header.response, header.major_version)
