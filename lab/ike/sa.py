"""One IKE SA (RFC 7296) with its Child SAs, sans I/O.

The SA speaks in whole IKE messages: ``receive_message(data)`` takes one (no
non-ESP marker, no TCP length) and ``messages_to_send()`` hands back the ones
to send; which transport carries them is the endpoint's business
(``lab.ike.endpoint``), which also tells the SA whether that transport is
UDP (retransmit with backoff, RFC 7296 §2.1) or TCP (never retransmit on the
same connection, RFC 9329 §6.1; resend only after a reconnect).

Exchanges::

    IKE_SA_INIT      HDR, [N(COOKIE)], SA, KE, Ni, N(NAT_DETECTION_*) [, N(CHILDLESS)]  -->
                 <-- HDR, SA, KE, Nr, N(NAT_DETECTION_*)      or N(COOKIE) / N(INVALID_KE_PAYLOAD)
    IKE_INTERMEDIATE HDR(MID n), SK{KEi(n)}  -->  <-- HDR(MID n), SK{KEr(n)}      one per ADDKE round (RFC 9370)
    IKE_AUTH         HDR, SK{IDi, [CERT+, CERTREQ], [IDr], AUTH, [SA, TSi, TSr]}  -->
                 <-- HDR, SK{IDr, [CERT+], AUTH, [SA, TSi, TSr] or N(error)}
    CREATE_CHILD_SA  HDR, SK{N(REKEY_SA), SA, Ni, [KEi,] TSi, TSr}  <-->  HDR, SK{SA, Nr, [KEr,] TSi, TSr}
                     HDR, SK{SA(IKE, new SPIi), Ni, KEi}  <-->  HDR, SK{SA(IKE, new SPIr), Nr, KEr}   IKE SA rekey
                     ... with ADDKE rounds: the response adds N(ADDITIONAL_KEY_EXCHANGE)(link), then per round
    IKE_FOLLOWUP_KE  HDR, SK{KEi(n), N(link)}  <-->  HDR, SK{KEr(n) [, N(next link)]}       (RFC 9370 §2.2.4)
    INFORMATIONAL    HDR, SK{[D]}  <-->  HDR, SK{[D]}      (liveness check when empty)

Rekeying the IKE SA (§1.3.2, §2.18) makes a new ``IkeSa`` (``successor``)
whose original initiator is the end that started the rekey; the Child SAs
move to it, and the rekey initiator deletes the old SA on the old SA. A
rekey request that meets our own outstanding one (§2.8.2) is answered
with TEMPORARY_FAILURE and each side retries after a random pause.

Additional key exchanges (RFC 9370 with RFC 9242, lab.ike.multi_ke): when
``additional_key_exchanges`` is set the IKE_SA_INIT proposals carry ADDKE
transforms and INTERMEDIATE_EXCHANGE_SUPPORTED; after IKE_SA_INIT each
round is one IKE_INTERMEDIATE (MID 1, 2, ...) protected by the keys of the
round before, after which both ends update every SK_*; IKE_AUTH follows at
MID n+1, its AUTH covering IntAuth, and its Child SA takes KEYMAT from the
last SK_d. A responder keeps the keys each IKE_INTERMEDIATE came under, so
a retransmitted one still verifies and gets the cached response. Rekeys of
such an SA run the same rounds again after CREATE_CHILD_SA, in IKE_FOLLOWUP_KE
exchanges over this SA (lab.ike.followup_ke); the new Child SA or IKE SA
exists only after the last one.

IKE fragmentation (RFC 7383, lab.ike.fragmentation): both ends offer
IKEV2_FRAGMENTATION_SUPPORTED; an encrypted message too long for one
``path_mtu_bytes`` datagram goes out over UDP as SKF fragments, each
retransmission resends all of them, and received fragments go through a
bounded reassembler before the whole message is handled as usual. Over TCP
nothing is fragmented, and a fragment arriving there is dropped.

Certificates (``auth="signature"``): RFC 7427 signatures (lab.ike.signature_auth)
over the same signed octets, the chain in CERT payloads, CERTREQ in the
IKE_SA_INIT response and the IKE_AUTH request, and the peer's chain checked
against the trust anchors (lab.ike.certs) before its signature.

One request is outstanding at a time (window size 1, RFC 7296 §2.3); further
local requests wait in a queue. A retransmitted request from the peer gets
the cached response again. A message that does not decode, does not verify
or does not belong to the current exchange is dropped and recorded
(``segment_dropped``, layer ``ike``), never raised.
"""

from __future__ import annotations

import hmac
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lab.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from lab.esp.sa import EspSa, cbc_iv
from lab.ike.certs import (
    certificates_from_payloads,
    certreq_payload,
    chain_payloads,
    describe_identity,
    identity_matches,
    validate_chain,
)
from lab.ike.config import IKE_UDP_PORT, MIN_PATH_MTU_BYTES, NAT_T_PORT, IkeConfig
from lab.ike.events import (
    ChildSaDeleted,
    ChildSaEstablished,
    ChildSaFailed,
    IkeEvent,
    IkeSaDeleted,
    IkeSaEstablished,
    IkeSaRekeyed,
    LivenessChecked,
)
from lab.ike.followup_ke import (
    FOLLOWUP_STATE_TIMEOUT_S,
    LINK_LEN,
    FollowupInitiator,
    FollowupResponder,
    acceptable_addke,
    answer_with_addke,
    chosen_methods,
    find_link,
    link_notify,
    methods_of,
    rekey_offer,
)
from lab.ike.fragmentation import (
    FragmentOfReassembledMessage,
    FragmentPending,
    FragmentReassembler,
    FragmentRefused,
    MessageReassembled,
    fragment_message,
    fragment_overhead,
    fragmentation_supported_notify,
    max_ike_message_len,
    offers_fragmentation,
)
from lab.ike.keys import (
    KEY_PAD,
    IkeIntegrityError,
    IkeSaKeys,
    decrypt_message,
    derive_child_sa_keys,
    derive_ike_sa_keys,
    dh_public_value,
    dh_shared_secret,
    encr_key_len,
    encrypt_message,
    generate_dh_private_key,
    integ_key_len,
    nat_detection_hash,
    prf,
    rekey_skeyseed,
    signed_octets,
)
from lab.ike.multi_ke import (
    IKE_FOLLOWUP_KE,
    IKE_INTERMEDIATE,
    INTERMEDIATE_EXCHANGE_SUPPORTED,
    KE_NONE,
    STATE_NOT_FOUND,
    TRANSFORM_ADDKE1,
    derive_child_sa_keys_multi,
    ike_auth_message_id,
    initiator_key_exchange,
    initiator_shared_secret,
    int_auth,
    int_auth_step,
    negotiated_additional_key_exchanges,
    offered_additional_key_exchanges,
    rekey_skeyseed_multi,
    responder_key_exchange,
    select_additional_key_exchanges,
    update_ike_sa_keys,
    with_additional_key_exchanges,
)
from lab.ike.policy import oversize_action
from lab.ike.proposals import (
    DH_IGNORED,
    DH_OPTIONAL,
    DH_REQUIRED,
    InvalidKePayload,
    Suite,
    check_chosen,
    choose_proposal,
    offered_proposals,
)
from lab.ike.separate_transports import separate_transports_notify, separate_transports_offer
from lab.ike.signature_auth import (
    SIGNATURE_HASH_ALGORITHMS,
    choose_algorithm,
    parse_signature_hash_algorithms,
    sign_auth,
    signature_hash_algorithms_notify,
    verify_auth,
)
from lab.ike.state import TERMINAL, TRANSITIONS, IkeSaState, Input
from lab.trace import NULL_TRACER, Tracer
from lab.wire.buffer import Buffer
from lab.wire.esp import EspPlaintext
from lab.wire.ikev2 import (
    AUTH_DIGITAL_SIGNATURE,
    AUTH_SHARED_KEY_MIC,
    AUTHENTICATION_FAILED,
    CHILDLESS_IKEV2_SUPPORTED,
    COOKIE,
    CREATE_CHILD_SA,
    ENCR_AES_CBC,
    ENCR_AES_GCM_16,
    ID_DER_ASN1_DN,
    ID_FQDN,
    IKE_AUTH,
    IKE_SA_INIT,
    INFORMATIONAL,
    INVALID_KE_PAYLOAD,
    INVALID_SYNTAX,
    NAT_DETECTION_DESTINATION_IP,
    NAT_DETECTION_SOURCE_IP,
    NO_PROPOSAL_CHOSEN,
    PRF_HMAC_SHA2_256,
    PROTO_ESP,
    PROTO_IKE,
    REKEY_SA,
    TEMPORARY_FAILURE,
    AuthPayload,
    DeletePayload,
    IdiPayload,
    IdrPayload,
    IkeMessage,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Payload,
    Proposal,
    SaPayload,
    TsiPayload,
    TsrPayload,
    UnknownPayload,
    decode_ike_message,
    encode_ike_message,
    pull_ike_header,
)
from lab.wire.ikev2_fragment import is_fragment_message

LAYER = "ike"
NONCE_LEN = 32  # RFC 7296 §2.10: at least 16 and at least half the PRF key size
MIN_NONCE_LEN, MAX_NONCE_LEN = 16, 256  # §3.9
MAX_INIT_RETRIES = 3  # COOKIE / INVALID_KE_PAYLOAD round trips before giving up
ZERO_SPI = bytes(8)
EXCHANGE_NAMES = {
    IKE_SA_INIT: "IKE_SA_INIT",
    IKE_AUTH: "IKE_AUTH",
    IKE_INTERMEDIATE: "IKE_INTERMEDIATE",
    CREATE_CHILD_SA: "CREATE_CHILD_SA",
    IKE_FOLLOWUP_KE: "IKE_FOLLOWUP_KE",
    INFORMATIONAL: "INFORMATIONAL",
}
NOTIFY_NAMES = {
    INVALID_SYNTAX: "INVALID_SYNTAX",
    NO_PROPOSAL_CHOSEN: "NO_PROPOSAL_CHOSEN",
    INVALID_KE_PAYLOAD: "INVALID_KE_PAYLOAD",
    AUTHENTICATION_FAILED: "AUTHENTICATION_FAILED",
    COOKIE: "COOKIE",
    38: "TS_UNACCEPTABLE",
    35: "NO_ADDITIONAL_SAS",
    44: "CHILD_SA_NOT_FOUND",
    43: "TEMPORARY_FAILURE",
    STATE_NOT_FOUND: "STATE_NOT_FOUND",
}

Address = tuple[str, int]


def exchange_name(exchange_type: int) -> str:
    return EXCHANGE_NAMES.get(exchange_type, str(exchange_type))


def notify_name(notify_type: int) -> str:
    return NOTIFY_NAMES.get(notify_type, str(notify_type))


@dataclass
class ChildSa:
    """One Child SA: ESP both ways; ``spi_in`` is the SPI the peer sends to. The keymat are encryption keys."""

    spi_in: int
    spi_out: int
    key_bits: int
    inbound: EspSa
    outbound: EspSa
    keymat_in: bytes
    keymat_out: bytes
    suite: Suite | None = None
    integ_in: bytes = b""
    integ_out: bytes = b""
    additional_kes: tuple[int, ...] = ()  # the IKE_FOLLOWUP_KE methods mixed into its keys (RFC 9370 §2.2.4)


@dataclass
class _Request:
    message_id: int
    exchange_type: int
    data: bytes
    sent_at: float
    handler: Callable[[IkeMessage, tuple[Payload, ...], float], None]
    tries: int = 0
    next_at: float = 0.0
    parts: tuple[bytes, ...] = ()  # what goes on the wire over UDP: the message, or its RFC 7383 fragments
    inner: tuple[Payload, ...] = ()  # the plaintext inner payloads, to fragment again for a smaller path
    path_mtu: int = 0  # the path MTU its fragments are sized for (RFC 7383 §2.5.2 lowers it)


class IkeSa:
    """One IKE SA, as initiator or responder of it.

    ``transport`` is ``"udp"`` or ``"tcp"``; ``local``/``remote`` are the
    transport addresses NAT detection hashes (RFC 7296 §2.23, RFC 9329 §6.5).
    The endpoint updates all three when the SA floats to port 4500 or moves
    to a new TCP connection.
    """

    def __init__(
        self,
        *,
        config: IkeConfig,
        initiator: bool,
        transport: str,
        local: Address,
        remote: Address,
        rng: random.Random,
        tracer: Tracer = NULL_TRACER,
    ) -> None:
        self.config = config
        self.initiator = initiator
        self.transport = transport
        self.local = local
        self.remote = remote
        self._rng = rng
        self._tracer = tracer
        self.state = IkeSaState.IDLE
        self.spi_i = rng.randbytes(8) if initiator else ZERO_SPI
        self.spi_r = ZERO_SPI if initiator else rng.randbytes(8)
        self.nat_detected_local = False  # we are behind a NAT
        self.nat_detected_remote = False  # the peer is
        self.peer_childless = False
        self.peer_id: bytes | None = None  # the peer's authenticated identity (ID_FQDN data)
        self.keys: IkeSaKeys | None = None
        self.prf_id = PRF_HMAC_SHA2_256
        self.key_bits = 0
        self.encr_id = ENCR_AES_GCM_16
        self.integ_id = 0  # INTEG_NONE with AES-GCM
        self.dh_group = config.dh_groups[0]
        self.successor: IkeSa | None = None  # the IKE SA that replaced this one (§2.18)
        self.children: dict[int, ChildSa] = {}
        self.child: ChildSa | None = None  # the newest Child SA, the one outbound packets use
        self.established_at: float | None = None
        self.last_received_at = 0.0
        self._dh_private = b""
        self._ni = b""
        self._nr = b""
        self._init_request = b""  # RealMessage1 (§2.15)
        self._init_response = b""  # RealMessage2
        self._init_retries = 0
        self._cookie = b""
        self._iv = 0
        self._next_request_mid = 0
        self._peer_next_mid = 0
        self._outstanding: _Request | None = None
        self._cached_response: tuple[int, bytes] | None = None
        self._queue: deque[Callable[[float], None]] = deque()
        self._out: list[bytes] = []
        self._events: deque[IkeEvent] = deque()
        self._half_open_until: float | None = None
        self._dpd_at: float | None = None
        self._pending_child_spi: int | None = None
        self._child_offered: tuple[Proposal, ...] = ()
        self._arrival: tuple[str, Address, Address] | None = None
        self._liveness_sent_at = 0.0
        self._current_response_bytes = b""
        self._offered: tuple[Proposal, ...] = ()
        self._rekeyed_until: float | None = None  # REKEYED: give up waiting for the peer's Delete
        self._ike_rekey_retry_at: float | None = None
        self._ike_rekey_outstanding = False
        self._child_rekey_retries = 0
        self._cached_parts: tuple[bytes, ...] = ()  # the cached response as sent (its fragments over UDP)
        # RFC 9370 / RFC 9242: the additional key exchanges agreed in IKE_SA_INIT and how far they got
        self.additional_kes: tuple[int, ...] = ()
        self.intermediate_done = 0
        self._addke_private = b""
        self._int_auth_i: bytes | None = None
        self._int_auth_r: bytes | None = None
        self._keys_by_mid: dict[int, IkeSaKeys] = {}  # responder: the keys that protected each IKE_INTERMEDIATE
        self.peer_intermediate = False  # the peer sent INTERMEDIATE_EXCHANGE_SUPPORTED
        # RFC 9370 §2.2.4: our IKE_FOLLOWUP_KE series under way, and the peer's by link
        self._followup: FollowupInitiator | None = None
        self._followup_states: dict[bytes, FollowupResponder] = {}
        # RFC 7383: both ends offered fragmentation in IKE_SA_INIT
        self.fragmentation = False
        self.peer_fragmentation = False
        self._reassembler = FragmentReassembler(config.fragment_limits)
        self.fragments_sent = 0
        self._learned_path_mtu: int | None = None  # lowered by RFC 7383 §2.5.2 when smaller fragments were needed
        self.too_big_for_udp = ""  # why this initiator gave UDP up for TCP (oversize_udp="tcp"), else ""
        # draft-ietf-ipsecme-ikev2-reliable-transport: IKE over TCP, ESP over UDP (lab.ike.separate_transports)
        self.separate_transports = False
        self.peer_separate_transports = False
        self._separate_transports_ignored = ""  # why the peer's notify was not taken
        self.esp_path: tuple[Address, Address] | None = None  # (local, remote) UDP for ESP when IKE went elsewhere
        self.unanswered = False  # a request went unanswered through every retransmission
        self.peer_hash_algorithms: tuple[int, ...] = ()  # RFC 7427 §4
        self.peer_certificates: tuple[Any, ...] = ()  # the validated chain (end entity first)
        self._peer_signature = ""

    # --- labels -----------------------------------------------------------------------------------------

    @property
    def label(self) -> str:
        """``SPIi`` in hex: fixed from the first message on, as trace records name the SA."""
        return self.spi_i.hex()

    @property
    def established(self) -> bool:
        return self.state is IkeSaState.ESTABLISHED

    @property
    def closed(self) -> bool:
        return self.state in TERMINAL

    @property
    def esp_transport(self) -> str:
        """Where ESP goes: UDP when IKE and ESP were separated, else with IKE."""
        return "udp" if self.esp_path is not None else self.transport

    @property
    def esp_local(self) -> Address:
        return self.esp_path[0] if self.esp_path is not None else self.local

    @property
    def esp_remote(self) -> Address:
        return self.esp_path[1] if self.esp_path is not None else self.remote

    @property
    def outstanding_exchange(self) -> int | None:
        return self._outstanding.exchange_type if self._outstanding else None

    # --- output -------------------------------------------------------------------------------------------

    def messages_to_send(self) -> list[bytes]:
        out, self._out = self._out, []
        return out

    def next_event(self) -> IkeEvent | None:
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        times = [
            t
            for t in (self._half_open_until, self._dpd_at, self._rekeyed_until, self._ike_rekey_retry_at)
            if t is not None
        ]
        if self._outstanding is not None:
            times.append(self._outstanding.next_at)
        reassembly = self._reassembler.get_timer()
        if reassembly is not None:
            times.append(reassembly)
        times += [state.expires_at for state in self._followup_states.values()]
        return min(times) if times else None

    # --- commands -----------------------------------------------------------------------------------------

    def start(self, *, now: float) -> None:
        """Send the IKE_SA_INIT request. Raises LocalProtocolError unless a new initiator SA."""
        if not self.initiator or self.state is not IkeSaState.IDLE:
            raise LocalProtocolError(f"cannot start an IKE SA in state {self.state.name}")
        self._ni = self._rng.randbytes(NONCE_LEN)
        self._new_dh(self.dh_group)
        self._set_state(Input.START, now)
        self._send_init_request(now)

    def check_liveness(self, *, now: float) -> None:
        """Queue an empty INFORMATIONAL request (RFC 7296 §2.4). Raises LocalProtocolError unless established."""
        self._require_established("check liveness")

        def send(t: float) -> None:
            self._liveness_sent_at = t
            self._request(INFORMATIONAL, (), self._on_liveness_response, t)

        self._enqueue(send, now)

    def rekey_child(self, *, now: float) -> None:
        """Rekey the current Child SA with CREATE_CHILD_SA (RFC 7296 §1.3.3), then delete the old one.

        Raises LocalProtocolError unless established with a Child SA.
        """
        self._require_established("rekey")
        if self.child is None:
            raise LocalProtocolError("no Child SA to rekey")
        self._enqueue(self._send_rekey, now)

    def rekey_ike(self, *, now: float) -> None:
        """Rekey this IKE SA with CREATE_CHILD_SA (RFC 7296 §1.3.2, §2.18); the Child SAs move to the new one.

        Raises LocalProtocolError unless established.
        """
        self._require_established("rekey the IKE SA")
        self._enqueue(self._send_ike_rekey, now)

    def close(self, *, now: float) -> None:
        """Delete the IKE SA (INFORMATIONAL with Delete, §1.4.1); before it is up, just drop it."""
        if self.state in TERMINAL or self.state is IkeSaState.DELETING:
            return
        if self.state not in (IkeSaState.ESTABLISHED, IkeSaState.REKEYED):
            self._set_state(Input.CLOSE, now)
            self._finish("closed before established", now, error=False)
            return
        self._rekeyed_until = None
        self._outstanding = None
        self._queue.clear()
        self._followup = None
        self._followup_states.clear()
        self._set_state(Input.CLOSE, now)
        self._request(INFORMATIONAL, (DeletePayload(PROTO_IKE),), self._on_delete_response, now)

    def abandon(self, reason: str, *, now: float) -> None:
        """Give up a not yet established attempt without telling the peer (fallback, a lost race)."""
        if self.state in (IkeSaState.INIT_SENT, IkeSaState.INTERMEDIATE_SENT, IkeSaState.AUTH_SENT):
            self._outstanding = None
            self._set_state(Input.ABANDON, now, detail=reason)

    def resend_outstanding(self, *, now: float) -> None:
        """After a TCP reconnect: send the request still waiting for its response (RFC 9329 §6.1)."""
        req = self._outstanding
        if req is not None:
            self._out.append(req.data)
            self._record_message(
                now, "segment_sent", req.exchange_type, req.message_id, False, len(req.data), resent="reconnect"
            )
            req.sent_at = now
            req.next_at = now + self.config.response_timeout_s

    def transport_lost(self, reason: str, *, now: float) -> None:
        """The only transport is gone for good (TCP reconnects exhausted): the SA fails."""
        if self.state in TERMINAL or self.state is IkeSaState.IDLE:
            return
        self._outstanding = None
        self._set_state(Input.TIMEOUT, now, detail=reason)
        self._finish(reason, now, error=True)

    def drop_cached_response(self) -> None:
        self._cached_response = None

    # --- ESP ---------------------------------------------------------------------------------------------

    def protect(self, data: bytes, *, next_header: int) -> tuple[ChildSa, bytes]:
        """One ESP packet carrying ``data`` on the current Child SA. Raises LocalProtocolError without one."""
        if self.child is None or not self.established:
            raise LocalProtocolError("no Child SA to send on")
        return self.child, self.child.outbound.encrypt(data, next_header=next_header)

    def unprotect(self, spi: int, packet: bytes, *, now: float) -> EspPlaintext:
        """Verify and decrypt an inbound ESP packet. Raises EspDropped (recorded) or KeyError for an unknown SPI."""
        return self.children[spi].inbound.decrypt(packet, now=now)

    # --- input -------------------------------------------------------------------------------------------

    def receive_message(self, data: bytes, *, now: float, path: tuple[str, Address, Address] | None = None) -> None:
        """One IKE message for this SA. Never raises: bad messages are dropped and recorded.

        ``path`` (transport, local, remote) is where it arrived; a responder
        moves to it when the message proves authentic (RFC 7296 §2.23).
        """
        if self.state in TERMINAL:
            return
        self._arrival = path
        if is_fragment_message(data):
            port = path[1][1] if path is not None and not self.initiator else None
            self._receive_fragment(data, now, transport=path[0] if path is not None else self.transport, port=port)
            return
        try:
            message = decode_ike_message(data)
        except DecodeError as exc:
            self._drop(now, "malformed", str(exc))
            return
        if message.major_version != 2:
            self._drop(now, "major_version", f"version {message.major_version}")
            return
        self._record_message(
            now,
            "segment_received",
            message.exchange_type,
            message.message_id,
            message.response,
            len(data),
            port=path[1][1] if path is not None and not self.initiator else None,
        )
        if message.response:
            self._receive_response(message, data, now)
        else:
            self._receive_request(message, data, now)

    def _receive_fragment(self, data: bytes, now: float, *, transport: str, port: int | None) -> None:
        """One SKF message (RFC 7383 §2.6): checked, kept, and once the set is whole handled as the message."""
        if transport != "udp" or not self.fragmentation or self.keys is None:
            why = "over TCP" if transport != "udp" else "not negotiated" if self.keys is not None else "before keys"
            self._drop(now, "fragment_unexpected", f"IKE fragment {why}")
            return
        try:
            header = pull_ike_header(Buffer(data))
        except DecodeError as exc:
            self._drop(now, "fragment_malformed", str(exc))
            return
        # the sender's SK_e; a retransmitted IKE_INTERMEDIATE request came under the keys before its update
        keys = self.keys if header.response else self._keys_by_mid.get(header.message_id, self.keys)
        sk_e = keys.sk_er if self.initiator else keys.sk_ei
        result = self._reassembler.add(data, sk_e=sk_e, now=now)
        if isinstance(result, FragmentRefused):
            self._drop_fragment(now, result)
        elif isinstance(result, FragmentPending):
            self._record_message(
                now,
                "segment_received",
                header.exchange_type,
                header.message_id,
                header.response,
                len(data),
                fragments=result.total,
                port=port,
            )
        elif isinstance(result, FragmentOfReassembledMessage):
            cached = self._cached_response
            if (
                not header.response
                and result.fragment_number == 1
                and cached is not None
                and cached[0] == result.message_id
            ):
                self._resend_cached(header.exchange_type, result.message_id, now)
            else:
                self._drop(
                    now,
                    "fragment_retransmitted",
                    f"fragment {result.fragment_number} of message ID {result.message_id}",
                )
        elif isinstance(result, MessageReassembled):
            message = result.message
            self._record_message(
                now,
                "segment_received",
                message.exchange_type,
                message.message_id,
                message.response,
                len(data),
                fragments=result.fragments,
                port=port,
            )
            self._record(
                now,
                "state_updated",
                {
                    "event": "reassembled",
                    "exchange": exchange_name(message.exchange_type),
                    "message_id": message.message_id,
                    "fragments": result.fragments,
                    "transport": transport,
                },
            )
            if message.response:
                self._receive_response(message, data, now, inner=result.inner)
            else:
                self._receive_request(message, data, now, inner=result.inner)

    def _drop_fragment(self, now: float, refused: FragmentRefused) -> None:
        self._record(
            now,
            "segment_dropped",
            {
                "reason": f"fragment_{refused.reason}",
                "detail": refused.detail,
                "transport": self.transport,
                "message_id": refused.message_id,
                "buffered": self._reassembler.buffered_len,
            },
        )

    def _resend_cached(self, exchange_type: int, message_id: int, now: float) -> None:
        """A retransmitted request gets the cached response again, every fragment of it (RFC 7383 §2.6.1)."""
        assert self._cached_response is not None
        self._out.extend(self._cached_parts or (self._cached_response[1],))
        fragments = len(self._cached_parts) if len(self._cached_parts) > 1 else 0
        self._record_message(
            now,
            "segment_sent",
            exchange_type,
            message_id,
            True,
            len(self._cached_response[1]),
            resent="retransmitted request",
            fragments=fragments,
        )

    def handle_timer(self, *, now: float) -> None:
        if self.state in TERMINAL:
            return
        for refused in self._reassembler.handle_timer(now=now):
            self._drop_fragment(now, refused)
        self._expire_followups(now)
        if self._rekeyed_until is not None and now >= self._rekeyed_until:
            self._rekeyed_until = None
            if self.state is IkeSaState.REKEYED:
                self._outstanding = None
                self._set_state(Input.TIMEOUT, now, detail="rekeyed; the peer never deleted the old SA")
                self._finish("rekeyed", now, error=False)
                return
        if self._ike_rekey_retry_at is not None and now >= self._ike_rekey_retry_at:
            self._ike_rekey_retry_at = None
            if self.established:
                self._enqueue(self._send_ike_rekey, now)
        if self._half_open_until is not None and now >= self._half_open_until:
            self._half_open_until = None
            if self.state is IkeSaState.INIT_RESPONDED:
                self._set_state(Input.TIMEOUT, now, detail="half-open SA expired")
                self._finish("half-open SA expired", now, error=True)
                return
        req = self._outstanding
        if req is not None and now >= req.next_at:
            if self.transport == "udp" and req.tries < self.config.retransmit_tries:
                req.tries += 1
                req.next_at = now + self.config.retransmit_s * 2**req.tries
                pmtud = self.config.fragment_pmtud_tries
                if pmtud and req.tries > pmtud and (req.tries - 1) % pmtud == 0:
                    self._smaller_fragments(req, now)
                self._out.extend(req.parts or (req.data,))  # every fragment again (RFC 7383 §2.6.1)
                self._record_message(
                    now,
                    "segment_sent",
                    req.exchange_type,
                    req.message_id,
                    False,
                    len(req.data),
                    retransmission=req.tries,
                    fragments=len(req.parts) if len(req.parts) > 1 else 0,
                )
            else:
                self._timeout(now)
                return
        if self._dpd_at is not None and now >= self._dpd_at:
            self._dpd_at = None
            if self.established and self._outstanding is None and not self._queue:
                self.check_liveness(now=now)

    # --- IKE_SA_INIT --------------------------------------------------------------------------------------

    def _new_dh(self, group: int) -> None:
        self.dh_group = group
        self._dh_private = generate_dh_private_key(group, self._rng)

    def _ike_proposals(self) -> tuple[Proposal, ...]:
        """With additional key exchanges, each proposal lists one ADDKE type per round (RFC 9370 §2.2.1)."""
        proposals = offered_proposals(self.config, PROTO_IKE, dh_groups=self.config.dh_groups)
        rounds = [(method,) for method in self.config.additional_key_exchanges]
        if not rounds:
            return proposals
        return tuple(with_additional_key_exchanges(p, rounds) for p in proposals)

    def _init_notifies(self, *, peer: Sequence[Payload] | None) -> list[Payload]:
        """Our IKE_SA_INIT capability notifies; a responder (``peer`` = the request's payloads) answers only
        what the initiator offered, except SIGNATURE_HASH_ALGORITHMS and CERTREQ, which go with certificates."""
        out: list[Payload] = []
        if self.config.fragmentation and (peer is None or offers_fragmentation(peer)):
            out.append(fragmentation_supported_notify())  # RFC 7383 §2.3
        offer = self.config.separate_transports and self.transport == "udp"
        if offer and (peer is None or self.peer_separate_transports):
            out.append(separate_transports_notify())  # draft-ietf-ipsecme-ikev2-reliable-transport §3.1
        if peer is None and self.config.additional_key_exchanges:
            out.append(NotifyPayload(INTERMEDIATE_EXCHANGE_SUPPORTED))  # RFC 9242 §3.1
        if peer is not None and self.peer_intermediate:
            out.append(NotifyPayload(INTERMEDIATE_EXCHANGE_SUPPORTED))
        if self.config.auth == "signature":
            out.append(signature_hash_algorithms_notify())  # RFC 7427 §4
            if peer is not None:
                out.append(certreq_payload(self.config.trust_anchors))  # RFC 7296 §1.2: CERTREQ may go here
        return out

    def _take_peer_capabilities(self, message: IkeMessage) -> None:
        self.peer_fragmentation = offers_fragmentation(message.payloads)
        self.fragmentation = self.config.fragmentation and self.peer_fragmentation
        self.peer_intermediate = bool(message.notifies(INTERMEDIATE_EXCHANGE_SUPPORTED))
        self.peer_separate_transports, self._separate_transports_ignored = separate_transports_offer(message.payloads)
        self.separate_transports = (
            self.config.separate_transports and self.peer_separate_transports and self.transport == "udp"
        )
        hashes = message.notifies(SIGNATURE_HASH_ALGORITHMS)
        if hashes:
            try:
                self.peer_hash_algorithms = parse_signature_hash_algorithms(hashes[0])
            except RemoteProtocolError:
                self.peer_hash_algorithms = ()

    def _nat_notifies(self, spi_r: bytes) -> list[NotifyPayload]:
        return [
            NotifyPayload(NAT_DETECTION_SOURCE_IP, nat_detection_hash(self.spi_i, spi_r, *self.local)),
            NotifyPayload(NAT_DETECTION_DESTINATION_IP, nat_detection_hash(self.spi_i, spi_r, *self.remote)),
        ]

    def _send_init_request(self, now: float) -> None:
        payloads: list[Payload] = []
        if self._cookie:
            payloads.append(NotifyPayload(COOKIE, self._cookie))  # "the first payload" (§2.6)
        self._offered = self._ike_proposals()
        payloads += [
            SaPayload(self._offered),
            KePayload(self.dh_group, dh_public_value(self.dh_group, self._dh_private)),
            NoncePayload(self._ni),
            *self._nat_notifies(ZERO_SPI),
            *self._init_notifies(peer=None),
        ]
        if not self.config.child_sa:
            payloads.append(NotifyPayload(CHILDLESS_IKEV2_SUPPORTED))
        data = encode_ike_message(IkeMessage(self.spi_i, ZERO_SPI, IKE_SA_INIT, 0, tuple(payloads), initiator=True))
        self._init_request = data
        self._outstanding = None
        self._next_request_mid = 0
        self._send_request_bytes(IKE_SA_INIT, data, self._on_init_response, now)

    def _on_init_response(self, message: IkeMessage, _inner: tuple[Payload, ...], now: float) -> None:
        data = self._current_response_bytes
        for notify in message.notifies():
            if notify.notify_type == COOKIE and self._init_retries < MAX_INIT_RETRIES:
                self._init_retries += 1
                self._cookie = notify.data
                self._record(
                    now,
                    "state_updated",
                    {"exchange": "IKE_SA_INIT", "result": "COOKIE", "cookie_len": len(notify.data)},
                )
                self._send_init_request(now)
                return
            if notify.notify_type == INVALID_KE_PAYLOAD and self._init_retries < MAX_INIT_RETRIES:
                wanted = int.from_bytes(notify.data[:2], "big") if len(notify.data) >= 2 else -1
                if wanted in self.config.dh_groups and wanted != self.dh_group:
                    self._init_retries += 1
                    self._record(
                        now,
                        "state_updated",
                        {"exchange": "IKE_SA_INIT", "result": "INVALID_KE_PAYLOAD", "dh_group": wanted},
                    )
                    self._new_dh(wanted)
                    self._send_init_request(now)
                    return
            if notify.is_error:
                self._init_failed(now, f"responder refused: {notify_name(notify.notify_type)}", notify.notify_type)
                return
        try:
            chosen = check_chosen(
                self.config, message.payload(SaPayload), self._offered, PROTO_IKE, dh_group=self.dh_group, spi_len=0
            )
            ke = message.payload(KePayload)
            nonce = message.payload(NoncePayload)
            if ke is None or nonce is None:
                raise RemoteProtocolError("IKE_SA_INIT response without KE or Nonce")
            if ke.dh_group != self.dh_group:
                raise RemoteProtocolError(f"KE group {ke.dh_group}, we sent {self.dh_group}")
            if not MIN_NONCE_LEN <= len(nonce.nonce) <= MAX_NONCE_LEN:
                raise RemoteProtocolError(f"Nr of {len(nonce.nonce)} bytes")
            if message.spi_r == ZERO_SPI:
                raise RemoteProtocolError("responder SPI is zero")
            additional = self._check_additional_kes(message)
            shared = dh_shared_secret(self.dh_group, self._dh_private, ke.key_data)
        except RemoteProtocolError as exc:
            self._init_failed(now, str(exc), None)
            return
        self._adopt(chosen)
        self.spi_r = message.spi_r
        self._nr = nonce.nonce
        self._init_response = data
        self.peer_childless = bool(message.notifies(CHILDLESS_IKEV2_SUPPORTED))
        self._take_peer_capabilities(message)
        self.additional_kes = additional
        self._check_nat(message, now)
        self._derive_keys(shared, now)
        self._set_state(Input.RECV_INIT_RESPONSE_ADDKE if additional else Input.RECV_INIT_RESPONSE, now)
        if self.transport == "udp" and self.remote[1] == IKE_UDP_PORT:
            self.local = (self.local[0], NAT_T_PORT)  # §2.23: IKE_AUTH onwards on port 4500
            self.remote = (self.remote[0], NAT_T_PORT)
            self._record(now, "state_updated", {"event": "floated", "port": NAT_T_PORT})
        self._record_separate_transports(now)
        self._record(
            now,
            "state_updated",
            {
                "exchange": "IKE_SA_INIT",
                "result": "ok",
                **chosen.describe(),
                "nat_detected": self.nat_detected_local or self.nat_detected_remote,
                **self._capabilities(),
            },
        )
        self._next_request_mid = 1
        if additional:
            self._send_intermediate(now)
        else:
            self._send_auth_request(now)

    def _capabilities(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.additional_kes:
            out["additional_kes"] = list(self.additional_kes)
        if self.config.fragmentation or self.peer_fragmentation:
            out["fragmentation"] = self.fragmentation
        if self.config.separate_transports or self.peer_separate_transports:
            out["separate_transports"] = self.separate_transports
        if self.config.auth != "psk":
            out["auth"] = self.config.auth
        return out

    def _record_separate_transports(self, now: float) -> None:
        """Record what became of SEPARATE_TRANSPORTS; with it agreed, ESP keeps the UDP path IKE_SA_INIT took
        and an initiator moves IKE to TCP before its next request (the endpoint opens the connection)."""
        if self._separate_transports_ignored:
            self._record(
                now,
                "state_updated",
                {"event": "separate_transports_ignored", "sa": self.label, "reason": self._separate_transports_ignored},
            )
        if not (self.config.separate_transports or self.peer_separate_transports):
            return
        self._record(
            now,
            "state_updated",
            {
                "event": "separate_transports",
                "sa": self.label,
                "negotiated": self.separate_transports,
                "offered": self.config.separate_transports,
                "peer_offered": self.peer_separate_transports,
                "transport": self.transport,
            },
        )
        if not self.separate_transports:
            return
        if self.local[1] != NAT_T_PORT:  # the draft starts on 4500; ESP needs the RFC 3948 port either way
            self.esp_path = ((self.local[0], NAT_T_PORT), (self.remote[0], NAT_T_PORT))
        else:
            self.esp_path = (self.local, self.remote)
        if self.initiator:
            self.transport = "tcp"
            self._record(
                now,
                "state_updated",
                {
                    "event": "transport_switched",
                    "sa": self.label,
                    "ike_transport": "tcp",
                    "esp_transport": "udp",
                    "esp_remote": f"{self.esp_remote[0]}:{self.esp_remote[1]}",
                },
            )

    def _check_additional_kes(self, message: IkeMessage) -> tuple[int, ...]:
        """The rounds the responder agreed to: every one we offered (none is optional). Raises RemoteProtocolError."""
        sa = message.payload(SaPayload)
        assert sa is not None  # check_chosen passed
        chosen = negotiated_additional_key_exchanges(sa.proposals[0])
        wanted = self.config.additional_key_exchanges
        if chosen != wanted:
            raise RemoteProtocolError(f"additional key exchanges {list(chosen)} chosen, we asked for {list(wanted)}")
        if wanted and not message.notifies(INTERMEDIATE_EXCHANGE_SUPPORTED):
            raise RemoteProtocolError("additional key exchanges chosen without INTERMEDIATE_EXCHANGE_SUPPORTED")
        return chosen

    def _init_failed(self, now: float, reason: str, notify_type: int | None) -> None:
        self._outstanding = None
        self._record(now, "state_updated", {"exchange": "IKE_SA_INIT", "result": "failed", "reason": reason})
        self._set_state(Input.INIT_REFUSED, now, detail=reason)
        self._finish(reason, now, error=True, notify_type=notify_type)

    def _adopt(self, suite: Suite) -> None:
        """Take the negotiated IKE SA transforms."""
        self.encr_id = suite.encr_id
        self.key_bits = suite.key_bits
        self.integ_id = suite.integ_id
        self.prf_id = suite.prf_id
        self.dh_group = suite.dh_group

    @property
    def suite(self) -> Suite:
        return Suite(PROTO_IKE, self.encr_id, self.key_bits, self.integ_id, self.prf_id, self.dh_group)

    def _check_nat(self, message: IkeMessage, now: float) -> None:
        """§2.23: compare the peer's NAT_DETECTION hashes with the addresses we see."""
        sources = message.notifies(NAT_DETECTION_SOURCE_IP)
        dests = message.notifies(NAT_DETECTION_DESTINATION_IP)
        if not sources or not dests:
            return
        spi_r = message.spi_r if self.initiator else ZERO_SPI
        expect_src = nat_detection_hash(self.spi_i, spi_r, *self.remote)
        expect_dst = nat_detection_hash(self.spi_i, spi_r, *self.local)
        self.nat_detected_remote = not any(n.data == expect_src for n in sources)
        self.nat_detected_local = not any(n.data == expect_dst for n in dests)
        self._record(
            now,
            "state_updated",
            {
                "nat_detected_local": self.nat_detected_local,
                "nat_detected_remote": self.nat_detected_remote,
                "transport": self.transport,
            },
        )

    def _derive_keys(self, shared: bytes, now: float, *, seed: bytes | None = None) -> None:
        self.keys = derive_ike_sa_keys(
            prf_id=self.prf_id,
            shared_secret=shared,
            ni=self._ni,
            nr=self._nr,
            spi_i=self.spi_i,
            spi_r=self.spi_r,
            encr_key_len=encr_key_len(self.encr_id, self.key_bits),
            integ_key_len=integ_key_len(self.integ_id),
            seed=seed,
        )
        data: dict[str, Any] = {
            "sa": self.label,
            "spi_i": self.spi_i.hex(),
            "spi_r": self.spi_r.hex(),
            **self.suite.describe(),
            "encr_id": self.encr_id,
            "integ_id": self.integ_id,
        }
        if seed is not None:
            data["rekey"] = True
            if self.additional_kes:
                data["additional_kes"] = list(self.additional_kes)
        self._record_keys(now, data)

    def _record_keys(self, now: float, data: dict[str, Any]) -> None:
        assert self.keys is not None
        if self.config.export_keys:
            data |= {
                "sk_ei": self.keys.sk_ei.hex(),
                "sk_er": self.keys.sk_er.hex(),
                "sk_ai": self.keys.sk_ai.hex(),
                "sk_ar": self.keys.sk_ar.hex(),
            }
        self._tracer.record(now, LAYER, "key_updated", data)

    # --- IKE_INTERMEDIATE with additional key exchanges (RFC 9242, RFC 9370) ----------------------------------------

    def _header(self, exchange_type: int, message_id: int, *, response: bool) -> IkeMessage:
        return IkeMessage(
            self.spi_i, self.spi_r, exchange_type, message_id, (), initiator=self.initiator, response=response
        )

    def _update_keys(self, shared: bytes, method: int, now: float) -> None:
        """SKEYSEED(n) and SK_*(n) from SK_d(n-1) and the n-th additional secret (RFC 9370 §2.2.2)."""
        assert self.keys is not None
        self.keys = update_ike_sa_keys(
            self.keys,
            prf_id=self.prf_id,
            shared_secret=shared,
            ni=self._ni,
            nr=self._nr,
            spi_i=self.spi_i,
            spi_r=self.spi_r,
            encr_key_len=encr_key_len(self.encr_id, self.key_bits),
            integ_key_len=integ_key_len(self.integ_id),
        )
        self.intermediate_done += 1
        self._record_keys(
            now,
            {
                "sa": self.label,
                "spi_i": self.spi_i.hex(),
                "spi_r": self.spi_r.hex(),
                **self.suite.describe(),
                "encr_id": self.encr_id,
                "integ_id": self.integ_id,
                "intermediate": self.intermediate_done,
                "additional_ke": method,
            },
        )

    def _send_intermediate(self, now: float) -> None:
        """Initiator: the IKE_INTERMEDIATE request of the next additional key exchange: SK{KEi(n)}."""
        assert self.keys is not None
        method = self.additional_kes[self.intermediate_done]
        self._addke_private, public = initiator_key_exchange(method, self._rng)
        inner = (KePayload(method, public),)
        mid = self._next_request_mid
        self._int_auth_i = int_auth_step(
            self.prf_id,
            sk_p=self.keys.sk_pi,
            previous=self._int_auth_i,
            message=self._header(IKE_INTERMEDIATE, mid, response=False),
            inner=inner,
        )
        self._request(IKE_INTERMEDIATE, inner, self._on_intermediate_response, now)
        if self.closed:
            return  # the request did not fit UDP and this attempt went to TCP
        self._record(
            now,
            "state_updated",
            {
                "exchange": "IKE_INTERMEDIATE",
                "event": "sent",
                "round": self.intermediate_done + 1,
                "of": len(self.additional_kes),
                "additional_ke": method,
                "ke_len": len(public),
            },
        )

    def _on_intermediate_response(self, message: IkeMessage, inner: tuple[Payload, ...], now: float) -> None:
        assert self.keys is not None
        method = self.additional_kes[self.intermediate_done]
        errors = [p for p in inner if isinstance(p, NotifyPayload) and p.is_error]
        ke = _first(inner, KePayload)
        try:
            if errors:
                raise RemoteProtocolError(f"responder refused: {notify_name(errors[0].notify_type)}")
            if ke is None or ke.dh_group != method:
                raise RemoteProtocolError(f"IKE_INTERMEDIATE response without a KE payload of method {method}")
            shared = initiator_shared_secret(method, self._addke_private, ke.key_data)
        except RemoteProtocolError as exc:
            notify = errors[0].notify_type if errors else None
            self._record(now, "state_updated", {"exchange": "IKE_INTERMEDIATE", "result": "failed", "reason": str(exc)})
            self._set_state(Input.INIT_REFUSED, now, detail=str(exc))
            self._finish(str(exc), now, error=True, notify_type=notify)
            return
        self._int_auth_r = int_auth_step(
            self.prf_id, sk_p=self.keys.sk_pr, previous=self._int_auth_r, message=message, inner=inner
        )
        self._addke_private = b""
        self._update_keys(shared, method, now)
        self._record(
            now,
            "state_updated",
            {"exchange": "IKE_INTERMEDIATE", "result": "ok", "round": self.intermediate_done, "additional_ke": method},
        )
        self._next_request_mid = message.message_id + 1
        if self.intermediate_done < len(self.additional_kes):
            self._send_intermediate(now)
            return
        self._set_state(Input.INTERMEDIATE_DONE, now)
        self._send_auth_request(now)

    def _receive_intermediate_request(self, message: IkeMessage, inner: tuple[Payload, ...], now: float) -> None:
        """Responder: answer SK{KEi(n)} with SK{KEr(n)} under the current keys, then update them."""
        assert self.keys is not None
        if self.intermediate_done >= len(self.additional_kes):
            self._respond(message, (NotifyPayload(INVALID_SYNTAX),), now)  # no more rounds were agreed
            return
        method = self.additional_kes[self.intermediate_done]
        ke = _first(inner, KePayload)
        try:
            if ke is None or ke.dh_group != method:
                raise RemoteProtocolError(f"IKE_INTERMEDIATE request without a KE payload of method {method}")
            answer, shared = responder_key_exchange(method, ke.key_data, self._rng)
        except RemoteProtocolError as exc:
            self._record(now, "state_updated", {"exchange": "IKE_INTERMEDIATE", "result": "failed", "reason": str(exc)})
            self._respond(message, (NotifyPayload(INVALID_SYNTAX),), now)
            self._set_state(Input.AUTH_FAILED, now, detail=str(exc))
            self._finish(str(exc), now, error=True, notify_type=INVALID_SYNTAX)
            return
        reply = (KePayload(method, answer),)
        self._int_auth_i = int_auth_step(
            self.prf_id, sk_p=self.keys.sk_pi, previous=self._int_auth_i, message=message, inner=inner
        )
        self._int_auth_r = int_auth_step(
            self.prf_id,
            sk_p=self.keys.sk_pr,
            previous=self._int_auth_r,
            message=self._header(IKE_INTERMEDIATE, message.message_id, response=True),
            inner=reply,
        )
        self._keys_by_mid[message.message_id] = self.keys
        self._respond(message, reply, now)
        self._update_keys(shared, method, now)
        self._record(
            now,
            "state_updated",
            {"exchange": "IKE_INTERMEDIATE", "result": "ok", "round": self.intermediate_done, "additional_ke": method},
        )

    def receive_init_request(self, data: bytes, message: IkeMessage, *, now: float) -> None:
        """Responder: answer a (cookie-checked) IKE_SA_INIT request. Never raises."""
        if self.state is not IkeSaState.IDLE:
            return
        self.spi_i = message.spi_i
        self._record_message(now, "segment_received", IKE_SA_INIT, 0, False, len(data))
        ke = message.payload(KePayload)
        sa_payload = message.payload(SaPayload)
        try:
            if sa_payload is None:
                raise RemoteProtocolError("no SA payload")
            chosen = choose_proposal(
                self.config,
                sa_payload,
                PROTO_IKE,
                ke_group=ke.dh_group if ke is not None else None,
                dh=DH_REQUIRED if ke is not None else DH_IGNORED,  # no KE: INVALID_SYNTAX below
                spi_len=0,
            )
        except InvalidKePayload as exc:
            chosen = None
            group = exc.group
        except RemoteProtocolError as exc:
            self._drop(now, "no_proposal_chosen", str(exc))
            self._send_stateless(message, [NotifyPayload(NO_PROPOSAL_CHOSEN)], now)
            self._set_state(Input.INIT_REFUSED, now)
            self._finish("no proposal chosen", now, error=True, notify_type=NO_PROPOSAL_CHOSEN)
            return
        nonce = message.payload(NoncePayload)
        if ke is None or nonce is None or not MIN_NONCE_LEN <= len(nonce.nonce) <= MAX_NONCE_LEN:
            self._drop(now, "invalid_syntax", "IKE_SA_INIT request without usable KE or Nonce")
            self._send_stateless(message, [NotifyPayload(INVALID_SYNTAX)], now)
            self._set_state(Input.INIT_REFUSED, now)
            self._finish("invalid IKE_SA_INIT request", now, error=True, notify_type=INVALID_SYNTAX)
            return
        if chosen is None:
            self._record(
                now,
                "state_updated",
                {"exchange": "IKE_SA_INIT", "result": "INVALID_KE_PAYLOAD", "dh_group": group, "sa": self.label},
            )
            self._send_stateless(message, [NotifyPayload(INVALID_KE_PAYLOAD, group.to_bytes(2, "big"))], now)
            self._set_state(Input.INIT_REFUSED, now)
            self._finish("asked for another DH group", now, error=False, notify_type=INVALID_KE_PAYLOAD)
            return
        self._take_peer_capabilities(message)
        offered = next(p for p in sa_payload.proposals if p.number == chosen.number and p.protocol_id == PROTO_IKE)
        picks = select_additional_key_exchanges(offered, self.config.accepted_additional_kes)
        if picks is not None and not self.peer_intermediate and any(m != KE_NONE for m in picks.values()):
            picks = None  # RFC 9370 §2.2.1: additional key exchanges need IKE_INTERMEDIATE
        if picks is None or sorted(picks) != list(range(TRANSFORM_ADDKE1, TRANSFORM_ADDKE1 + len(picks))):
            reason = f"additional key exchanges {offered_additional_key_exchanges(offered)} not acceptable"
            self._drop(now, "no_proposal_chosen", reason)
            self._send_stateless(message, [NotifyPayload(NO_PROPOSAL_CHOSEN)], now)
            self._set_state(Input.INIT_REFUSED, now)
            self._finish("no proposal chosen", now, error=True, notify_type=NO_PROPOSAL_CHOSEN)
            return
        group = chosen.dh_group
        self._new_dh(group)
        try:
            shared = dh_shared_secret(group, self._dh_private, ke.key_data)
        except RemoteProtocolError as exc:
            self._drop(now, "bad_ke", str(exc))
            self._send_stateless(message, [NotifyPayload(INVALID_SYNTAX)], now)
            self._set_state(Input.INIT_REFUSED, now)
            self._finish("unusable KE value", now, error=True, notify_type=INVALID_SYNTAX)
            return
        self._adopt(chosen)
        self.additional_kes = tuple(m for _, m in sorted(picks.items()) if m != KE_NONE)
        self._ni = nonce.nonce
        self._nr = self._rng.randbytes(NONCE_LEN)
        self._init_request = data
        self.peer_childless = bool(message.notifies(CHILDLESS_IKEV2_SUPPORTED))
        self._check_nat(message, now)
        self._record_separate_transports(now)
        answer = chosen.proposal()
        if picks:
            answer = with_additional_key_exchanges(answer, [(m,) for _, m in sorted(picks.items())])
        response = [
            SaPayload((answer,)),
            KePayload(group, dh_public_value(group, self._dh_private)),
            NoncePayload(self._nr),
            *self._nat_notifies(self.spi_r),
            *self._init_notifies(peer=message.payloads),
        ]
        response.append(NotifyPayload(CHILDLESS_IKEV2_SUPPORTED))  # childless IKE_AUTH is accepted (RFC 6023)
        out = encode_ike_message(IkeMessage(self.spi_i, self.spi_r, IKE_SA_INIT, 0, tuple(response), response=True))
        self._init_response = out
        self._derive_keys(shared, now)
        self._set_state(Input.RECV_INIT_REQUEST, now)
        self._peer_next_mid = 1
        self._cached_response = (0, out)
        self._cached_parts = (out,)
        self._out.append(out)
        self._record_message(now, "segment_sent", IKE_SA_INIT, 0, True, len(out))
        self._half_open_until = now + self.config.half_open_timeout_s

    def _send_stateless(self, request: IkeMessage, payloads: list[Payload], now: float) -> None:
        out = encode_ike_message(IkeMessage(request.spi_i, ZERO_SPI, IKE_SA_INIT, 0, tuple(payloads), response=True))
        self._out.append(out)
        self._record_message(now, "segment_sent", IKE_SA_INIT, 0, True, len(out))

    # --- IKE_AUTH -----------------------------------------------------------------------------------------

    def _own_id(self) -> tuple[int, bytes]:
        """Our IDi/IDr: ID_FQDN ``local_id``, or ID_DER_ASN1_DN our certificate's subject."""
        if self.config.id_type == "dn":
            return ID_DER_ASN1_DN, self.config.credential.certificate.subject.public_bytes()
        return ID_FQDN, self.config.local_id

    def _id_body(self, identity: bytes, id_type: int = ID_FQDN) -> bytes:
        return bytes((id_type, 0, 0, 0)) + identity

    def _esp_proposals(self, spi: int, *, pfs_group: int = 0) -> tuple[Proposal, ...]:
        """With PFS the KE's group leads, our other groups follow (the responder may ask for one)."""
        groups = (pfs_group, *(g for g in self.config.dh_groups if g != pfs_group)) if pfs_group else ()
        return offered_proposals(self.config, PROTO_ESP, spi=spi.to_bytes(4, "big"), dh_groups=groups)

    def _new_spi(self) -> int:
        while True:
            spi = self._rng.getrandbits(32)
            if spi > 0xFF and spi not in self.children:  # 1-255 reserved (RFC 4303 §2.1)
                return spi

    def _signed_octets(self, *, responder: bool, identity: bytes, id_type: int = ID_FQDN) -> bytes:
        """RFC 7296 §2.15's octets of the initiator's or the responder's AUTH, with IntAuth after
        IKE_INTERMEDIATE exchanges (RFC 9242 §3.3.2); the last SK_pi/SK_pr are the keys in force."""
        assert self.keys is not None
        octets = signed_octets(
            prf_id=self.prf_id,
            real_message=self._init_response if responder else self._init_request,
            peer_nonce=self._ni if responder else self._nr,
            sk_p=self.keys.sk_pr if responder else self.keys.sk_pi,
            id_body=self._id_body(identity, id_type),  # the ID payload's type as sent (RFC 7296 §2.15)
        )
        if self.intermediate_done:
            octets += int_auth(
                int_auth_i=self._int_auth_i or b"",
                int_auth_r=self._int_auth_r or b"",
                ike_auth_message_id=ike_auth_message_id(self.intermediate_done),
            )
        return octets

    def _own_auth(self) -> list[Payload]:
        """Our [CERT...,] AUTH: a PSK MIC (method 2) or an RFC 7427 signature (method 14) with our chain."""
        id_type, identity = self._own_id()
        octets = self._signed_octets(responder=not self.initiator, identity=identity, id_type=id_type)
        if self.config.auth == "signature":
            credential = self.config.credential
            return [
                *chain_payloads(credential),
                AuthPayload(
                    AUTH_DIGITAL_SIGNATURE,
                    sign_auth(
                        credential.private_key,
                        octets,
                        choose_algorithm(credential.private_key, self.peer_hash_algorithms),
                    ),
                ),
            ]
        mic = prf(self.prf_id, prf(self.prf_id, self.config.psk, KEY_PAD), octets)
        return [AuthPayload(AUTH_SHARED_KEY_MIC, mic)]

    def _check_peer_auth(self, inner: tuple[Payload, ...], id_type: int, identity: bytes, auth: AuthPayload) -> str:
        """Why the peer's AUTH (and chain) does not verify, or "" when it does."""
        octets = self._signed_octets(responder=self.initiator, identity=identity, id_type=id_type)
        if self.config.auth == "psk":
            expected = prf(self.prf_id, prf(self.prf_id, self.config.psk, KEY_PAD), octets)
            if auth.method != AUTH_SHARED_KEY_MIC:
                return f"AUTH method {auth.method}, we expect a shared key MIC (2)"
            if id_type != ID_FQDN:
                return f"ID type {id_type}, we expect ID_FQDN ({ID_FQDN})"
            return "" if hmac.compare_digest(auth.data, expected) else "the shared key MIC differs"
        if auth.method != AUTH_DIGITAL_SIGNATURE:
            return f"AUTH method {auth.method}, we expect a digital signature (14)"
        try:
            certificates = certificates_from_payloads(inner)
            if not certificates:
                raise RemoteProtocolError("no CERT payload")
            path = validate_chain(
                certificates[0], certificates[1:], self.config.trust_anchors, now=self.config.validation_time
            )
            if not identity_matches(certificates[0], id_type, identity):
                raise RemoteProtocolError(f"the certificate does not name {describe_identity(id_type, identity)}")
            algorithm = verify_auth(certificates[0].public_key(), auth.data, octets)
        except RemoteProtocolError as exc:
            return str(exc)
        except (ValueError, TypeError) as exc:  # a certificate cryptography cannot use (odd key or extension)
            return f"unusable certificate: {exc}"
        self.peer_certificates = tuple(path)
        self._peer_signature = algorithm.name
        return ""

    def _send_auth_request(self, now: float) -> None:
        assert self.keys is not None
        inner: list[Payload] = [IdiPayload(*self._own_id())]
        own_auth = self._own_auth()
        inner += own_auth[:-1]  # CERTs
        if self.config.auth == "signature":
            inner.append(certreq_payload(self.config.trust_anchors))
        if self.config.remote_id is not None:
            inner.append(IdrPayload(ID_FQDN, self.config.remote_id))
        inner.append(own_auth[-1])
        self._pending_child_spi = None
        if self.config.child_sa or not self.peer_childless:
            spi = self._new_spi()
            self._pending_child_spi = spi
            self._child_offered = self._esp_proposals(spi)
            inner += [
                SaPayload(self._child_offered),
                TsiPayload(self.config.traffic_selectors_i),
                TsrPayload(self.config.traffic_selectors_r),
            ]
        self._next_request_mid = ike_auth_message_id(self.intermediate_done)  # after the IKE_INTERMEDIATEs
        self._request(IKE_AUTH, tuple(inner), self._on_auth_response, now)

    def _on_auth_response(self, message: IkeMessage, inner: tuple[Payload, ...], now: float) -> None:
        errors = [p for p in inner if isinstance(p, NotifyPayload) and p.is_error]
        idr = _first(inner, IdrPayload)
        auth = _first(inner, AuthPayload)
        if idr is None or auth is None:
            notify = errors[0].notify_type if errors else None
            reason = (
                f"responder refused: {notify_name(notify)}"
                if notify is not None
                else "IKE_AUTH response without IDr/AUTH"
            )
            self._record(
                now, "state_updated", {"exchange": "IKE_AUTH", "result": "failed", "reason": reason, "sa": self.label}
            )
            self._set_state(Input.AUTH_FAILED, now, detail=reason)
            self._finish(reason, now, error=True, notify_type=notify)
            return
        id_ok = self.config.remote_id is None or idr.data == self.config.remote_id
        failure = self._check_peer_auth(inner, idr.id_type, idr.data, auth) if id_ok else ""
        if failure or not id_ok:
            reason = f"responder AUTH did not verify: {failure}" if id_ok else f"unexpected IDr {idr.data!r}"
            self._record(
                now, "state_updated", {"exchange": "IKE_AUTH", "result": "failed", "reason": reason, "sa": self.label}
            )
            self._set_state(Input.AUTH_FAILED, now, detail=reason)
            self._finish(reason, now, error=True, notify_type=AUTHENTICATION_FAILED)
            return
        self.peer_id = idr.data
        self._set_state(Input.RECV_AUTH_RESPONSE, now)
        self._established(now)
        spi = self._pending_child_spi
        if spi is not None:
            if errors:
                self._child_failed(errors[0].notify_type, "IKE_AUTH", now)
            else:
                self._install_child_from_response(
                    spi, inner, self._child_offered, self._ni, self._nr, now, rekeyed=None
                )

    def _receive_auth_request(self, message: IkeMessage, inner: tuple[Payload, ...], now: float) -> None:
        idi = _first(inner, IdiPayload)
        auth = _first(inner, AuthPayload)
        if idi is None or auth is None:
            self._respond(message, (NotifyPayload(INVALID_SYNTAX),), now)
            self._set_state(Input.AUTH_FAILED, now, detail="IKE_AUTH without IDi/AUTH")
            self._finish("IKE_AUTH request without IDi or AUTH", now, error=True, notify_type=INVALID_SYNTAX)
            return
        if self.intermediate_done < len(self.additional_kes) or message.message_id != ike_auth_message_id(
            self.intermediate_done
        ):
            self._drop(now, "unexpected_request", "IKE_AUTH before the IKE_INTERMEDIATE exchanges were done")
            return
        id_ok = self.config.remote_id is None or idi.data == self.config.remote_id
        failure = self._check_peer_auth(inner, idi.id_type, idi.data, auth) if id_ok else ""
        if failure or not id_ok:
            reason = f"initiator AUTH did not verify: {failure}" if id_ok else f"unexpected IDi {idi.data!r}"
            self._record(
                now, "state_updated", {"exchange": "IKE_AUTH", "result": "failed", "reason": reason, "sa": self.label}
            )
            self._respond(message, (NotifyPayload(AUTHENTICATION_FAILED),), now)
            self._set_state(Input.AUTH_FAILED, now, detail=reason)
            self._finish(reason, now, error=True, notify_type=AUTHENTICATION_FAILED)
            return
        response: list[Payload] = [IdrPayload(*self._own_id()), *self._own_auth()]
        child_payloads, child, _ = self._answer_child_request(inner, self._ni, self._nr, now, in_ike_auth=True)
        response += child_payloads
        self._respond(message, tuple(response), now)
        self._half_open_until = None
        self.peer_id = idi.data
        self._set_state(Input.RECV_AUTH_REQUEST, now)
        self._established(now)
        if child is not None:
            self._add_child(child, now, rekeyed=None)

    def _established(self, now: float) -> None:
        self.established_at = now
        data: dict[str, Any] = {"exchange": "IKE_AUTH", "result": "ok", "sa": self.label}
        if self.intermediate_done:
            data["intermediate_exchanges"] = self.intermediate_done
        if self.config.auth != "psk":
            data |= {"auth": self.config.auth, "peer_signature": self._peer_signature}
            data["peer_chain"] = [c.subject.rfc4514_string() for c in self.peer_certificates]
        if self.fragments_sent:
            data["fragments_sent"] = self.fragments_sent
        self._record(now, "state_updated", data)
        self._events.append(
            IkeSaEstablished(
                spi_i=self.spi_i,
                spi_r=self.spi_r,
                transport=self.transport,
                port=self.remote[1] if self.initiator else self.local[1],
                nat_detected=self.nat_detected_local or self.nat_detected_remote,
                esp_transport=self.esp_transport if self.esp_transport != self.transport else "",
            )
        )
        self._arm_dpd(now)

    # --- Child SAs ----------------------------------------------------------------------------------------

    def _answer_child_request(
        self, inner: tuple[Payload, ...], ni: bytes, nr: bytes, now: float, *, in_ike_auth: bool
    ) -> tuple[list[Payload], ChildSa | None, Callable[[list[bytes]], ChildSa] | None]:
        """The response payloads for a Child SA request, the Child SA (None when refused or absent), and,
        when the chosen proposal has additional key exchanges, what makes the Child SA from their secrets.

        In CREATE_CHILD_SA a KE payload asks for PFS (§1.3.1): the answer then carries our KE. ADDKE
        transforms beside it (RFC 9370 §2.2.4) are answered with our picks; the Child SA then waits for
        the IKE_FOLLOWUP_KE exchanges (the caller adds N(ADDITIONAL_KEY_EXCHANGE)).
        """
        sa = _first(inner, SaPayload)
        tsi = _first(inner, TsiPayload)
        tsr = _first(inner, TsrPayload)
        if sa is None:
            return [], None, None
        if tsi is None or tsr is None:
            return [NotifyPayload(INVALID_SYNTAX)], None, None
        ke = None if in_ike_auth else _first(inner, KePayload)
        picks: dict[int, dict[int, int]] = {}
        if not in_ike_auth:
            sa, picks = acceptable_addke(
                sa,
                accepted=self.config.accepted_additional_kes,
                enabled=self.config.followup_ke,
                with_ke=ke is not None,
            )
        try:
            chosen = choose_proposal(
                self.config,
                sa,
                PROTO_ESP,
                ke_group=ke.dh_group if ke is not None else None,
                dh=DH_IGNORED if in_ike_auth else DH_OPTIONAL,
                spi_len=4,
            )
        except InvalidKePayload as exc:
            self._record(
                now,
                "state_updated",
                {"exchange": "child", "result": "INVALID_KE_PAYLOAD", "dh_group": exc.group, "sa": self.label},
            )
            return [NotifyPayload(INVALID_KE_PAYLOAD, exc.group.to_bytes(2, "big"))], None, None
        except RemoteProtocolError as exc:
            self._record(
                now,
                "state_updated",
                {"exchange": "child", "result": "NO_PROPOSAL_CHOSEN", "sa": self.label, "detail": str(exc)},
            )
            return [NotifyPayload(NO_PROPOSAL_CHOSEN)], None, None
        shared = None
        extra: list[Payload] = []
        if chosen.dh_group:
            private = generate_dh_private_key(chosen.dh_group, self._rng)
            try:
                shared = dh_shared_secret(chosen.dh_group, private, ke.key_data)
            except RemoteProtocolError as exc:
                self._record(
                    now, "state_updated", {"exchange": "child", "result": "INVALID_SYNTAX", "detail": str(exc)}
                )
                return [NotifyPayload(INVALID_SYNTAX)], None, None
            extra.append(KePayload(chosen.dh_group, dh_public_value(chosen.dh_group, private)))
        spi_in = self._new_spi()
        spi_out = int.from_bytes(chosen.spi, "big")
        answer = chosen.proposal(spi=spi_in.to_bytes(4, "big"))
        addke = picks.get(chosen.number, {})
        methods = methods_of(addke)
        if addke:
            answer = answer_with_addke(answer, addke)
        reply: list[Payload] = [SaPayload((answer,)), tsi, tsr, *extra]
        if methods:

            def make(secrets: list[bytes]) -> ChildSa:
                return self._make_child(
                    spi_in,
                    spi_out,
                    chosen,
                    ni,
                    nr,
                    we_initiated=False,
                    shared_secret=shared,
                    additional_secrets=secrets,
                    additional_kes=methods,
                )

            return reply, None, make
        child = self._make_child(spi_in, spi_out, chosen, ni, nr, we_initiated=False, shared_secret=shared)
        return reply, child, None

    def _install_child_from_response(
        self,
        spi_in: int,
        inner: tuple[Payload, ...],
        offered: tuple[Proposal, ...],
        ni: bytes,
        nr: bytes,
        now: float,
        *,
        rekeyed: int | None,
        pfs_private: tuple[int, bytes] | None = None,
        additional_secrets: Sequence[bytes] = (),
        additional_kes: tuple[int, ...] = (),
    ) -> None:
        try:
            chosen, shared = self._child_response_suite(inner, offered, pfs_private)
        except RemoteProtocolError as exc:
            self._record(now, "state_updated", {"exchange": "child", "result": "refused", "detail": str(exc)})
            self._child_failed(NO_PROPOSAL_CHOSEN, "child", now)
            return
        child = self._make_child(
            spi_in,
            int.from_bytes(chosen.spi, "big"),
            chosen,
            ni,
            nr,
            we_initiated=True,
            shared_secret=shared,
            additional_secrets=additional_secrets,
            additional_kes=additional_kes,
        )
        self._add_child(child, now, rekeyed=rekeyed)

    def _child_response_suite(
        self, inner: tuple[Payload, ...], offered: tuple[Proposal, ...], pfs_private: tuple[int, bytes] | None
    ) -> tuple[Suite, bytes | None]:
        """The responder's chosen suite and the PFS secret (None without PFS). Raises RemoteProtocolError."""
        shared = None
        chosen = check_chosen(
            self.config,
            _first(inner, SaPayload),
            offered,
            PROTO_ESP,
            dh_group=pfs_private[0] if pfs_private else 0,
            spi_len=4,
        )
        if pfs_private is not None:
            ke = _first(inner, KePayload)
            if ke is None or ke.dh_group != pfs_private[0]:
                raise RemoteProtocolError("PFS asked for, but no KE payload in its group came back")
            shared = dh_shared_secret(pfs_private[0], pfs_private[1], ke.key_data)
        return chosen, shared

    def _make_child(
        self,
        spi_in: int,
        spi_out: int,
        suite: Suite,
        ni: bytes,
        nr: bytes,
        *,
        we_initiated: bool,
        shared_secret: bytes | None = None,
        additional_secrets: Sequence[bytes] = (),
        additional_kes: tuple[int, ...] = (),
    ) -> ChildSa:
        """Keys per §2.17: the exchange initiator's outbound keys come first in KEYMAT.

        ``additional_secrets`` are those of IKE_FOLLOWUP_KE exchanges (of the methods
        ``additional_kes``), mixed in after ``shared_secret`` (RFC 9370 §2.2.4).
        """
        assert self.keys is not None
        if additional_secrets:
            assert shared_secret is not None
            keys = derive_child_sa_keys_multi(
                prf_id=self.prf_id,
                sk_d=self.keys.sk_d,
                ni=ni,
                nr=nr,
                shared_secrets=(shared_secret, *additional_secrets),
                encr_key_len=encr_key_len(suite.encr_id, suite.key_bits),
                integ_key_len=integ_key_len(suite.integ_id),
            )
        else:
            keys = derive_child_sa_keys(
                prf_id=self.prf_id,
                sk_d=self.keys.sk_d,
                ni=ni,
                nr=nr,
                encr_key_len=encr_key_len(suite.encr_id, suite.key_bits),
                integ_key_len=integ_key_len(suite.integ_id),
                shared_secret=shared_secret,
            )
        if we_initiated:
            out_key, out_integ, in_key, in_integ = keys.encr_i2r, keys.integ_i2r, keys.encr_r2i, keys.integ_r2i
        else:
            out_key, out_integ, in_key, in_integ = keys.encr_r2i, keys.integ_r2i, keys.encr_i2r, keys.integ_i2r
        window = self.config.replay_window_packets
        algorithms = {"encr_id": suite.encr_id, "integ_id": suite.integ_id}
        return ChildSa(
            spi_in=spi_in,
            spi_out=spi_out,
            key_bits=suite.key_bits,
            inbound=EspSa(
                spi=spi_in,
                keymat=in_key,
                replay_window_packets=window,
                tracer=self._tracer,
                integ_key=in_integ,
                **algorithms,
            ),
            outbound=EspSa(spi=spi_out, keymat=out_key, replay_window_packets=0, integ_key=out_integ, **algorithms),
            keymat_in=in_key,
            keymat_out=out_key,
            suite=replace(suite, spi=b""),
            integ_in=in_integ,
            integ_out=out_integ,
            additional_kes=additional_kes if additional_secrets else (),
        )

    def _add_child(self, child: ChildSa, now: float, *, rekeyed: int | None) -> None:
        self.children[child.spi_in] = child
        self.child = child
        suite = child.suite
        data: dict[str, Any] = {
            "sa": self.label,
            "spi_in": f"0x{child.spi_in:08x}",
            "spi_out": f"0x{child.spi_out:08x}",
            **(suite.describe() if suite is not None else {"encr": "AES-GCM-16", "key_bits": child.key_bits}),
            "encr_id": suite.encr_id if suite is not None else ENCR_AES_GCM_16,
            "integ_id": suite.integ_id if suite is not None else 0,
            "local": self.local[0],
            "remote": self.remote[0],
        }
        if suite is not None and suite.dh_group:
            data["pfs"] = True
        if child.additional_kes:
            data["additional_kes"] = list(child.additional_kes)
        if rekeyed is not None:
            data["rekeyed"] = f"0x{rekeyed:08x}"
        if self.config.export_keys:
            data |= {"key_in": child.keymat_in.hex(), "key_out": child.keymat_out.hex()}
            if child.integ_in:
                data |= {"integ_in": child.integ_in.hex(), "integ_out": child.integ_out.hex()}
        self._tracer.record(now, "esp", "key_updated", data)
        self._events.append(ChildSaEstablished(spi_in=child.spi_in, spi_out=child.spi_out, rekeyed_spi_in=rekeyed))

    def _child_failed(self, notify_type: int, exchange: str, now: float) -> None:
        self._record(
            now,
            "state_updated",
            {"exchange": exchange, "result": notify_name(notify_type), "sa": self.label, "child": "refused"},
        )
        self._events.append(ChildSaFailed(notify_type=notify_type))

    def _send_rekey(self, now: float, *, group: int | None = None) -> None:
        old = self.child
        if old is None or not self.established:
            return
        spi = self._new_spi()
        ni = self._rng.randbytes(NONCE_LEN)
        pfs_group = (group or self.dh_group) if self.config.pfs else 0
        pfs_private = (pfs_group, generate_dh_private_key(pfs_group, self._rng)) if pfs_group else None
        # RFC 9370 §2.2.4: the SA's additional key exchanges again, in IKE_FOLLOWUP_KE; a plain fallback after
        plain_offer = self._esp_proposals(spi, pfs_group=pfs_group)
        offered = rekey_offer(plain_offer, self._rekey_additional_kes(pfs_group))
        inner: list[Payload] = [
            NotifyPayload(REKEY_SA, protocol_id=PROTO_ESP, spi=old.spi_in.to_bytes(4, "big")),
            SaPayload(offered),
            NoncePayload(ni),
        ]
        if pfs_private is not None:
            inner.append(KePayload(pfs_group, dh_public_value(pfs_group, pfs_private[1])))
        inner += [TsiPayload(self.config.traffic_selectors_i), TsrPayload(self.config.traffic_selectors_r)]

        def on_response(message: IkeMessage, payloads: tuple[Payload, ...], t: float) -> None:
            errors = [p for p in payloads if isinstance(p, NotifyPayload) and p.is_error]
            nonce = _first(payloads, NoncePayload)
            invalid_ke = next((e for e in errors if e.notify_type == INVALID_KE_PAYLOAD and len(e.data) >= 2), None)
            if invalid_ke is not None and self._child_rekey_retries < MAX_INIT_RETRIES:
                wanted = int.from_bytes(invalid_ke.data[:2], "big")
                if wanted in self.config.dh_groups and wanted != pfs_group:
                    self._child_rekey_retries += 1
                    self._record(
                        t,
                        "state_updated",
                        {"exchange": "CREATE_CHILD_SA", "result": "INVALID_KE_PAYLOAD", "dh_group": wanted},
                    )
                    self._enqueue(lambda t2: self._send_rekey(t2, group=wanted), t)
                    return
            self._child_rekey_retries = 0
            if errors or nonce is None:
                self._child_failed(errors[0].notify_type if errors else INVALID_SYNTAX, "CREATE_CHILD_SA", t)
                return
            try:
                hybrid = offered != plain_offer
                methods = chosen_methods(_first(payloads, SaPayload), offered) if hybrid else ()
                link = find_link(payloads)
                if methods:
                    self._child_response_suite(payloads, offered, pfs_private)  # checked before any round
                    if pfs_private is None:
                        raise RemoteProtocolError("additional key exchanges chosen without a KE")
                    if link is None:
                        raise RemoteProtocolError("additional key exchanges chosen without N(ADDITIONAL_KEY_EXCHANGE)")
            except RemoteProtocolError as exc:
                self._record(t, "state_updated", {"exchange": "child", "result": "refused", "detail": str(exc)})
                self._child_failed(NO_PROPOSAL_CHOSEN, "CREATE_CHILD_SA", t)
                return

            def install(secrets: list[bytes], t2: float) -> None:
                data = {"exchange": "CREATE_CHILD_SA", "result": "ok", "sa": self.label, "pfs": bool(pfs_group)}
                if methods:
                    data["additional_kes"] = list(methods)
                self._record(t2, "state_updated", data)
                self._install_child_from_response(
                    spi,
                    payloads,
                    offered,
                    ni,
                    nonce.nonce,
                    t2,
                    rekeyed=old.spi_in,
                    pfs_private=pfs_private,
                    additional_secrets=secrets,
                    additional_kes=methods,
                )
                if self.child is not old:
                    self._enqueue(lambda t3: self._send_child_delete(old, t3), t2)

            if not methods:
                install([], t)
                return
            assert link is not None

            def failed(notify: int | None, reason: str, t2: float) -> None:
                self._child_failed(notify if notify is not None else INVALID_SYNTAX, "CREATE_CHILD_SA", t2)

            self._start_followup("child", methods, link, install, failed, t)

        self._request(CREATE_CHILD_SA, inner, on_response, now)

    # --- IKE SA rekey (RFC 7296 §1.3.2, §2.18) ----------------------------------------------------------------

    def _send_ike_rekey(self, now: float) -> None:
        if not self.established or self._ike_rekey_outstanding:
            return
        if any(state.purpose == "ike_rekey" for state in self._followup_states.values()):
            # the peer's rekey of this SA is in its IKE_FOLLOWUP_KE exchanges: ours would collide (§2.8.2)
            self._ike_rekey_retry_at = now + self._rng.uniform(0.5, 2.0)
            return
        new_spi_i = self._rng.randbytes(8)
        ni = self._rng.randbytes(NONCE_LEN)
        group = self.dh_group
        private = generate_dh_private_key(group, self._rng)
        # the algorithms of this SA: the peer took them once; its additional key exchanges too (RFC 9370 §2.2.4)
        offered = rekey_offer((self.suite.proposal(spi=new_spi_i),), self._rekey_additional_kes(group))
        inner = (SaPayload(offered), NoncePayload(ni), KePayload(group, dh_public_value(group, private)))
        self._ike_rekey_outstanding = True
        self._record(
            now,
            "state_updated",
            {"exchange": "CREATE_CHILD_SA", "event": "ike_rekey_started", "new_spi_i": new_spi_i.hex()},
        )

        def on_response(message: IkeMessage, payloads: tuple[Payload, ...], t: float) -> None:
            self._ike_rekey_outstanding = False
            errors = [p for p in payloads if isinstance(p, NotifyPayload) and p.is_error]
            if errors:
                notify = errors[0].notify_type
                self._record(
                    t,
                    "state_updated",
                    {"exchange": "CREATE_CHILD_SA", "result": notify_name(notify), "ike_rekey": "refused"},
                )
                if notify == TEMPORARY_FAILURE and self.established:  # §2.25: try again a little later
                    self._ike_rekey_retry_at = t + self._rng.uniform(0.5, 2.0)
                return
            try:
                chosen = check_chosen(
                    self.config, _first(payloads, SaPayload), offered, PROTO_IKE, dh_group=group, spi_len=8
                )
                methods = chosen_methods(_first(payloads, SaPayload), offered) if len(offered) > 1 else ()
                link = find_link(payloads)
                if methods and link is None:
                    raise RemoteProtocolError("additional key exchanges chosen without N(ADDITIONAL_KEY_EXCHANGE)")
                nonce = _first(payloads, NoncePayload)
                ke = _first(payloads, KePayload)
                if nonce is None or ke is None or not MIN_NONCE_LEN <= len(nonce.nonce) <= MAX_NONCE_LEN:
                    raise RemoteProtocolError("IKE SA rekey answer without usable Nonce or KE")
                if ke.dh_group != group:
                    raise RemoteProtocolError(f"KE group {ke.dh_group}, we sent {group}")
                shared = dh_shared_secret(group, private, ke.key_data)
            except RemoteProtocolError as exc:
                self._record(
                    t, "state_updated", {"exchange": "CREATE_CHILD_SA", "result": "failed", "ike_rekey": str(exc)}
                )
                return
            nr = nonce.nonce

            def rekeyed(secrets: list[bytes], t2: float) -> None:
                self._ike_rekey_outstanding = False
                new = self._spawn(
                    initiator=True,
                    spi_i=new_spi_i,
                    spi_r=chosen.spi,
                    ni=ni,
                    nr=nr,
                    shared=shared,
                    suite=chosen,
                    now=t2,
                    additional_secrets=secrets,
                    additional_kes=methods,
                )
                self._events.append(
                    IkeSaRekeyed(
                        old_spi_i=self.spi_i, old_spi_r=self.spi_r, spi_i=new.spi_i, spi_r=new.spi_r, initiated=True
                    )
                )
                self._queue.clear()
                self._set_state(Input.REKEY_DONE, t2)
                self._request(INFORMATIONAL, (DeletePayload(PROTO_IKE),), self._on_delete_response, t2)

            if not methods:
                rekeyed([], t)
                return
            assert link is not None

            def failed(notify: int | None, reason: str, t2: float) -> None:
                self._ike_rekey_outstanding = False
                self._record(
                    t2,
                    "state_updated",
                    {
                        "exchange": "IKE_FOLLOWUP_KE",
                        "result": notify_name(notify) if notify is not None else "failed",
                        "ike_rekey": "refused",
                    },
                )
                if notify in (STATE_NOT_FOUND, TEMPORARY_FAILURE) and self.established:  # start it over later
                    self._ike_rekey_retry_at = t2 + self._rng.uniform(0.5, 2.0)

            self._ike_rekey_outstanding = True  # until the last IKE_FOLLOWUP_KE: a crossing rekey still collides
            self._start_followup("ike_rekey", methods, link, rekeyed, failed, t)

        self._request(CREATE_CHILD_SA, inner, on_response, now)

    def _receive_ike_rekey(self, message: IkeMessage, inner: tuple[Payload, ...], sa: SaPayload, now: float) -> None:
        nonce = _first(inner, NoncePayload)
        ke = _first(inner, KePayload)
        if nonce is None or ke is None or not MIN_NONCE_LEN <= len(nonce.nonce) <= MAX_NONCE_LEN:
            self._respond(message, (NotifyPayload(INVALID_SYNTAX),), now)
            return
        if self._ike_rekey_outstanding or any(st.purpose == "ike_rekey" for st in self._followup_states.values()):
            # both ends rekey at once (§2.8.2): refuse this one while ours is under way; both retry later
            self._record(
                now,
                "state_updated",
                {"exchange": "CREATE_CHILD_SA", "result": "TEMPORARY_FAILURE", "ike_rekey": "collision"},
            )
            self._respond(message, (NotifyPayload(TEMPORARY_FAILURE),), now)
            return
        sa, picks = acceptable_addke(
            sa, accepted=self.config.accepted_additional_kes, enabled=self.config.followup_ke, with_ke=True
        )
        try:
            chosen = choose_proposal(self.config, sa, PROTO_IKE, ke_group=ke.dh_group, dh=DH_REQUIRED, spi_len=8)
        except InvalidKePayload as exc:
            self._respond(message, (NotifyPayload(INVALID_KE_PAYLOAD, exc.group.to_bytes(2, "big")),), now)
            return
        except RemoteProtocolError as exc:
            self._record(
                now,
                "state_updated",
                {"exchange": "CREATE_CHILD_SA", "result": "NO_PROPOSAL_CHOSEN", "detail": str(exc)},
            )
            self._respond(message, (NotifyPayload(NO_PROPOSAL_CHOSEN),), now)
            return
        private = generate_dh_private_key(chosen.dh_group, self._rng)
        try:
            shared = dh_shared_secret(chosen.dh_group, private, ke.key_data)
        except RemoteProtocolError:
            self._respond(message, (NotifyPayload(INVALID_SYNTAX),), now)
            return
        self._ike_rekey_retry_at = None  # the peer's rekey does what our retry would have done
        nr = self._rng.randbytes(NONCE_LEN)
        new_spi_r = self._rng.randbytes(8)
        answer = chosen.proposal(spi=new_spi_r)
        addke = picks.get(chosen.number, {})
        methods = methods_of(addke)
        if addke:
            answer = answer_with_addke(answer, addke)
        reply: tuple[Payload, ...] = (
            SaPayload((answer,)),
            NoncePayload(nr),
            KePayload(chosen.dh_group, dh_public_value(chosen.dh_group, private)),
        )
        ni = nonce.nonce

        def rekeyed(secrets: list[bytes], t: float) -> None:
            new = self._spawn(
                initiator=False,
                spi_i=chosen.spi,
                spi_r=new_spi_r,
                ni=ni,
                nr=nr,
                shared=shared,
                suite=chosen,
                now=t,
                additional_secrets=secrets,
                additional_kes=methods,
            )
            self._events.append(
                IkeSaRekeyed(
                    old_spi_i=self.spi_i, old_spi_r=self.spi_r, spi_i=new.spi_i, spi_r=new.spi_r, initiated=False
                )
            )
            self._queue.clear()
            self._dpd_at = None
            self._set_state(Input.RECV_REKEY, t)
            self._rekeyed_until = t + self.config.response_timeout_s

        if methods:  # RFC 9370 §2.2.4: the new SA waits for the IKE_FOLLOWUP_KE exchanges
            link = self._await_followup("ike_rekey", methods, rekeyed, now)
            self._respond(message, (*reply, link_notify(link)), now)
            return
        self._respond(message, reply, now)
        rekeyed([], now)

    def _spawn(
        self,
        *,
        initiator: bool,
        spi_i: bytes,
        spi_r: bytes,
        ni: bytes,
        nr: bytes,
        shared: bytes,
        suite: Suite,
        now: float,
        additional_secrets: Sequence[bytes] = (),
        additional_kes: tuple[int, ...] = (),
    ) -> IkeSa:
        """The IKE SA that replaces this one: keys from SK_d (old) (§2.18), the Child SAs, message IDs from 0.

        After IKE_FOLLOWUP_KE exchanges SKEYSEED mixes their ``additional_secrets`` too (RFC 9370 §2.2.4),
        and the new SA keeps ``additional_kes`` for its own rekeys.
        """
        assert self.keys is not None
        new = IkeSa(
            config=self.config,
            initiator=initiator,
            transport=self.transport,
            local=self.local,
            remote=self.remote,
            rng=random.Random(self._rng.getrandbits(64)),
            tracer=self._tracer,
        )
        new.spi_i, new.spi_r = spi_i, spi_r
        new._adopt(suite)
        new._ni, new._nr = ni, nr
        new.peer_id = self.peer_id
        new.peer_childless = self.peer_childless
        new.nat_detected_local, new.nat_detected_remote = self.nat_detected_local, self.nat_detected_remote
        new.fragmentation, new.peer_fragmentation = self.fragmentation, self.peer_fragmentation  # RFC 7383 §2.3
        new.separate_transports, new.peer_separate_transports = self.separate_transports, self.peer_separate_transports
        new.esp_path = self.esp_path
        new.peer_hash_algorithms = self.peer_hash_algorithms
        if additional_secrets:
            seed = rekey_skeyseed_multi(
                self.prf_id, old_sk_d=self.keys.sk_d, shared_secrets=(shared, *additional_secrets), ni=ni, nr=nr
            )
            new.additional_kes = additional_kes
        else:
            seed = rekey_skeyseed(self.prf_id, old_sk_d=self.keys.sk_d, shared_secret=shared, ni=ni, nr=nr)
        new._derive_keys(shared, now, seed=seed)
        new.children, self.children = self.children, {}
        new.child, self.child = self.child, None
        new.established_at = now
        new.last_received_at = now
        new._set_state(Input.CREATED_BY_REKEY, now, detail=f"rekeyed {self.label}")
        new._arm_dpd(now)
        self.successor = new
        self._record(
            now,
            "state_updated",
            {
                "exchange": "CREATE_CHILD_SA",
                "result": "ok",
                "ike_rekey": "initiator" if initiator else "responder",
                "new_sa": new.label,
                "spi_i": spi_i.hex(),
                "spi_r": spi_r.hex(),
                "children": [f"0x{spi:08x}" for spi in new.children],
                **suite.describe(),
                **({"additional_kes": list(new.additional_kes)} if new.additional_kes else {}),
            },
        )
        return new

    def _send_child_delete(self, child: ChildSa, now: float) -> None:
        if child.spi_in not in self.children or not self.established:
            return

        def on_response(message: IkeMessage, payloads: tuple[Payload, ...], t: float) -> None:
            self._remove_child(child.spi_in, t)

        self._request(
            INFORMATIONAL, (DeletePayload(PROTO_ESP, 4, (child.spi_in.to_bytes(4, "big"),)),), on_response, now
        )

    def _remove_child(self, spi_in: int, now: float) -> None:
        child = self.children.pop(spi_in, None)
        if child is None:
            return
        if self.child is child:
            self.child = (
                max(self.children.values(), key=lambda c: c.outbound.sent_seq, default=None) if self.children else None
            )
        self._record(now, "state_updated", {"sa": self.label, "child_deleted": f"0x{spi_in:08x}"})
        self._events.append(ChildSaDeleted(spi_in=spi_in))

    # --- IKE_FOLLOWUP_KE: additional key exchanges after CREATE_CHILD_SA (RFC 9370 §2.2.4, lab.ike.followup_ke) ---

    def _rekey_additional_kes(self, ke_method: int) -> tuple[int, ...]:
        """The ADDKE rounds a rekey offers: those this SA was made with, when a KE goes with it and we do them."""
        if not ke_method or not self.config.followup_ke:
            return ()
        return self.additional_kes

    def _start_followup(
        self,
        purpose: str,
        methods: tuple[int, ...],
        link: bytes,
        finish: Callable[[list[bytes], float], None],
        fail: Callable[[int | None, str, float], None],
        now: float,
    ) -> None:
        """Initiator: the CREATE_CHILD_SA response asked for ``methods``; run one IKE_FOLLOWUP_KE per method."""
        self._followup = FollowupInitiator(purpose, methods, link, finish, fail)
        self._record(
            now,
            "state_updated",
            {
                "exchange": "CREATE_CHILD_SA",
                "event": "additional_key_exchanges",
                "for": purpose,
                "additional_kes": list(methods),
            },
        )
        self._send_followup(now)

    def _send_followup(self, now: float) -> None:
        """SK{KEi(n), N(ADDITIONAL_KEY_EXCHANGE)(link)} under this IKE SA's keys, at its next message ID."""
        f = self._followup
        assert f is not None
        method = f.methods[f.done]
        f.private, public = initiator_key_exchange(method, self._rng)
        inner = (KePayload(method, public), link_notify(f.link))
        self._request(IKE_FOLLOWUP_KE, inner, self._on_followup_response, now)
        self._record(
            now,
            "state_updated",
            {
                "exchange": "IKE_FOLLOWUP_KE",
                "event": "sent",
                "for": f.purpose,
                "round": f.done + 1,
                "of": len(f.methods),
                "additional_ke": method,
                "ke_len": len(public),
            },
        )

    def _on_followup_response(self, message: IkeMessage, inner: tuple[Payload, ...], now: float) -> None:
        f = self._followup
        if f is None:
            return
        method = f.methods[f.done]
        errors = [p for p in inner if isinstance(p, NotifyPayload) and p.is_error]
        ke = _first(inner, KePayload)
        last = f.done + 1 == len(f.methods)
        link = find_link(inner)
        try:
            if errors:
                raise RemoteProtocolError(f"responder refused: {notify_name(errors[0].notify_type)}")
            if ke is None or ke.dh_group != method:
                raise RemoteProtocolError(f"IKE_FOLLOWUP_KE response without a KE payload of method {method}")
            secret = initiator_shared_secret(method, f.private, ke.key_data)
            if not last and link is None:
                raise RemoteProtocolError("IKE_FOLLOWUP_KE response without the link to the next round")
        except RemoteProtocolError as exc:
            self._followup = None
            notify = errors[0].notify_type if errors else None
            self._record(
                now,
                "state_updated",
                {
                    "exchange": "IKE_FOLLOWUP_KE",
                    "result": notify_name(notify) if notify is not None else "failed",
                    "for": f.purpose,
                    "round": f.done + 1,
                    "reason": str(exc),
                },
            )
            f.fail(notify, str(exc), now)
            return
        f.private = b""
        f.secrets.append(secret)
        self._record(
            now,
            "state_updated",
            {"exchange": "IKE_FOLLOWUP_KE", "result": "ok", "for": f.purpose, "round": f.done, "additional_ke": method},
        )
        if not last:
            assert link is not None
            f.link = link
            self._send_followup(now)
            return
        self._followup = None
        f.finish(f.secrets, now)

    def _await_followup(
        self, purpose: str, methods: tuple[int, ...], finish: Callable[[list[bytes], float], None], now: float
    ) -> bytes:
        """Responder: keep what the IKE_FOLLOWUP_KE exchanges need; the link to send in N(ADDITIONAL_KEY_EXCHANGE)."""
        link = self._new_link()
        self._followup_states[link] = FollowupResponder(purpose, methods, link, now + FOLLOWUP_STATE_TIMEOUT_S, finish)
        self._record(
            now,
            "state_updated",
            {
                "exchange": "CREATE_CHILD_SA",
                "event": "additional_key_exchanges",
                "for": purpose,
                "additional_kes": list(methods),
                "responder": True,
            },
        )
        return link

    def _new_link(self) -> bytes:
        while True:
            link = self._rng.randbytes(LINK_LEN)
            if link not in self._followup_states:
                return link

    def _receive_followup_request(self, message: IkeMessage, inner: tuple[Payload, ...], now: float) -> None:
        """Responder: SK{KEi(n), N(link)} -> SK{KEr(n) [, N(next link)]}; after the last, the SA is made."""
        link = find_link(inner)
        state = self._followup_states.pop(link, None) if link is not None else None
        if state is None:
            # RFC 9370 §2.2.4: a link we never gave, already used, or whose state we dropped
            notify = STATE_NOT_FOUND if link is not None else INVALID_SYNTAX
            self._record(
                now,
                "state_updated",
                {
                    "exchange": "IKE_FOLLOWUP_KE",
                    "result": notify_name(notify),
                    "responder": True,
                    "link": link.hex() if link is not None else None,
                },
            )
            self._respond(message, (NotifyPayload(notify),), now)
            return
        method = state.methods[state.done]
        ke = _first(inner, KePayload)
        try:
            if ke is None or ke.dh_group != method:
                raise RemoteProtocolError(f"IKE_FOLLOWUP_KE request without a KE payload of method {method}")
            answer, secret = responder_key_exchange(method, ke.key_data, self._rng)
        except RemoteProtocolError as exc:  # the series ends; nothing was installed
            self._record(
                now,
                "state_updated",
                {
                    "exchange": "IKE_FOLLOWUP_KE",
                    "result": "INVALID_SYNTAX",
                    "responder": True,
                    "for": state.purpose,
                    "reason": str(exc),
                },
            )
            self._respond(message, (NotifyPayload(INVALID_SYNTAX),), now)
            return
        state.secrets.append(secret)
        reply: list[Payload] = [KePayload(method, answer)]
        if state.done < len(state.methods):
            state.link = self._new_link()
            state.expires_at = now + FOLLOWUP_STATE_TIMEOUT_S
            self._followup_states[state.link] = state
            reply.append(link_notify(state.link))
        self._respond(message, tuple(reply), now)
        self._record(
            now,
            "state_updated",
            {
                "exchange": "IKE_FOLLOWUP_KE",
                "result": "ok",
                "responder": True,
                "for": state.purpose,
                "round": state.done,
                "additional_ke": method,
            },
        )
        if state.done == len(state.methods):
            state.finish(state.secrets, now)

    def _expire_followups(self, now: float) -> None:
        """Drop the state of a series whose next round never came (RFC 9370 §2.2.4): nothing was installed."""
        for link, state in list(self._followup_states.items()):
            if now >= state.expires_at:
                del self._followup_states[link]
                self._record(
                    now,
                    "state_updated",
                    {
                        "exchange": "IKE_FOLLOWUP_KE",
                        "result": "expired",
                        "responder": True,
                        "for": state.purpose,
                        "round": state.done + 1,
                        "of": len(state.methods),
                    },
                )

    # --- requests and responses ------------------------------------------------------------------------------

    def _require_established(self, what: str) -> None:
        if not self.established:
            raise LocalProtocolError(f"cannot {what} in state {self.state.name}")

    def _enqueue(self, send: Callable[[float], None], now: float) -> None:
        self._queue.append(send)
        self._drain_queue(now)

    def _drain_queue(self, now: float) -> None:
        while self._outstanding is None and self._queue and self.state is IkeSaState.ESTABLISHED:
            self._queue.popleft()(now)

    def _next_iv(self) -> bytes:
        self._iv += 1
        return self._iv.to_bytes(8, "big")

    def _sk_e_out(self) -> bytes:
        assert self.keys is not None
        return self.keys.sk_ei if self.initiator else self.keys.sk_er

    def _sk_e_in(self) -> bytes:
        assert self.keys is not None
        return self.keys.sk_er if self.initiator else self.keys.sk_ei

    def _decrypt(self, data: bytes, *, message_id: int | None = None) -> tuple[IkeMessage, tuple[Payload, ...]]:
        """Raises IkeIntegrityError or DecodeError (see ``decrypt_message``).

        ``message_id`` of a retransmitted IKE_INTERMEDIATE request picks the keys that protected it.
        """
        keys = self._keys_by_mid.get(message_id, self.keys) if message_id is not None else self.keys
        assert keys is not None
        sk_a = keys.sk_ar if self.initiator else keys.sk_ai
        sk_e = keys.sk_er if self.initiator else keys.sk_ei
        return decrypt_message(data, sk_e=sk_e, encr_id=self.encr_id, integ_id=self.integ_id, sk_a=sk_a)

    def _encrypt(self, exchange_type: int, message_id: int, inner: Sequence[Payload], *, response: bool) -> bytes:
        assert self.keys is not None
        header = IkeMessage(
            self.spi_i, self.spi_r, exchange_type, message_id, (), initiator=self.initiator, response=response
        )
        if self.encr_id == ENCR_AES_CBC:
            self._iv += 1
            sk_e = self._sk_e_out()
            sk_a = self.keys.sk_ai if self.initiator else self.keys.sk_ar
            return encrypt_message(
                header,
                inner,
                sk_e=sk_e,
                iv=cbc_iv(sk_e, self._iv),
                encr_id=self.encr_id,
                integ_id=self.integ_id,
                sk_a=sk_a,
            )
        return encrypt_message(header, inner, sk_e=self._sk_e_out(), iv=self._next_iv())

    def _request(
        self,
        exchange_type: int,
        inner: Sequence[Payload],
        handler: Callable[[IkeMessage, tuple[Payload, ...], float], None],
        now: float,
    ) -> None:
        mid = self._next_request_mid
        data = self._encrypt(exchange_type, mid, inner, response=False)
        parts = self._udp_parts(exchange_type, mid, inner, data, response=False, now=now)
        if parts is None:
            return  # too big for UDP: this attempt gave way to TCP
        self._next_request_mid = mid + 1
        self._send_request_bytes(exchange_type, data, handler, now, message_id=mid, parts=parts, inner=inner)

    def _smaller_fragments(self, req: _Request, now: float) -> None:
        """RFC 7383 §2.5.2: a request unanswered through several retransmissions may be lost to a path
        smaller than assumed; fragment it again for the next smaller size (1280, then 576 for IPv4;
        1280 for IPv6). Only encrypted requests, with fragmentation negotiated, that do not fit it."""
        if not (req.inner and self.fragmentation and self.encr_id == ENCR_AES_GCM_16):
            return
        ipv6 = ":" in self.remote[0]
        smaller = [m for m in ((1280,) if ipv6 else (1280, MIN_PATH_MTU_BYTES)) if m < req.path_mtu]
        if not smaller:
            return
        limit = max_ike_message_len(path_mtu=smaller[0], ipv6=ipv6, port=self.local[1])
        if max(len(p) for p in (req.parts or (req.data,))) <= limit:
            req.path_mtu = smaller[0]  # already that small: try the next size at the next step
            return
        was = max(1, len(req.parts))
        floor = fragment_overhead() + 64
        while True:
            fragments = fragment_message(
                self._header(req.exchange_type, req.message_id, response=False),
                req.inner,
                sk_e=self._sk_e_out(),
                next_iv=self._next_iv,
                max_message_len=limit,
            )
            # the receiver starts over only on a larger Total Fragments (RFC 7383 §2.6): with the same
            # count it would join old and new pieces
            if len(fragments) > was or limit <= floor:
                break
            limit = max(floor, limit - 64)
        self._learned_path_mtu = smaller[0]
        self._record(
            now,
            "state_updated",
            {
                "event": "smaller_fragments",
                "exchange": exchange_name(req.exchange_type),
                "message_id": req.message_id,
                "path_mtu": smaller[0],
                "fragments": len(fragments),
                "was": was,
                "after_tries": req.tries - 1,
            },
        )
        self.fragments_sent += len(fragments)
        req.parts = tuple(fragments)
        req.path_mtu = smaller[0]

    def _send_request_bytes(
        self,
        exchange_type: int,
        data: bytes,
        handler: Callable[..., None],
        now: float,
        *,
        message_id: int = 0,
        parts: tuple[bytes, ...] = (),
        inner: Sequence[Payload] = (),
    ) -> None:
        first_wait = self.config.retransmit_s if self.transport == "udp" else self.config.response_timeout_s
        self._outstanding = _Request(
            message_id,
            exchange_type,
            data,
            now,
            handler,
            next_at=now + first_wait,
            parts=parts,
            inner=tuple(inner),
            path_mtu=min(self.config.path_mtu_bytes, self._learned_path_mtu or self.config.path_mtu_bytes),
        )
        self._out.extend(parts or (data,))
        fragments = len(parts) if len(parts) > 1 else 0
        self._record_message(now, "segment_sent", exchange_type, message_id, False, len(data), fragments=fragments)

    def _respond(self, request: IkeMessage, inner: Sequence[Payload], now: float) -> None:
        data = self._encrypt(request.exchange_type, request.message_id, inner, response=True)
        parts = self._udp_parts(request.exchange_type, request.message_id, inner, data, response=True, now=now)
        self._cached_response = (request.message_id, data)
        self._cached_parts = parts or (data,)
        self._peer_next_mid = request.message_id + 1
        self._out.extend(self._cached_parts)
        fragments = len(self._cached_parts) if len(self._cached_parts) > 1 else 0
        self._record_message(
            now, "segment_sent", request.exchange_type, request.message_id, True, len(data), fragments=fragments
        )

    def max_udp_message_len(self) -> int:
        """The longest IKE message one UDP datagram carries on this path (``path_mtu_bytes``, or the
        smaller size a request's fragments got through with, RFC 7383 §2.5.1, §2.5.2)."""
        mtu = min(self.config.path_mtu_bytes, self._learned_path_mtu or self.config.path_mtu_bytes)
        return max_ike_message_len(path_mtu=mtu, ipv6=":" in self.remote[0], port=self.local[1])

    def _udp_parts(
        self,
        exchange_type: int,
        message_id: int,
        inner: Sequence[Payload],
        data: bytes,
        *,
        response: bool,
        now: float,
    ) -> tuple[bytes, ...] | None:
        """How an encrypted message goes out: ``(data,)`` whole, or its RFC 7383 fragments.

        Over TCP always whole (RFC 9329 carries any size). Over UDP a message
        longer than one datagram is fragmented when both ends offered RFC 7383
        (lab.ike.fragmentation implements AES-GCM only); otherwise it goes
        whole and the IP layer fragments it, unless this is an initiator not
        yet established with ``oversize_udp="tcp"``: then the attempt is given
        up (None) and the endpoint goes straight to TCP (see lab.ike.policy).
        """
        if self.transport != "udp":
            return (data,)
        limit = self.max_udp_message_len()
        how = oversize_action(
            len(data),
            max_message_len=limit,
            fragmentation_negotiated=self.fragmentation and self.encr_id == ENCR_AES_GCM_16,
            policy=self.config.oversize_udp,
            initiator=self.initiator,
            before_ike_auth_done=self.state in (IkeSaState.INTERMEDIATE_SENT, IkeSaState.AUTH_SENT),
            response=response,
        )
        if how == "whole":
            return (data,)
        if how == "fragments":
            fragments = fragment_message(
                self._header(exchange_type, message_id, response=response),
                inner,
                sk_e=self._sk_e_out(),
                next_iv=self._next_iv,
                max_message_len=limit,
            )
            self.fragments_sent += len(fragments)
            return tuple(fragments)
        detail = {
            "exchange": exchange_name(exchange_type),
            "message_id": message_id,
            "length": len(data),
            "max_length": limit,
            "path_mtu": self.config.path_mtu_bytes,
            "peer_fragmentation": self.peer_fragmentation,
        }
        if how == "tcp":
            reason = (
                f"{exchange_name(exchange_type)} of {len(data)} bytes does not fit a {self.config.path_mtu_bytes}-byte"
                " path and the peer offered no IKE fragmentation: going to TCP"
            )
            self.too_big_for_udp = reason
            self._record(now, "state_updated", {"event": "too_big_for_udp", **detail, "policy": "tcp"})
            self._outstanding = None
            self._set_state(Input.ABANDON, now, detail=reason)
            self._finish(reason, now, error=True)
            return None
        self._record(now, "state_updated", {"event": "ip_fragments", **detail})
        return (data,)

    def _receive_response(
        self, message: IkeMessage, data: bytes, now: float, *, inner: tuple[Payload, ...] | None = None
    ) -> None:
        req = self._outstanding
        if req is None or message.message_id != req.message_id or message.exchange_type != req.exchange_type:
            self._drop(now, "unexpected_response", f"message ID {message.message_id}")
            return
        if message.initiator == self.initiator:
            self._drop(now, "wrong_initiator_flag", "")
            return
        if message.exchange_type == IKE_SA_INIT:
            inner = ()
            if message.spi_i != self.spi_i:
                self._drop(now, "wrong_spi", message.spi_i.hex())
                return
        elif inner is None:
            try:
                _, inner = self._decrypt(data)
            except IkeIntegrityError as exc:
                self._drop(now, "integrity", str(exc))
                return
            except DecodeError as exc:
                self._drop(now, "malformed", str(exc))
                return
            if _critical_unknown(inner) is not None:
                self._drop(now, "unsupported_critical_payload", str(_critical_unknown(inner)))
                return
        self._outstanding = None
        self.last_received_at = now
        self._current_response_bytes = data
        req.handler(message, inner, now)
        self._arm_dpd(now)
        self._drain_queue(now)

    def _receive_request(
        self, message: IkeMessage, data: bytes, now: float, *, inner: tuple[Payload, ...] | None = None
    ) -> None:
        if message.initiator == self.initiator:
            self._drop(now, "wrong_initiator_flag", "")
            return
        if message.exchange_type == IKE_SA_INIT:
            if self._cached_response is not None and self._cached_response[0] == 0 and data == self._init_request:
                self._out.append(self._cached_response[1])  # a retransmitted IKE_SA_INIT (§2.1)
                self._record_message(
                    now,
                    "segment_sent",
                    IKE_SA_INIT,
                    0,
                    True,
                    len(self._cached_response[1]),
                    resent="retransmitted request",
                )
            else:
                self._drop(now, "unexpected_request", "IKE_SA_INIT on an existing SA")
            return
        if self.keys is None:
            self._drop(now, "no_keys", "")
            return
        if message.message_id < self._peer_next_mid:
            cached = self._cached_response
            if inner is None:  # reassembled fragments were checked one by one
                try:
                    self._decrypt(data, message_id=message.message_id)  # only a genuine retransmission gets the cache
                except (IkeIntegrityError, DecodeError) as exc:
                    self._drop(now, "integrity", str(exc))
                    return
            if cached is not None and cached[0] == message.message_id:
                self._resend_cached(message.exchange_type, message.message_id, now)
            else:
                self._drop(now, "old_message_id", str(message.message_id))
            return
        if message.message_id != self._peer_next_mid:
            self._drop(now, "message_id_out_of_window", f"{message.message_id}, expected {self._peer_next_mid}")
            return
        if inner is None:
            try:
                _, inner = self._decrypt(data)
            except IkeIntegrityError as exc:
                self._drop(now, "integrity", str(exc))
                return
            except DecodeError as exc:
                self._drop(now, "malformed", str(exc))
                return
        self.last_received_at = now
        if self._arrival is not None and not self.initiator:
            self.transport, self.local, self.remote = self._arrival  # answer where it came from
        critical = _critical_unknown(inner)
        if critical is not None:
            self._respond(message, (NotifyPayload(1, bytes((critical,))),), now)  # UNSUPPORTED_CRITICAL_PAYLOAD (§2.5)
            return
        if message.exchange_type == IKE_AUTH:
            if self.state is IkeSaState.INIT_RESPONDED and not self.initiator:
                self._receive_auth_request(message, inner, now)
            else:
                self._drop(now, "unexpected_request", "IKE_AUTH")
            return
        if message.exchange_type == IKE_INTERMEDIATE:
            if self.state is IkeSaState.INIT_RESPONDED and not self.initiator and self.peer_intermediate:
                self._receive_intermediate_request(message, inner, now)
            else:
                self._drop(now, "unexpected_request", "IKE_INTERMEDIATE")
            return
        if not self.established and self.state not in (IkeSaState.DELETING, IkeSaState.REKEYED):
            self._drop(now, "unexpected_request", exchange_name(message.exchange_type))
            return
        if message.exchange_type == INFORMATIONAL:
            self._receive_informational(message, inner, now)
        elif message.exchange_type == CREATE_CHILD_SA:
            self._receive_create_child(message, inner, now)
        elif message.exchange_type == IKE_FOLLOWUP_KE:
            self._receive_followup_request(message, inner, now)
        else:
            self._drop(now, "unknown_exchange", str(message.exchange_type))
        self._arm_dpd(now)

    def _receive_informational(self, message: IkeMessage, inner: tuple[Payload, ...], now: float) -> None:
        deletes = [p for p in inner if isinstance(p, DeletePayload)]
        if any(d.protocol_id == PROTO_IKE for d in deletes):
            self._respond(message, (), now)
            self._outstanding = None
            self._queue.clear()
            self._set_state(Input.RECV_DELETE, now)
            self._finish("deleted by peer", now, error=False)
            return
        answer: list[Payload] = []
        for d in deletes:
            if d.protocol_id != PROTO_ESP:
                continue
            ours = []
            for raw in d.spis:
                spi_out = int.from_bytes(raw, "big")
                child = next((c for c in self.children.values() if c.spi_out == spi_out), None)
                if child is not None:
                    ours.append(child.spi_in.to_bytes(4, "big"))
                    self._remove_child(child.spi_in, now)
            if ours:
                answer.append(DeletePayload(PROTO_ESP, 4, tuple(ours)))
        self._respond(message, tuple(answer), now)
        if not deletes:
            self._record(
                now, "state_updated", {"exchange": "INFORMATIONAL", "result": "liveness_answered", "sa": self.label}
            )

    def _receive_create_child(self, message: IkeMessage, inner: tuple[Payload, ...], now: float) -> None:
        rekey = next((p for p in inner if isinstance(p, NotifyPayload) and p.notify_type == REKEY_SA), None)
        nonce = _first(inner, NoncePayload)
        sa = _first(inner, SaPayload)
        if not self.established:  # §2.25: a request meeting our Delete (or a finished rekey)
            self._respond(message, (NotifyPayload(TEMPORARY_FAILURE),), now)
            return
        if sa is not None and rekey is None and any(p.protocol_id == PROTO_IKE for p in sa.proposals):
            self._receive_ike_rekey(message, inner, sa, now)
            return
        if nonce is None or sa is None or not MIN_NONCE_LEN <= len(nonce.nonce) <= MAX_NONCE_LEN:
            self._respond(message, (NotifyPayload(INVALID_SYNTAX),), now)
            return
        old = None
        if rekey is not None:
            spi = int.from_bytes(rekey.spi, "big") if len(rekey.spi) == 4 else -1
            old = next((c for c in self.children.values() if spi in (c.spi_out, c.spi_in)), None)
            if old is None:
                self._respond(message, (NotifyPayload(44),), now)  # CHILD_SA_NOT_FOUND (RFC 7296 §3.10.1)
                return
        nr = self._rng.randbytes(NONCE_LEN)
        payloads, child, make = self._answer_child_request(inner, nonce.nonce, nr, now, in_ike_auth=False)
        if child is None and make is None:
            self._respond(message, tuple(payloads), now)
            return
        sa_reply, tsi, tsr, *ke = payloads
        rekeyed = old.spi_in if old is not None else None
        if make is not None:  # RFC 9370 §2.2.4: the Child SA waits for the IKE_FOLLOWUP_KE exchanges
            methods = negotiated_additional_key_exchanges(sa_reply.proposals[0])

            def finish(secrets: list[bytes], t: float) -> None:
                self._record(
                    t,
                    "state_updated",
                    {
                        "exchange": "CREATE_CHILD_SA",
                        "result": "ok",
                        "sa": self.label,
                        "responder": True,
                        "pfs": True,
                        "additional_kes": list(methods),
                    },
                )
                self._add_child(make(secrets), t, rekeyed=rekeyed)

            link = self._await_followup("child", methods, finish, now)
            self._respond(message, (sa_reply, NoncePayload(nr), *ke, tsi, tsr, link_notify(link)), now)
            return
        assert child is not None
        self._respond(message, (sa_reply, NoncePayload(nr), *ke, tsi, tsr), now)
        self._record(
            now,
            "state_updated",
            {"exchange": "CREATE_CHILD_SA", "result": "ok", "sa": self.label, "responder": True, "pfs": bool(ke)},
        )
        self._add_child(child, now, rekeyed=rekeyed)

    def _on_liveness_response(self, message: IkeMessage, inner: tuple[Payload, ...], now: float) -> None:
        sent = self._liveness_sent_at
        self._record(now, "state_updated", {"exchange": "INFORMATIONAL", "result": "alive", "sa": self.label})
        self._events.append(LivenessChecked(round_trip_s=now - sent))

    def _on_delete_response(self, message: IkeMessage, inner: tuple[Payload, ...], now: float) -> None:
        self._set_state(Input.RECV_DELETE_RESPONSE, now)
        self._finish("closed", now, error=False)

    def _timeout(self, now: float) -> None:
        req = self._outstanding
        self._outstanding = None
        self.unanswered = True
        name = exchange_name(req.exchange_type) if req else "?"
        self._record(
            now, "state_updated", {"exchange": name, "result": "timeout", "sa": self.label, "transport": self.transport}
        )
        if self.state is IkeSaState.DELETING:
            self._set_state(Input.TIMEOUT, now, detail="no answer to Delete")
            self._finish("closed (peer did not answer the Delete)", now, error=False)
            return
        self._set_state(Input.TIMEOUT, now, detail=f"no response to {name}")
        self._finish(f"peer unresponsive ({name})", now, error=True)

    def _arm_dpd(self, now: float) -> None:
        if self.config.dpd_interval_s is not None and self.established:
            self._dpd_at = now + self.config.dpd_interval_s

    def _finish(self, reason: str, now: float, *, error: bool, notify_type: int | None = None) -> None:
        self._half_open_until = None
        self._dpd_at = None
        self._queue.clear()
        self._followup = None
        self._followup_states.clear()
        for spi in list(self.children):
            self.children.pop(spi)
        self.child = None
        self._events.append(IkeSaDeleted(reason=reason, error=error, notify_type=notify_type))

    # --- records ---------------------------------------------------------------------------------------------

    def _set_state(self, inp: Input, now: float, *, detail: str = "") -> None:
        new = TRANSITIONS.get((self.state, inp))
        if new is None:
            raise LocalProtocolError(f"no transition from {self.state.name} on {inp.value}")
        old, self.state = self.state, new
        data: dict[str, Any] = {
            "sa": self.label,
            "from": old.value,
            "to": new.value,
            "input": inp.value,
            "transport": self.transport,
        }
        if detail:
            data["detail"] = detail
        self._tracer.record(now, LAYER, "state_updated", data)

    def _record(self, now: float, name: str, data: dict[str, Any]) -> None:
        if self._tracer.enabled:
            data.setdefault("sa", self.label)
            self._tracer.record(now, LAYER, name, data)

    def _record_message(
        self,
        now: float,
        name: str,
        exchange_type: int,
        message_id: int,
        response: bool,
        length: int,
        *,
        retransmission: int = 0,
        resent: str = "",
        port: int | None = None,
        fragments: int = 0,
    ) -> None:
        if not self._tracer.enabled:
            return
        if port is None:
            port = self.remote[1] if self.initiator else self.local[1]
        data: dict[str, Any] = {
            "sa": self.label,
            "exchange": exchange_name(exchange_type),
            "message_id": message_id,
            "response": response,
            "length": length,
            "transport": self.transport,
            "port": port,
        }
        if retransmission:
            data["retransmission"] = retransmission
        if resent:
            data["resent"] = resent
        if fragments:
            data["fragments"] = fragments
        self._tracer.record(now, LAYER, name, data)

    def _drop(self, now: float, reason: str, detail: str) -> None:
        self._record(now, "segment_dropped", {"reason": reason, "detail": detail, "transport": self.transport})


def _first(payloads: Sequence[Payload], cls: type) -> Any:
    return next((p for p in payloads if type(p) is cls), None)


def _critical_unknown(payloads: Sequence[Payload]) -> int | None:
    """The type of the first unknown payload with the critical bit set (§2.5), else None."""
    return next((p.payload_type for p in payloads if isinstance(p, UnknownPayload) and p.critical), None)
