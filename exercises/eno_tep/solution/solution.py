"""eno_tep, reference solution (not handed out by `tcplab exercise start`)."""

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
    if client.passive_role == server.passive_role:
        return None  # both b = 0 or both b = 1: no roles (RFC 8547 §4.3)
    host_a, host_b = (server, client) if client.passive_role else (client, server)
    for tep in reversed(host_b.teps):  # B lists TEPs in increasing priority (§4.5)
        if tep in host_a.teps:
            return tep
    return None  # no common TEP, or a vacuous option (§4.6)
