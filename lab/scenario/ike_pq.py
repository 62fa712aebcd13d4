"""Large IKE messages through a network that drops IP fragments: the three ways (issue: why IKE needs TCP today).

A classic proposal (ECDH P-256) and a hybrid post-quantum one (X25519 then
ML-KEM-768 in an IKE_INTERMEDIATE exchange, RFC 9370) both authenticate with
certificates from the lab's PKI: an ECDSA P-384 chain of an end entity and two
intermediate CAs, so IKE_AUTH outgrows a 1500-byte path as it does in
deployments. Router r1 drops every IP fragment, as many firewalls and
carrier-grade NATs do. Three ways through (``PQ_MODES``):

* ``ip-fragments``: UDP, no IKE fragmentation. IKE_SA_INIT fits; the first
  message that does not leaves as IP fragments, r1 drops them, the request
  goes unanswered through every retransmission, and only then does the
  initiator fall back to TCP (RFC 9329).
* ``rfc7383``: UDP with IKE fragmentation negotiated (RFC 7383): encrypted
  messages go as SKF fragments that each fit the path; nothing below IKE
  fragments.
* ``tcp``: IKE over TCP from the start (RFC 9329): size does not matter.
* ``separate-transports``: IKE_SA_INIT (small) over UDP 4500 with the
  SEPARATE_TRANSPORTS notify of draft-ietf-ipsecme-ikev2-reliable-transport;
  both ends agree, so IKE_INTERMEDIATE and IKE_AUTH go over TCP 4500
  (RFC 9329) while ESP stays UDP-encapsulated on 4500: no TCP-in-TCP for the
  tunnel (lab.ike.separate_transports).

Each session's result says when its IKE SA was established, in seconds and
in round-trip times of the path (``ike_established_rtts``).
"""

from __future__ import annotations

import datetime as dt
import functools
import random
from typing import Any

from lab.errors import ConfigError
from lab.ike.certs import LabPki, make_lab_pki
from lab.scenario import Scenario
from lab.scenario.ike import RESPONDER_ID, IkeSession
from lab.scenario.middlebox import DropIpFragments
from lab.scenario.outcomes import Expects

PQ_MODES = ("ip-fragments", "rfc7383", "tcp", "separate-transports")
PQ_PROPOSALS: dict[str, dict[str, Any]] = {
    "classic": {"dh_groups": (19,)},  # ECDH P-256
    "hybrid": {"dh_groups": (31,), "additional_key_exchanges": (36,)},  # X25519, then ML-KEM-768
}
PKI_SEED = 2026
PKI_NOT_BEFORE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
VALIDATED_AT = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)  # fixed, so the same seed gives the same trace


@functools.cache
def scenario_pki() -> LabPki:
    """The lab PKI of these scenarios: root, two intermediates, one end entity per session and the responder
    (ECDSA P-384, keys from a fixed seed: the same certificates in every run)."""
    names = [f"{proposal}.initiator.lab" for proposal in PQ_PROPOSALS] + [RESPONDER_ID.decode()]
    return make_lab_pki(
        random.Random(PKI_SEED), not_before=PKI_NOT_BEFORE, key_type="ecdsa-p384", intermediates=2, names=names
    )


def _mode_settings(mode: str) -> dict[str, Any]:
    if mode == "ip-fragments":
        return {"transport": "fallback", "fragmentation": False}
    if mode == "rfc7383":
        return {"transport": "udp", "fragmentation": True}
    if mode == "tcp":
        return {"transport": "tcp", "fragmentation": False}
    if mode == "separate-transports":
        return {"transport": "fallback", "fragmentation": False, "separate_transports": True}
    raise ConfigError(f"IKE path mode {mode!r}: expected one of {', '.join(PQ_MODES)}")


def pq_session(proposal: str, mode: str, *, data_bytes: int = 16 * 1024, export_keys: bool = True) -> IkeSession:
    """One IKE session named after ``proposal`` ("classic" or "hybrid") over ``mode`` (one of PQ_MODES)."""
    if proposal not in PQ_PROPOSALS:
        raise ConfigError(f"IKE proposal {proposal!r}: expected one of {', '.join(PQ_PROPOSALS)}")
    pki = scenario_pki()
    common = {"auth": "signature", "trust_anchors": pki.trust_anchors, "validation_time": VALIDATED_AT}
    settings = _mode_settings(mode)
    return IkeSession(
        name=proposal,
        initiator_config={
            **common,
            **settings,
            **PQ_PROPOSALS[proposal],
            "credential": pki.end_entities[f"{proposal}.initiator.lab"],
        },
        responder_config={
            **common,
            "fragmentation": settings["fragmentation"],
            "separate_transports": settings.get("separate_transports", False),
            "dh_groups": (19, 31),
            "credential": pki.end_entities[RESPONDER_ID.decode()],
        },
        data_bytes=data_bytes,
        export_keys=export_keys,
    )


_SUMMARIES = {
    "ip-fragments": "IKE_AUTH needs IP fragments, r1 drops them: UDP dies after every retransmission, then TCP",
    "rfc7383": "RFC 7383 fragments each fit the path: UDP works, no IP fragment needed",
    "tcp": "IKE over TCP from the start: message size does not matter",
    "separate-transports": "IKE_SA_INIT over UDP 4500, then IKE over TCP 4500 while ESP stays on UDP",
}
_DESCRIPTIONS = {
    "ip-fragments": (
        "r1 drops IP fragments. Classic (P-256) and hybrid post-quantum (X25519 + ML-KEM-768) IKE with a "
        "certificate chain over UDP without IKE fragmentation: IKE_AUTH is larger than the 1500-byte path, leaves "
        "as IP fragments that never arrive, and only after every retransmission does IKE fall back to TCP 4500."
    ),
    "rfc7383": (
        "r1 drops IP fragments. The same classic and hybrid proposals with IKE fragmentation (RFC 7383): "
        "IKE_AUTH (and a large IKE_INTERMEDIATE) go as encrypted fragments that each fit the path, so UDP works."
    ),
    "tcp": (
        "r1 drops IP fragments. The same classic and hybrid proposals over TCP from the start (RFC 9329): "
        "one more round trip for the TCP handshake, and message size no longer matters."
    ),
    "separate-transports": (
        "r1 drops IP fragments. The same classic and hybrid proposals with separate transports "
        "(draft-ietf-ipsecme-ikev2-reliable-transport): the small IKE_SA_INIT goes over UDP 4500 and both ends "
        "agree on SEPARATE_TRANSPORTS, so the large IKE_INTERMEDIATE and IKE_AUTH go over TCP 4500 (RFC 9329) "
        "while ESP stays UDP-encapsulated on 4500. The notify's number is not assigned yet: the lab uses a "
        "private-use value."
    ),
}


def pq_scenario(
    mode: str,
    *,
    name: str | None = None,
    moments: tuple = (),
    data_bytes: int = 16 * 1024,
    proposals: tuple[str, ...] = tuple(PQ_PROPOSALS),
) -> Scenario:
    """The scenario of one ``mode``: the ``proposals`` side by side through a fragment-dropping r1."""
    _mode_settings(mode)  # an unknown mode is a ConfigError
    transport = "tcp" if mode in ("ip-fragments", "tcp", "separate-transports") else "udp"  # where IKE_AUTH went
    return Scenario(
        name=name or f"ike-pq-{mode}",
        description=_DESCRIPTIONS[mode],
        topology="single-path",
        middleboxes=(("r1", DropIpFragments),),
        transfers=tuple(pq_session(p, mode, data_bytes=data_bytes) for p in proposals),
        time_limit_s=60.0,
        moments=moments,
        main_view="iketcp",
        expects=Expects(ike=tuple((p, transport) for p in proposals), summary=_SUMMARIES[mode]),
    )
