"""The IKE SA state machine: every change goes through ``TRANSITIONS`` (RFC 7296 §1.1-§1.4, §2.4)."""

from __future__ import annotations

import enum


class IkeSaState(enum.Enum):
    IDLE = "IDLE"
    INIT_SENT = "INIT_SENT"  # initiator: IKE_SA_INIT request out
    INIT_RESPONDED = "INIT_RESPONDED"  # responder: IKE_SA_INIT answered, half-open
    INTERMEDIATE_SENT = "INTERMEDIATE_SENT"  # initiator: IKE_INTERMEDIATE exchanges under way (RFC 9242, RFC 9370)
    AUTH_SENT = "AUTH_SENT"  # initiator: IKE_AUTH request out
    ESTABLISHED = "ESTABLISHED"
    DELETING = "DELETING"  # our Delete is out
    REKEYED = "REKEYED"  # superseded by a new IKE SA the peer made (§2.18); waiting for its Delete
    CLOSED = "CLOSED"  # deleted by either end
    FAILED = "FAILED"  # never established, or the peer stopped answering


class Input(enum.Enum):
    START = "start"
    RECV_INIT_REQUEST = "recv_init_request"
    RECV_INIT_RESPONSE = "recv_init_response"
    RECV_INIT_RESPONSE_ADDKE = "recv_init_response_addke"  # the chosen proposal has additional key exchanges
    INTERMEDIATE_DONE = "intermediate_done"  # the last IKE_INTERMEDIATE response is in: on to IKE_AUTH
    RECV_AUTH_REQUEST = "recv_auth_request"
    RECV_AUTH_RESPONSE = "recv_auth_response"
    AUTH_FAILED = "auth_failed"  # AUTH did not verify, or the peer said AUTHENTICATION_FAILED
    INIT_REFUSED = "init_refused"  # NO_PROPOSAL_CHOSEN or an unusable IKE_SA_INIT response
    CLOSE = "close"  # the local user deletes the IKE SA
    RECV_DELETE = "recv_delete"
    RECV_DELETE_RESPONSE = "recv_delete_response"
    TIMEOUT = "timeout"  # retransmissions exhausted, or a half-open SA expired
    ABANDON = "abandon"  # the endpoint gave this attempt up (fallback or race lost)
    REKEY_DONE = "rekey_done"  # our CREATE_CHILD_SA rekeying this IKE SA was answered: delete the old one
    RECV_REKEY = "recv_rekey"  # we answered the peer's rekey of this IKE SA
    CREATED_BY_REKEY = "created_by_rekey"  # a new IKE SA born from a rekey, keys and Child SAs in hand


S, I = IkeSaState, Input
TRANSITIONS: dict[tuple[IkeSaState, Input], IkeSaState] = {
    (S.IDLE, I.START): S.INIT_SENT,
    (S.IDLE, I.RECV_INIT_REQUEST): S.INIT_RESPONDED,
    (S.IDLE, I.INIT_REFUSED): S.FAILED,  # responder: answered with an error notify, keeps no state
    (S.IDLE, I.CLOSE): S.CLOSED,
    (S.INIT_SENT, I.RECV_INIT_RESPONSE): S.AUTH_SENT,
    (S.INIT_SENT, I.INIT_REFUSED): S.FAILED,
    (S.INIT_SENT, I.TIMEOUT): S.FAILED,
    (S.INIT_SENT, I.ABANDON): S.FAILED,
    (S.INIT_SENT, I.CLOSE): S.CLOSED,
    (S.INIT_SENT, I.RECV_INIT_RESPONSE_ADDKE): S.INTERMEDIATE_SENT,
    (S.INTERMEDIATE_SENT, I.INTERMEDIATE_DONE): S.AUTH_SENT,
    (S.INTERMEDIATE_SENT, I.INIT_REFUSED): S.FAILED,  # an IKE_INTERMEDIATE refused or unusable
    (S.INTERMEDIATE_SENT, I.TIMEOUT): S.FAILED,
    (S.INTERMEDIATE_SENT, I.ABANDON): S.FAILED,
    (S.INTERMEDIATE_SENT, I.CLOSE): S.CLOSED,
    (S.INIT_RESPONDED, I.RECV_AUTH_REQUEST): S.ESTABLISHED,
    (S.INIT_RESPONDED, I.AUTH_FAILED): S.FAILED,
    (S.INIT_RESPONDED, I.TIMEOUT): S.FAILED,
    (S.INIT_RESPONDED, I.CLOSE): S.CLOSED,
    (S.AUTH_SENT, I.RECV_AUTH_RESPONSE): S.ESTABLISHED,
    (S.AUTH_SENT, I.AUTH_FAILED): S.FAILED,
    (S.AUTH_SENT, I.TIMEOUT): S.FAILED,
    (S.AUTH_SENT, I.ABANDON): S.FAILED,
    (S.AUTH_SENT, I.CLOSE): S.CLOSED,
    (S.ESTABLISHED, I.CLOSE): S.DELETING,
    (S.ESTABLISHED, I.RECV_DELETE): S.CLOSED,
    (S.ESTABLISHED, I.TIMEOUT): S.FAILED,
    (S.ESTABLISHED, I.REKEY_DONE): S.DELETING,
    (S.ESTABLISHED, I.RECV_REKEY): S.REKEYED,
    (S.IDLE, I.CREATED_BY_REKEY): S.ESTABLISHED,
    (S.REKEYED, I.RECV_DELETE): S.CLOSED,
    (S.REKEYED, I.TIMEOUT): S.CLOSED,
    (S.REKEYED, I.CLOSE): S.DELETING,
    (S.DELETING, I.RECV_DELETE_RESPONSE): S.CLOSED,
    (S.DELETING, I.RECV_DELETE): S.CLOSED,
    (S.DELETING, I.TIMEOUT): S.CLOSED,
}
del S, I

TERMINAL = frozenset({IkeSaState.CLOSED, IkeSaState.FAILED})
