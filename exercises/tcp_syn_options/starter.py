"""tcp_syn_options: build a SYN by hand with Scapy and see what h2 answers.

``craft_syn(h1, h2)`` gets h1's and h2's addresses and returns one packet
that the grader injects at h1 (it leaves h1's interface; h1's own TCP never
hears of it). Make it a SYN to h2's echo service, port 7 that

* announces an MSS of 536 bytes,
* offers SACK (SACK-permitted),
* does NOT offer window scaling and does NOT offer timestamps,
* carries a TCP-ENO option (kind 69) offering TEP 0x22 then 0x21, as host A (b = 0).

``exercises.scapy_layers.eno_option`` builds the ENO option. Then run:

    tcplab exercise check tcp_syn_options

and look at h2's SYN-ACK and at what h1's stack does with it.
"""

from __future__ import annotations

from scapy.layers.inet import IP, TCP


def craft_syn(h1: str, h2: str):
    # TODO: these are the options a modern stack sends; the task wants others (and an ENO option)
    options = [("MSS", 1460), ("SAckOK", b""), ("Timestamp", (1, 0)), ("NOP", None), ("WScale", 7)]
    return IP(src=h1, dst=h2) / TCP(sport=40404, dport=7, flags="S", seq=1000, options=options)
