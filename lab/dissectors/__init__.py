"""Wireshark/tshark 4.0 Lua dissectors for what Wireshark does not decode itself.

``eno.lua`` decodes the TCP-ENO option (RFC 8547: kind 69 and the experimental
253/0x454E, SYN and non-SYN forms; filter ``eno``), ``tcpcrypt.lua`` the tcpcrypt
stream after a negotiated ENO (RFC 8548: Init1/Init2 and frames; filter
``tcpcrypt``; needs ``eno.lua``), ``iketcp.lua`` IKE and ESP over TCP (RFC 9329:
the ``IKETCP`` prefix and the length framing, handing IKE to Wireshark's
``isakmp`` and ESP to ``esp`` so exported keys decrypt in place; filter ``iketcp``).

Two TCP preferences make them see every stream: ``tcp.try_heuristic_first``
(a port another dissector owns, such as X11's 6000-6063, is tried with ours
first; they claim only streams they recognise) and
``tcp.reassemble_out_of_order`` (frames cut by a lost segment are put together
once the retransmission arrives). ``iketcp.tcp_ports`` adds ports such as 443
for Wireshark setups without heuristics first.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

DIRECTORY = Path(__file__).resolve().parent
SCRIPTS = ("eno.lua", "tcpcrypt.lua", "iketcp.lua")  # eno.lua first: tcpcrypt.lua reads its negotiation
IKETCP_PORTS = (4500, 443)
PREFERENCES = {
    "tcp.try_heuristic_first": "TRUE",
    "tcp.reassemble_out_of_order": "TRUE",
    "iketcp.tcp_ports": ",".join(str(p) for p in IKETCP_PORTS),
}
DEFAULT_PLUGIN_FOLDER = Path("~/.local/lib/wireshark/plugins")  # Wireshark's personal Lua plugins folder on Linux


def scripts() -> list[Path]:
    """The dissector files, in the order to load them."""
    return [DIRECTORY / name for name in SCRIPTS]


def tshark_args(*, preferences: bool = True) -> list[str]:
    """tshark arguments that load the dissectors (and set :data:`PREFERENCES`)."""
    args: list[str] = []
    for path in scripts():
        args += ["-X", f"lua_script:{path}"]
    if preferences:
        for name, value in PREFERENCES.items():
            args += ["-o", f"{name}:{value}"]
    return args


def tshark_command_line() -> str:
    """The line to type: tshark with the dissectors on a capture."""
    return shlex.join(["tshark", *tshark_args(), "-r", "CAPTURE.pcap"])


def plugin_folder() -> Path:
    """Wireshark's personal Lua plugins folder, as the installed tshark reports it (``tshark -G folders``),
    else the Linux default. Never raises."""
    tshark = shutil.which("tshark")
    if tshark is not None:
        try:
            out = subprocess.run(
                [tshark, "-G", "folders"], capture_output=True, text=True, timeout=30, check=False
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == "Personal Lua Plugins" and value.strip():
                return Path(value.strip())
    return DEFAULT_PLUGIN_FOLDER.expanduser()


def preferences_lines() -> list[str]:
    """The lines for Wireshark's ``preferences`` file that :data:`PREFERENCES` stand for."""
    return [f"{name}: {value}" for name, value in PREFERENCES.items()]
