"""tcp_syn_options, reference solution (not handed out by `tcplab exercise start`)."""

from __future__ import annotations

from scapy.layers.inet import IP, TCP

from exercises.scapy_layers import eno_option


def craft_syn(h1: str, h2: str):
    options = [("MSS", 536), ("SAckOK", b""), eno_option(0x22, 0x21)]
    return IP(src=h1, dst=h2) / TCP(sport=40404, dport=7, flags="S", seq=1000, options=options)
