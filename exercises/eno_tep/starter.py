"""eno_tep: predict the TEP that TCP-ENO negotiates (RFC 8547 §4.3, §4.5, §4.6).

``predict(client_option, server_option)`` gets the ENO option of the SYN (sent
by the active opener) and of the SYN-ACK (sent by the passive opener) exactly
as on the wire: kind 69, length, suboptions. Return the negotiated TEP
identifier (an int such as 0x21), or None if ENO falls back to plain TCP.

``parse`` is complete and correct; ``predict`` implements a rule that is
plausible and wrong. Fix it, then run:

    tcplab exercise check eno_tep
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Offer:
    passive_role: bool  # the global suboption's b bit (RFC 8547 §4.2); 0 when there is no global suboption
    application_aware: bool  # its a bit
    teps: list[int]  # TEP identifiers in the order they were sent (v bit and data stripped)


def parse(option: bytes) -> Offer:
    """Read a SYN-form ENO option (RFC 8547 Figure 2 and §4.4)."""
    if option[0] != 69 or option[1] != len(option):
        raise ValueError(f"not one whole kind-69 option: {option.hex()}")
    body = option[2:]
    b_bit = a_bit = False
    seen_global = False
    teps: list[int] = []
    i = 0
    while i < len(body):
        byte = body[i]
        v, glt = byte & 0x80, byte & 0x7F
        if not v and glt < 0x20:  # global suboption: only the first counts
            if not seen_global:
                b_bit, a_bit, seen_global = bool(byte & 0x01), bool(byte & 0x02), True
            i += 1
        elif not v:  # TEP identifier without data
            teps.append(glt)
            i += 1
        elif glt >= 0x20:  # TEP with v = 1 and no length byte: its data runs to the end
            teps.append(glt)
            break
        else:  # length byte 100nnnnn: a TEP with nnnnn + 1 bytes of data follows
            length = (byte & 0x1F) + 1
            teps.append(body[i + 1] & 0x7F)
            i += 2 + length
    return Offer(b_bit, a_bit, teps)


def predict(client_option: bytes, server_option: bytes) -> int | None:
    client, server = parse(client_option), parse(server_option)
    # TODO: this is the rule many people guess, and it is not RFC 8547's.
    # Who plays host A and who plays host B? Whose order decides? When does ENO give up?
    for tep in client.teps:
        if tep in server.teps:
            return tep
    return None
