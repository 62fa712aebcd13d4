"""Field names as the RFCs spell them, with the section that defines each (for the Packets view)."""

from __future__ import annotations

from typing import Any

from rich.style import Style
from rich.text import Text

RFC_URL = "https://www.rfc-editor.org/rfc/rfc{rfc}#section-{section}"

TCP_HEADER = ("9293", "3.1")  # RFC 9293 §3.1 Header Format

# option kind (as the trace names it) -> (RFC name, rfc, section)
TCP_OPTIONS: dict[str, tuple[str, str, str]] = {
    "MSS": ("Maximum Segment Size", "9293", "3.7.1"),
    "WS": ("Window Scale", "7323", "2.2"),
    "SACK_PERM": ("SACK-Permitted", "2018", "2"),
    "SACK": ("SACK", "2018", "3"),
    "TS": ("Timestamps", "7323", "3.2"),
    "30": ("Multipath TCP", "8684", "3"),
    "69": ("TCP-ENO", "8547", "4"),
    "253": ("Experimental (RFC 6994 ExID)", "6994", "3"),
}

# MPTCP option subtype (RFC 8684 §7.4 registry) -> (name, section)
MPTCP_SUBTYPES: dict[int, tuple[str, str]] = {
    0x0: ("MP_CAPABLE", "3.1"),
    0x1: ("MP_JOIN", "3.2"),
    0x2: ("DSS", "3.3"),
    0x3: ("ADD_ADDR", "3.4.1"),
    0x4: ("REMOVE_ADDR", "3.4.2"),
    0x5: ("MP_PRIO", "3.3.8"),
    0x6: ("MP_FAIL", "3.7"),
    0x7: ("MP_FASTCLOSE", "3.5"),
    0x8: ("MP_TCPRST", "3.6"),
}
MPTCP_BY_NAME = {name: section for name, section in MPTCP_SUBTYPES.values()}

FLAG_NAMES = {"F": "FIN", "S": "SYN", "R": "RST", "P": "PSH", "A": "ACK", "U": "URG", "E": "ECE", "C": "CWR"}


def link(rfc: str, section: str) -> str:
    return RFC_URL.format(rfc=rfc, section=section)


def cite(rfc: str, section: str) -> tuple[str, str]:
    return (rfc, section)


def cite_text(rfc: str, section: str) -> Text:
    """``RFC 9293 §3.1``, underlined and linked to the section (OSC 8 where the terminal has it)."""
    return Text(f"RFC {rfc} §{section}", style=Style(link=link(rfc, section), underline=True))


def describe_option(opt: dict[str, Any]) -> list[tuple[str, str, tuple[str, str]]]:
    """(field name, value, citation markup) lines for one option as the trace records it."""
    kind = str(opt.get("kind"))
    name, rfc, section = TCP_OPTIONS.get(kind, (f"Option kind {kind}", "9293", "3.1"))
    lines: list[tuple[str, str, tuple[str, str]]] = []
    if kind == "MSS":
        lines.append((name, str(opt.get("value")), cite(rfc, section)))
    elif kind == "WS":
        lines.append((f"{name}: shift.cnt", str(opt.get("shift")), cite(rfc, section)))
    elif kind == "SACK_PERM":
        lines.append((name, "present", cite(rfc, section)))
    elif kind == "TS":
        lines.append((f"{name}: TSval", str(opt.get("tsval")), cite(rfc, section)))
        lines.append((f"{name}: TSecr", str(opt.get("tsecr")), cite(rfc, section)))
    elif kind == "SACK":
        blocks = opt.get("blocks") or []
        for i, block in enumerate(blocks, 1):
            lines.append((f"{name}: block {i} Left Edge, Right Edge", f"{block[0]}, {block[1]}", cite(rfc, section)))
    elif kind == "30":
        lines += _mptcp_lines(str(opt.get("data", "")))
    elif kind in ("69", "253"):
        lines += _eno_lines(kind, str(opt.get("data", "")))
    else:
        lines.append((name, str(opt.get("data", "")), cite(rfc, section)))
    return lines


def _mptcp_lines(data_hex: str) -> list[tuple[str, str, tuple[str, str]]]:
    try:
        data = bytes.fromhex(data_hex)
    except ValueError:
        data = b""
    if not data:
        return [("Multipath TCP", "(empty)", cite("8684", "3"))]
    subtype = data[0] >> 4
    name, section = MPTCP_SUBTYPES.get(subtype, (f"subtype {subtype:#x}", "7.4"))
    return [
        ("Multipath TCP: Subtype", name, cite("8684", section)),
        ("Multipath TCP: option data", data_hex, cite("8684", section)),
    ]


def _eno_lines(kind: str, data_hex: str) -> list[tuple[str, str, tuple[str, str]]]:
    try:
        from lab.wire.eno import TepSuboption, decode_syn_eno_option

        data = bytes.fromhex(data_hex)
        option = decode_syn_eno_option(bytes((int(kind), 2 + len(data))) + data)
    except Exception:  # any decode problem: show the bytes as they are
        return [("TCP-ENO: contents", data_hex or "(empty)", cite("8547", "4"))]
    glob = option.global_suboption
    lines = [
        ("TCP-ENO: global suboption a (application-aware)", str(int(glob.application_aware)), cite("8547", "4.2")),
        ("TCP-ENO: global suboption b (passive role)", str(int(glob.passive_role)), cite("8547", "4.2")),
    ]
    for sub in option.suboptions:
        if isinstance(sub, TepSuboption):
            value = f"{sub.tep_id:#04x}" + (f" v=1 data={sub.data.hex()}" if sub.v else "")
            lines.append(("TCP-ENO: TEP identifier", value, cite("8547", "4.1")))
    return lines


def option_summary(opt: dict[str, Any]) -> str:
    kind = str(opt.get("kind"))
    if kind == "MSS":
        return f"MSS={opt.get('value')}"
    if kind == "WS":
        return f"WS={opt.get('shift')}"
    if kind == "TS":
        return "TS"
    if kind == "SACK":
        return f"SACK×{len(opt.get('blocks') or [])}"
    if kind == "30":
        try:
            subtype = bytes.fromhex(str(opt.get("data", "")))[0] >> 4
            return MPTCP_SUBTYPES.get(subtype, (f"MPTCP/{subtype}", ""))[0]
        except (ValueError, IndexError):
            return "MPTCP"
    if kind == "69":
        return "ENO"
    return kind


# --- IKEv2, ESP and their TCP encapsulation (the Packets view's detail of ike/esp/iketcp records)

IKE_HEADER = ("7296", "3.1")  # RFC 7296 §3.1 IKE Header
EXCHANGE_TYPES = {  # RFC 7296 §3.1, RFC 9242 §3.2, RFC 9370 §2.2.4
    34: "IKE_SA_INIT",
    35: "IKE_AUTH",
    36: "CREATE_CHILD_SA",
    37: "INFORMATIONAL",
    43: "IKE_INTERMEDIATE",
    44: "IKE_FOLLOWUP_KE",
}
EXCHANGE_NUMBERS = {name: number for number, name in EXCHANGE_TYPES.items()}
ESP_SPI = ("4303", "2.1")
ESP_SEQ = ("4303", "2.2")
ESP_PAYLOAD = ("4303", "2.3")
IKETCP_LENGTH = ("9329", "3")  # the 2-octet Length includes itself
IKETCP_IKE = ("9329", "3.1")  # Length + Non-ESP Marker + IKE message
IKETCP_ESP = ("9329", "3.2")  # Length + ESP packet
IKETCP_PREFIX = ("9329", "4")  # "IKETCP" from the TCP originator
UDP_ESP = ("3948", "2.1")  # UDP-encapsulated ESP
UDP_NON_ESP_MARKER = ("3948", "2.2")  # IKE on UDP 4500 after a 4-octet Non-ESP Marker
NAT_KEEPALIVE = ("3948", "2.3")
ESP_DROP_REASONS = {  # why a receiver discards an ESP packet
    "duplicate": ("4303", "3.4.3"),
    "too_old": ("4303", "3.4.3"),
    "integrity": ("4303", "3.4.4"),
    "bad_padding": ("4303", "2.4"),
    "unknown_spi": ("4303", "3.4.2"),
    "wrong_spi": ("4303", "3.4.2"),
}

Line = tuple[str, str, "tuple[str, str] | None"]


def _exchange_name(value: Any) -> str:
    if isinstance(value, int):
        return EXCHANGE_TYPES.get(value, str(value))
    return str(value)


def ike_transport(data: dict[str, Any]) -> Line:
    """Where an IKE message travelled, with the document that defines that framing."""
    transport, port = data.get("transport"), data.get("port")
    if transport == "tcp":
        return ("Transport", f"TCP port {port}: Length, Non-ESP Marker, IKE message", IKETCP_IKE)
    if port == 4500:
        return ("Transport", "UDP port 4500 after a Non-ESP Marker (0x00000000)", UDP_NON_ESP_MARKER)
    return ("Transport", f"UDP port {port}", ("7296", "2"))


def describe_ike(name: str, data: dict[str, Any]) -> list[Line]:
    """The fields of an ``ike`` segment record, as RFC 7296 §3.1 names them."""
    if data.get("kind") == "nat_keepalive":
        return [("NAT-Keepalive", "one octet 0xFF on UDP port 4500", NAT_KEEPALIVE)]
    if name == "segment_dropped":
        lines: list[Line] = [("Discarded", str(data.get("reason")), None)]
        if data.get("detail"):
            lines.append(("Detail", str(data["detail"]), None))
        return lines
    exchange = _exchange_name(data.get("exchange"))
    number = EXCHANGE_NUMBERS.get(exchange)
    lines = [
        ("IKE SA Initiator's SPI", str(data.get("sa")), IKE_HEADER),
        ("Exchange Type", f"{exchange}" + (f" ({number})" if number else ""), IKE_HEADER),
        ("Flags: R (Response)", "1" if data.get("response") else "0 (request)", IKE_HEADER),
        ("Message ID", str(data.get("message_id")), IKE_HEADER),
        ("Length (octets, header included)", str(data.get("length")), IKE_HEADER),
        ike_transport(data),
    ]
    if data.get("retransmission"):
        lines.append(("Retransmission", f"#{data['retransmission']}", ("7296", "2.1")))
    if data.get("resent"):
        lines.append(("Sent again", str(data["resent"]), ("7296", "2.1")))
    if data.get("stateless"):
        lines.append(("Stateless answer", str(data["stateless"]), ("7296", "2.6")))
    return lines


def describe_esp(name: str, data: dict[str, Any]) -> list[Line]:
    """The fields of an ``esp`` segment record, as RFC 4303 §2 names them (no plaintext is ever recorded)."""
    lines: list[Line] = [
        ("Security Parameters Index (SPI)", str(data.get("spi")), ESP_SPI),
        ("Sequence Number", str(data.get("seq")), ESP_SEQ),
    ]
    if name == "segment_dropped":
        reason = str(data.get("reason"))
        lines.append(("Discarded", reason, ESP_DROP_REASONS.get(reason)))
        if data.get("detail"):
            lines.append(("Detail", str(data["detail"]), None))
        return lines
    lines.append(("ESP packet length (octets)", str(data.get("length")), ("4303", "2")))
    if data.get("inner_length") is not None:
        lines.append(("Payload Data: the inner packet (octets)", str(data["inner_length"]), ESP_PAYLOAD))
    transport = data.get("transport")
    if transport == "tcp":
        lines.append(("Transport", "TCP: Length, then the ESP packet", IKETCP_ESP))
    elif transport == "udp":
        lines.append(("Transport", "UDP port 4500, the ESP packet right after the UDP header", UDP_ESP))
    return lines


def describe_iketcp(name: str, data: dict[str, Any]) -> list[Line]:
    """One frame of an RFC 9329 stream (``iketcp`` segment records)."""
    kind = data.get("kind")
    length = data.get("length")
    if name == "segment_dropped":
        lines: list[Line] = [("Discarded", str(data.get("reason")), IKETCP_LENGTH)]
        for key in ("offset", "length"):
            if data.get(key) is not None:
                lines.append((key, str(data[key]), None))
        return lines
    if kind == "prefix":
        return [("Stream Prefix", '"IKETCP" (0x494b45544350), sent once by the TCP originator', IKETCP_PREFIX)]
    if kind == "ike":
        lines = []
        if name == "segment_sent" and isinstance(length, int):
            lines.append(("Length (octets, itself included)", str(length + 2), IKETCP_LENGTH))
            lines.append(("Non-ESP Marker", "0x00000000", IKETCP_IKE))
            lines.append(("IKE message (octets)", str(length - 4), IKE_HEADER))
        else:
            lines.append(("Non-ESP Marker", "0x00000000", IKETCP_IKE))
            lines.append(("IKE message (octets)", str(length), IKE_HEADER))
        if data.get("exchange_type") is not None:
            exchange = _exchange_name(data["exchange_type"])
            lines.append(("Exchange Type", exchange, IKE_HEADER))
            lines.append(("Message ID", str(data.get("message_id")), IKE_HEADER))
            lines.append(("Flags: R (Response)", "1" if data.get("response") else "0", IKE_HEADER))
        return lines
    if kind == "esp":
        lines = []
        if name == "segment_sent" and isinstance(length, int):
            lines.append(("Length (octets, itself included)", str(length + 2), IKETCP_LENGTH))
        lines.append(("ESP packet (octets)", str(length), IKETCP_ESP))
        spi = data.get("spi")
        if spi is not None:
            lines.append(
                ("Security Parameters Index (SPI)", f"{spi:#010x}" if isinstance(spi, int) else str(spi), ESP_SPI)
            )
        if data.get("seq") is not None:
            lines.append(("Sequence Number", str(data["seq"]), ESP_SEQ))
        return lines
    return [(str(k), str(v), None) for k, v in data.items()]
