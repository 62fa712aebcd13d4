"""When a large IKE message meets a small path: send it whole, fragment it (RFC 7383), or go to TCP (RFC 9329).

Hybrid post-quantum key exchanges (an ML-KEM-1024 KE payload alone is 1568
octets) and certificate chains make IKE_INTERMEDIATE and IKE_AUTH larger
than one datagram on a 1500-octet path. Over UDP there are three ways on,
as lab.ike.fragmentation.choose_udp_sending names them:

* ``"whole"``: the message fits.
* ``"fragments"``: both ends sent IKEV2_FRAGMENTATION_SUPPORTED, the
  message is encrypted (IKE_SA_INIT never is), so it goes as SKF fragments
  that each fit; nothing below IKE has to fragment.
* ``"ip-fragments"``: the peer did not offer RFC 7383, so the datagram is
  larger than the path and the IP layer must fragment it. Many firewalls
  and carrier NATs drop IP fragments, and then the exchange dies after
  every retransmission and the UDP timeout.

``IkeConfig(oversize_udp="tcp")`` is this module's policy for the third
case: an initiator whose next message before IKE_AUTH completes would need
IP fragments gives the UDP attempt up at once, skips any further UDP ports,
and starts over on TCP (RFC 9329 §5: a new IKE SA on the new transport),
where message size does not matter. The decision needs the peer's
IKE_SA_INIT answer (only then is it known whether it offered RFC 7383), so
it costs one UDP round trip, not the whole UDP timeout. A responder cannot
change transport (it is the TCP Responder) and always sends what it must.
``oversize_udp="send"`` (the default) sends the message whole and leaves
the outcome to the path, as implementations without such a policy do; if
the path drops it, the request goes unanswered through every
retransmission (``response_timeout_s``) and only then does a ``fallback``
initiator start over on TCP (lab.ike.endpoint).

What the IETF is doing about it: the IPsecME working group took up
"Separate Transports for IKE and ESP" (draft-ietf-ipsecme-ikev2-reliable-transport,
V. Smyslov and T. Reddy; WG document since -00 of October 2025, replacing
draft-smyslov-ipsecme-ikev2-reliable-transport; revisions -05 of May 2026
and -07 found in the IETF archive; an Internet-Draft, work in progress,
not an RFC). Its abstract: IKEv2 can run over UDP or TCP, but with TCP
(RFC 9329) the IPsec tunnels use TCP too; the draft decouples the two so
that IKEv2 runs over TCP while the tunnels stay on unreliable transport,
"to effectively exchange large blobs of data (e.g., when post-quantum
algorithms are employed)" without the performance problems of ESP in TCP.
Its introduction repeats that UDP stays the preferred transport and TCP is
used when UDP datagrams cannot get through. Sources: the datatracker page
https://datatracker.ietf.org/doc/draft-ietf-ipsecme-ikev2-reliable-transport/
and the archived texts (www.ietf.org/archive/id/draft-ietf-ipsecme-ikev2-reliable-transport-07.xml).
The earlier attempts it builds on: RFC 9242 (IKE_INTERMEDIATE, which exists
so that RFC 7383 can fragment what IKE_SA_INIT could not carry) and
draft-ietf-ipsecme-ike-tcp (2012, "transport of large messages over paths
where fragments are dropped", never published).

What the lab implements: RFC 7383 and the policy above, whose ESP follows
IKE onto TCP as RFC 9329 specifies. The draft's negotiation of a separate
ESP transport is not implemented: its wire details were not checked
against its text here, and a half-remembered notify would be worse than
none.
"""

from __future__ import annotations

from lab.ike.fragmentation import choose_udp_sending

OVERSIZE_UDP_POLICIES = ("send", "tcp")


def oversize_action(
    message_len: int,
    *,
    max_message_len: int,
    fragmentation_negotiated: bool,
    policy: str,
    initiator: bool,
    before_ike_auth_done: bool,
    response: bool,
) -> str:
    """What to do with an encrypted message of ``message_len`` octets over UDP.

    Returns ``"whole"``, ``"fragments"``, ``"ip-fragments"`` (send it whole
    and let the IP layer fragment it) or ``"tcp"`` (give this UDP attempt
    up and start over on TCP: only an initiator's request while the SA is
    being set up, with ``policy="tcp"``). Raises ValueError for an unknown policy.
    """
    if policy not in OVERSIZE_UDP_POLICIES:
        raise ValueError(f"oversize policy must be one of {OVERSIZE_UDP_POLICIES}, got {policy!r}")
    how = choose_udp_sending(
        message_len, max_message_len=max_message_len, encrypted=True, fragmentation_negotiated=fragmentation_negotiated
    )
    if how == "ip-fragments" and policy == "tcp" and initiator and before_ike_auth_done and not response:
        return "tcp"
    return how
