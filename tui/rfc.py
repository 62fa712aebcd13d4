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
