"""Separate transports for IKE and ESP (draft-ietf-ipsecme-ikev2-reliable-transport): the negotiation.

The draft keeps ESP on unreliable transport while IKE, whose post-quantum
messages are large, moves to TCP (RFC 9329):

* The initiator starts IKE_SA_INIT over UDP to port 4500 (RFC 3948 framing,
  IKE behind the non-ESP marker) and puts a SEPARATE_TRANSPORTS status
  notify in its request.
* A responder that supports and allows it returns the notify in its
  IKE_SA_INIT response.
* With the notify in the response the initiator MUST carry every later IKE
  exchange (IKE_INTERMEDIATE, IKE_AUTH, INFORMATIONAL, CREATE_CHILD_SA) over
  TCP port 4500 with RFC 9329 encapsulation; ESP for the Child SAs stays on
  UDP (UDP-encapsulated on port 4500, RFC 3948). Without it, everything
  continues over UDP as in plain RFC 7296.

What is NOT known from the draft's text and is this lab's choice: the
notify's number (``SEPARATE_TRANSPORTS`` below) and its payload, here empty
(Protocol ID 0, SPI Size 0, no data) like the other capability notifies
(IKEV2_FRAGMENTATION_SUPPORTED, RFC 7383 §2.3). A notify that carries data or
an SPI is not understood and is ignored (RFC 7296 §3.10.1: an unrecognised
status notify MUST be ignored), and the reason is given back so the SA can
record it; several copies count as one.
"""

from __future__ import annotations

from collections.abc import Sequence

from lab.wire.ikev2 import NotifyPayload, Payload

# The draft's IANA value is TBD (not yet assigned in the "IKEv2 Notify Message Status Types" registry).
# Until then the lab uses a number from the status Private Use range (RFC 7296 §3.10.1, IANA: 40960-65535),
# clear of the low private-use values some implementations use for their own notifies.
# CHANGE THIS once IANA assigns SEPARATE_TRANSPORTS: peers running the final specification will not know 45000.
SEPARATE_TRANSPORTS = 45000


def separate_transports_notify() -> NotifyPayload:
    """The SEPARATE_TRANSPORTS notify for IKE_SA_INIT: Protocol ID 0, no SPI, no data."""
    return NotifyPayload(SEPARATE_TRANSPORTS)


def separate_transports_offer(payloads: Sequence[Payload]) -> tuple[bool, str]:
    """Whether an IKE_SA_INIT message offers separate transports, and why a notify found was ignored.

    ``(True, "")``: at least one well-formed notify. ``(False, "")``: none.
    ``(False, reason)``: only notifies of this type carrying an SPI, data or a Protocol ID,
    which are not what we understand and are ignored.
    """
    found = [p for p in payloads if isinstance(p, NotifyPayload) and p.notify_type == SEPARATE_TRANSPORTS]
    if not found:
        return False, ""
    if any(n.protocol_id == 0 and not n.spi and not n.data for n in found):
        return True, ""
    bad = found[0]
    parts = []
    if bad.protocol_id:
        parts.append(f"protocol id {bad.protocol_id}")
    if bad.spi:
        parts.append(f"SPI of {len(bad.spi)} octets")
    if bad.data:
        parts.append(f"{len(bad.data)} octets of data")
    return False, "SEPARATE_TRANSPORTS with " + ", ".join(parts) + " (expected empty): ignored"
