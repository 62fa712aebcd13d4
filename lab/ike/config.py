"""Settings of an IKEv2 endpoint (RFC 7296) and its transports (RFC 9329 fallback policy)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from lab.errors import ConfigError
from lab.ike.fragmentation import ReassemblyLimits
from lab.ike.policy import OVERSIZE_UDP_POLICIES
from lab.wire.ikev2 import (
    AUTH_HMAC_SHA2_256_128,
    AUTH_HMAC_SHA2_384_192,
    AUTH_HMAC_SHA2_512_256,
    DH_CURVE25519,
    DH_ECP_256,
    DH_ECP_384,
    DH_ECP_521,
    DH_MODP_2048,
    ENCR_AES_CBC,
    ENCR_AES_GCM_16,
    PRF_HMAC_SHA2_256,
    PRF_HMAC_SHA2_384,
    PRF_HMAC_SHA2_512,
    TS_IPV4_ADDR_RANGE,
    TrafficSelector,
)

SUPPORTED_DH_GROUPS = (DH_ECP_256, DH_CURVE25519, DH_MODP_2048, DH_ECP_384, DH_ECP_521)
SUPPORTED_ENCRS = (ENCR_AES_GCM_16, ENCR_AES_CBC)  # IKE and ESP
SUPPORTED_PRFS = (PRF_HMAC_SHA2_256, PRF_HMAC_SHA2_384, PRF_HMAC_SHA2_512)
SUPPORTED_INTEGS = (AUTH_HMAC_SHA2_256_128, AUTH_HMAC_SHA2_384_192, AUTH_HMAC_SHA2_512_256)  # with AES-CBC
TRANSPORT_MODES = ("udp", "tcp", "fallback")  # UDP only, TCP only (libreswan enable-tcp=yes), UDP then TCP
FALLBACK_POLICIES = ("sequential", "racing")
IKE_UDP_PORT = 500  # RFC 7296 §2
NAT_T_PORT = 4500  # RFC 3948 §2, RFC 7296 §2.23
DEFAULT_TCP_PORT = 4500  # RFC 9329 §2: the default; 443 is the usual alternative

KE_ML_KEM_768 = 36  # Transform Type 4 IDs (IANA; lab.ike.mlkem)
KE_ML_KEM_1024 = 37
SUPPORTED_ADDITIONAL_KES = (KE_ML_KEM_768, KE_ML_KEM_1024, *SUPPORTED_DH_GROUPS)  # RFC 9370 ADDKE methods
AUTH_METHODS = ("psk", "signature")  # RFC 7296 §2.15 shared key MIC; RFC 7427 digital signature
ID_TYPES = ("fqdn", "dn")  # ID_FQDN, ID_DER_ASN1_DN (RFC 7296 §3.5)
MIN_PATH_MTU_BYTES = 576  # RFC 7383 §2.5.1: what IPv4 must carry

ANY_IPV4 = TrafficSelector(TS_IPV4_ADDR_RANGE, "0.0.0.0", "255.255.255.255")


@dataclass(frozen=True, kw_only=True)
class IkeConfig:
    """One side's settings. Times are seconds of the driver's clock.

    * ``dh_groups``: preference order; the initiator's first KE uses the first.
      Supported: 19 (P-256), 31 (Curve25519), 14 (MODP-2048), 20 (P-384), 21 (P-521).
    * ``encr_key_bits``: AES key sizes offered/accepted, for IKE and ESP.
    * ``encrs``/``prfs``/``integs``: the algorithms offered (in this order)
      and accepted, for IKE and ESP. AES-GCM-16 goes in a proposal without
      integrity; AES-CBC in one with the HMAC-SHA2 ``integs`` (RFC 4868).
      An initiator offers the first of each list (by default AES-GCM-16
      with PRF_HMAC_SHA2_256) unless ``offer_all`` is set; a responder
      accepts everything listed, taking the peer's order.
    * ``pfs``: Child SA rekeys carry a KE payload (RFC 7296 §1.3.1) in the
      IKE SA's DH group; a responder accepts rekeys with and without one.
    * ``transport``/``fallback``/``udp_ports``/``tcp_ports``: the initiator's
      attempts. Sequential: each UDP port in turn (``udp_timeout_s`` each),
      then each TCP port. Racing: the first UDP port at once, the first TCP
      port ``race_head_start_s`` later; whichever completes IKE_SA_INIT first
      is kept. A responder listens on all of them.
    * ``retransmit_s``/``retransmit_tries``: RFC 7296 §2.1 retransmission over
      UDP, doubling; over TCP nothing is retransmitted (RFC 9329 §6.1) and the
      same total time is the response timeout.
    * ``child_sa``: negotiate a Child SA in IKE_AUTH; False sends childless
      IKE_AUTH (RFC 6023) when the peer announced CHILDLESS_IKEV2_SUPPORTED.
    * ``cookie_threshold``: a responder with this many half-open IKE SAs asks
      for COOKIEs (RFC 7296 §2.6); 0 always asks, None never.
    * ``export_keys``: record each SA's keys as ``key_updated`` (ike/esp), so
      ``lab.ike.keylog`` can write tshark's decryption tables.
    * ``additional_key_exchanges``: the initiator's RFC 9370 rounds, one
      method each (ADDKE1, ADDKE2, ...), e.g. ``(36,)`` for ML-KEM-768 after
      the ECDH of IKE_SA_INIT; every round is required (no NONE). Each runs
      in its own IKE_INTERMEDIATE exchange (RFC 9242). A responder accepts
      the methods in ``accepted_additional_kes`` (default: ML-KEM-768/1024
      and every supported DH group).
    * ``followup_ke``: rekeys of such an SA (the Child SA's with ``pfs``, and
      the IKE SA's) offer the same rounds in CREATE_CHILD_SA, run in
      IKE_FOLLOWUP_KE exchanges (RFC 9370 §2.2.4), with a plain copy of each
      proposal as fallback; a responder takes ADDKE rounds it accepts there.
      False acts as a peer without IKE_FOLLOWUP_KE: plain rekeys, and
      proposals with ADDKE transforms refused (RFC 7296 §3.3.6).
    * ``fragmentation``: send IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383 §2.3)
      in IKE_SA_INIT; once both did, encrypted messages longer than one
      ``path_mtu_bytes`` datagram go over UDP as SKF fragments (never over
      TCP). ``fragment_limits`` bound reassembly (lab.ike.fragmentation).
      A request left unanswered through ``fragment_pmtud_tries``
      retransmissions is fragmented again for a smaller path (1280, then
      576 octets for IPv4; RFC 7383 §2.5.2), when fragmentation was
      negotiated and the message does not fit the smaller size.
    * ``oversize_udp``: what an initiator does with a message that does not
      fit the path over UDP and may not be fragmented (the peer did not
      offer RFC 7383): ``"send"`` it whole (the IP layer fragments it, if the
      path lets fragments through), or ``"tcp"``: give UDP up at once and
      start over on TCP (RFC 9329), when the transport is ``fallback``.
    * ``separate_transports``: IKE over TCP, ESP over UDP
      (draft-ietf-ipsecme-ikev2-reliable-transport, lab.ike.separate_transports).
      An initiator starts IKE_SA_INIT over UDP port 4500 with a
      SEPARATE_TRANSPORTS notify; when the response carries it too, every
      later IKE exchange goes over TCP (``tcp_ports``, RFC 9329) while ESP
      stays UDP-encapsulated on port 4500. A responder returns the notify
      when it gets it over UDP. The notify's number is the lab's own until
      IANA assigns one.
    * ``esp_udp_timeout_s``: with separate transports, an initiator that has
      sent ESP over UDP and gets no ESP back over UDP within this time moves
      ESP into the IKE TCP connection (RFC 9329 framing); a responder that
      gets ESP over that connection sends its ESP there too. The draft
      detects this with ESP Echo (draft-ietf-ipsecme-encrypted-esp-ping),
      which the lab does not implement: this is a stand-in that needs
      traffic both ways (a one-way flow would move to TCP needlessly).
      None: off.
    * ``auth``: ``"psk"`` (AUTH method 2) or ``"signature"`` (RFC 7427
      method 14 with ``credential``, a lab.ike.certs.Credential whose
      certificate names ``local_id`` as a dNSName; the peer's chain is
      checked against ``trust_anchors`` at ``validation_time``, a fixed
      timezone-aware instant, since the endpoint reads no clock). Both
      ends use the same method; CERT and CERTREQ payloads go with it.
    * ``id_type``: how we name ourselves in IDi/IDr: ``"fqdn"`` (ID_FQDN
      ``local_id``) or, with certificates, ``"dn"`` (ID_DER_ASN1_DN, our
      certificate's subject; libreswan's ``leftid=%fromcert``).
    """

    psk: bytes = b"lab-psk-not-secret-0123456789"
    local_id: bytes = b"initiator.lab"
    remote_id: bytes | None = None
    dh_groups: tuple[int, ...] = SUPPORTED_DH_GROUPS
    encr_key_bits: tuple[int, ...] = (256, 128)
    encrs: tuple[int, ...] = SUPPORTED_ENCRS
    prfs: tuple[int, ...] = SUPPORTED_PRFS
    integs: tuple[int, ...] = SUPPORTED_INTEGS
    offer_all: bool = False
    pfs: bool = True
    transport: str = "fallback"
    fallback: str = "sequential"
    udp_ports: tuple[int, ...] = (IKE_UDP_PORT,)
    tcp_ports: tuple[int, ...] = (DEFAULT_TCP_PORT,)
    udp_timeout_s: float = 2.0
    race_head_start_s: float = 0.02
    tcp_connect_timeout_s: float = 3.0
    retransmit_s: float = 0.5
    retransmit_tries: int = 5
    half_open_timeout_s: float = 30.0
    child_sa: bool = True
    traffic_selectors_i: tuple[TrafficSelector, ...] = (ANY_IPV4,)
    traffic_selectors_r: tuple[TrafficSelector, ...] = (ANY_IPV4,)
    cookie_threshold: int | None = None
    dpd_interval_s: float | None = None
    nat_keepalive_s: float = 20.0
    tcp_reconnect_tries: int = 3
    replay_window_packets: int = 64
    export_keys: bool = False
    metrics_interval_s: float = 0.5
    cookie_secret: bytes = field(default=b"", repr=False)  # empty: drawn from the endpoint's rng
    additional_key_exchanges: tuple[int, ...] = ()
    accepted_additional_kes: tuple[int, ...] = SUPPORTED_ADDITIONAL_KES
    followup_ke: bool = True
    fragmentation: bool = False
    path_mtu_bytes: int = 1500
    fragment_limits: ReassemblyLimits = field(default_factory=ReassemblyLimits)
    oversize_udp: str = "send"
    separate_transports: bool = False
    esp_udp_timeout_s: float | None = None
    fragment_pmtud_tries: int = 2  # RFC 7383 §2.5.2: smaller fragments after this many unanswered resends (0: never)
    auth: str = "psk"
    credential: Any = field(default=None, repr=False)  # lab.ike.certs.Credential
    trust_anchors: tuple[Any, ...] = field(default=(), repr=False)  # x509.Certificate
    validation_time: dt.datetime | None = None
    id_type: str = "fqdn"

    def __post_init__(self) -> None:
        if not self.psk:
            raise ConfigError("psk must not be empty")
        if not self.local_id:
            raise ConfigError("local_id must not be empty")
        if not self.dh_groups or any(g not in SUPPORTED_DH_GROUPS for g in self.dh_groups):
            raise ConfigError(f"dh_groups must be drawn from {SUPPORTED_DH_GROUPS}, got {self.dh_groups}")
        for name, supported in (
            ("encrs", SUPPORTED_ENCRS),
            ("prfs", SUPPORTED_PRFS),
            ("integs", SUPPORTED_INTEGS),
        ):
            values = getattr(self, name)
            if not values or any(v not in supported for v in values):
                raise ConfigError(f"{name} must be drawn from {supported}, got {values}")
        if not self.encr_key_bits or any(b not in (128, 256) for b in self.encr_key_bits):
            raise ConfigError(f"encr_key_bits must be 128 and/or 256, got {self.encr_key_bits}")
        if self.transport not in TRANSPORT_MODES:
            raise ConfigError(f"transport must be one of {', '.join(TRANSPORT_MODES)}, got {self.transport!r}")
        if self.fallback not in FALLBACK_POLICIES:
            raise ConfigError(f"fallback must be one of {', '.join(FALLBACK_POLICIES)}, got {self.fallback!r}")
        for name in ("udp_ports", "tcp_ports"):
            ports = getattr(self, name)
            if not ports or any(not isinstance(p, int) or not 0 < p < 65536 for p in ports):
                raise ConfigError(f"{name} must be a non-empty tuple of ports 1..65535, got {ports!r}")
        if any(p not in (IKE_UDP_PORT, NAT_T_PORT) for p in self.udp_ports):
            raise ConfigError(f"udp_ports must be 500 and/or 4500 (RFC 7296 §2.23), got {self.udp_ports}")
        for name in (
            "udp_timeout_s",
            "tcp_connect_timeout_s",
            "retransmit_s",
            "half_open_timeout_s",
            "nat_keepalive_s",
            "metrics_interval_s",
        ):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.race_head_start_s < 0:
            raise ConfigError(f"race_head_start_s must not be negative, got {self.race_head_start_s}")
        if not 1 <= self.retransmit_tries <= 20:
            raise ConfigError(f"retransmit_tries must be 1..20, got {self.retransmit_tries}")
        if self.esp_udp_timeout_s is not None and not self.esp_udp_timeout_s > 0:
            raise ConfigError(f"esp_udp_timeout_s must be positive or None, got {self.esp_udp_timeout_s}")
        if self.dpd_interval_s is not None and not self.dpd_interval_s > 0:
            raise ConfigError(f"dpd_interval_s must be positive or None, got {self.dpd_interval_s}")
        if self.cookie_threshold is not None and self.cookie_threshold < 0:
            raise ConfigError(f"cookie_threshold must be >= 0 or None, got {self.cookie_threshold}")
        if self.tcp_reconnect_tries < 0:
            raise ConfigError(f"tcp_reconnect_tries must be >= 0, got {self.tcp_reconnect_tries}")
        if self.replay_window_packets and self.replay_window_packets < 32:
            raise ConfigError("replay_window_packets must be 0 (off) or at least 32 (RFC 4303 §3.4.3)")
        for name in ("additional_key_exchanges", "accepted_additional_kes"):
            methods = getattr(self, name)
            if not isinstance(methods, tuple | list) or any(m not in SUPPORTED_ADDITIONAL_KES for m in methods):
                raise ConfigError(f"{name} must be drawn from {SUPPORTED_ADDITIONAL_KES}, got {methods!r}")
            object.__setattr__(self, name, tuple(methods))  # a JSON list from a scenario file works too
        if len(self.additional_key_exchanges) > 7:
            raise ConfigError("at most 7 additional key exchanges (RFC 9370 §2.2.1)")
        if (
            isinstance(self.path_mtu_bytes, bool)
            or not isinstance(self.path_mtu_bytes, int)
            or not (MIN_PATH_MTU_BYTES <= self.path_mtu_bytes <= 65535)
        ):
            raise ConfigError(f"path_mtu_bytes must be {MIN_PATH_MTU_BYTES}..65535, got {self.path_mtu_bytes!r}")
        if (
            isinstance(self.fragment_pmtud_tries, bool)
            or not isinstance(self.fragment_pmtud_tries, int)
            or self.fragment_pmtud_tries < 0
        ):
            raise ConfigError(f"fragment_pmtud_tries must be a whole number >= 0, got {self.fragment_pmtud_tries!r}")
        if self.oversize_udp not in OVERSIZE_UDP_POLICIES:
            raise ConfigError(
                f"oversize_udp must be one of {', '.join(OVERSIZE_UDP_POLICIES)}, got {self.oversize_udp!r}"
            )
        if self.separate_transports and self.transport == "tcp":
            raise ConfigError("separate_transports starts IKE_SA_INIT over UDP: it needs transport 'udp' or 'fallback'")
        if self.auth not in AUTH_METHODS:
            raise ConfigError(f"auth must be one of {', '.join(AUTH_METHODS)}, got {self.auth!r}")
        if self.auth == "signature":
            if self.credential is None or not self.trust_anchors:
                raise ConfigError("auth 'signature' needs a credential and trust_anchors")
            if self.validation_time is None or self.validation_time.tzinfo is None:
                raise ConfigError("auth 'signature' needs a timezone-aware validation_time")
        if self.id_type not in ID_TYPES:
            raise ConfigError(f"id_type must be one of {', '.join(ID_TYPES)}, got {self.id_type!r}")
        if self.id_type == "dn" and self.auth != "signature":
            raise ConfigError("id_type 'dn' names our certificate's subject: it needs auth 'signature'")

    @property
    def response_timeout_s(self) -> float:
        """The whole retransmission schedule: how long a request may wait for its response."""
        return self.retransmit_s * (2 ** (self.retransmit_tries + 1) - 1)
