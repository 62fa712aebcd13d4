"""Scapy helpers for the exercises: what Scapy does not know about, built on tcplab's own codecs.

Scapy carries an option kind it does not know as ``(kind, bytes)`` in
``TCP(options=[...])``; these helpers build and read the ones the lab uses:

* TCP-ENO (RFC 8547, kind 69): :func:`eno_option` makes the ``(69, bytes)``
  pair for a SYN with a hand-picked TEP list; :func:`eno_from_packet` reads
  one back as a ``lab.wire.eno.SynEnoOption``.
* IKE and ESP over TCP (RFC 9329): :class:`IketcpFrame` is a Scapy layer for
  one length-prefixed frame; :func:`iketcp_frames` splits a stream (after the
  ``IKETCP`` prefix) into frames; :func:`iketcp_ike` and :func:`iketcp_esp`
  frame a message.
* tcpcrypt (RFC 8548): :func:`decode_tcpcrypt_init1` reads an INIT1 message
  from a TCP payload.

Importing this module imports Scapy (install it with ``pip install scapy``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from scapy.fields import FieldLenField, StrLenField
from scapy.layers.inet import TCP
from scapy.packet import Packet

from lab.wire.buffer import Buffer
from lab.wire.eno import (
    ENO_KIND,
    GlobalSuboption,
    SynEnoOption,
    TepSuboption,
    decode_syn_eno_option,
    push_syn_eno_option,
)
from lab.wire.iketcp import STREAM_PREFIX
from lab.wire.ikev2 import NON_ESP_MARKER
from lab.wire.tcpcrypt import Init1, pull_init1

# --- TCP-ENO -------------------------------------------------------------------------------


def eno_option(
    *teps: int | TepSuboption,
    passive_role: bool = False,
    application_aware: bool = False,
    global_suboption: bool = True,
) -> tuple[int, bytes]:
    """``(69, suboptions)`` for ``TCP(options=[...])``: a global suboption (b and a bits), then the TEPs in order.

    A TEP is an identifier (0x20..0x7f) or a ``TepSuboption`` with data.
    Raises ValueError for a TEP that has no encoding or an option over 40 bytes.
    """
    subs: list[GlobalSuboption | TepSuboption] = []
    if global_suboption:
        subs.append(GlobalSuboption(passive_role=passive_role, application_aware=application_aware))
    subs += [t if isinstance(t, TepSuboption) else TepSuboption(int(t)) for t in teps]
    raw = push_syn_eno_option(SynEnoOption(suboptions=tuple(subs)))
    return ENO_KIND, raw[2:]


def eno_from_options(options: Iterable[tuple[Any, Any]]) -> SynEnoOption | None:
    """The SYN-form ENO option among Scapy-decoded TCP options, or None. Raises DecodeError when malformed."""
    for kind, value in options:
        if kind == ENO_KIND:
            data = bytes(value or b"")
            return decode_syn_eno_option(bytes((ENO_KIND, 2 + len(data))) + data)
    return None


def eno_from_packet(packet: Packet) -> SynEnoOption | None:
    """The ENO option of a Scapy packet's TCP layer, or None."""
    if TCP not in packet:
        return None
    return eno_from_options(packet[TCP].options)


# --- IKETCP framing (RFC 9329 §3) ------------------------------------------------------------


class IketcpFrame(Packet):
    """One RFC 9329 frame: a 2-byte Length that counts itself, then the message (IKE with its
    non-ESP marker, an ESP packet, or the 1-byte NAT-keepalive 0xFF)."""

    name = "IKETCP frame"
    fields_desc = [  # noqa: RUF012 - Scapy's layer declaration
        FieldLenField("length", None, length_of="message", fmt="!H", adjust=lambda pkt, x: x + 2),
        StrLenField("message", b"", length_from=lambda pkt: max(0, pkt.length - 2)),
    ]

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s  # what follows is the next frame

    @property
    def kind(self) -> str:
        """``ike``, ``esp``, ``keepalive`` or ``empty``."""
        msg = bytes(self.message)
        if not msg:
            return "empty"
        if msg == b"\xff":
            return "keepalive"
        return "ike" if msg[:4] == NON_ESP_MARKER else "esp"


def iketcp_frames(stream: bytes, *, prefix: bool = True) -> list[IketcpFrame]:
    """Split a TCP Originator's stream into frames (the ``IKETCP`` prefix first when ``prefix``).

    Raises ValueError for a missing prefix or a Length below 2; a partial
    frame at the end is left out.
    """
    pos = 0
    if prefix:
        if stream[:6] != STREAM_PREFIX:
            raise ValueError(f"stream starts with {stream[:6].hex()}, not the IKETCP prefix")
        pos = len(STREAM_PREFIX)
    frames = []
    while pos + 2 <= len(stream):
        length = int.from_bytes(stream[pos : pos + 2], "big")
        if length < 2:
            raise ValueError(f"Length {length} at offset {pos} (RFC 9329 §3.2: fatal)")
        if pos + length > len(stream):
            break
        frames.append(IketcpFrame(stream[pos : pos + length]))
        pos += length
    return frames


def iketcp_ike(message: bytes) -> IketcpFrame:
    """Frame an IKE message (header first): Length, non-ESP marker, message."""
    return IketcpFrame(message=NON_ESP_MARKER + message)


def iketcp_esp(packet: bytes) -> IketcpFrame:
    """Frame an ESP packet (SPI first). Raises ValueError for SPI 0, which would read as a marker."""
    if packet[:4] == NON_ESP_MARKER:
        raise ValueError("ESP SPI 0 must not be sent (RFC 9329 §3.2)")
    return IketcpFrame(message=packet)


# --- tcpcrypt (RFC 8548) -------------------------------------------------------------------


def decode_tcpcrypt_init1(payload: bytes, *, tep: int) -> Init1:
    """The INIT1 message at the start of a tcpcrypt connection's payload. Raises DecodeError when malformed."""
    return pull_init1(Buffer(payload), tep=tep)


# --- Multipath TCP ---------------------------------------------------------------------------
# Scapy 2.x has no MPTCP layer: a kind-30 option travels as ``(30, data)`` in ``TCP(options=[...])``.


def mptcp_option(opt: Any) -> tuple[int, bytes]:
    """``(30, data)`` for ``TCP(options=[...])`` from a ``lab.wire.mptcp`` option object
    (``MpJoinSyn``, ``MpJoinAck``, ``Dss``, ...). Raises ValueError or TypeError as
    ``lab.wire.mptcp.push_mptcp_option``."""
    from lab.wire.mptcp import MPTCP_KIND, push_mptcp_option

    return MPTCP_KIND, push_mptcp_option(opt)


def mp_join_syn(token: int, *, nonce: int = 0, address_id: int = 0, backup: bool = False) -> tuple[int, bytes]:
    """The MP_JOIN option of a SYN (RFC 8684 §3.2): the *receiver's* token and the sender's random
    number. Raises ValueError for a field that does not fit (token and nonce are 32 bits)."""
    from lab.wire.mptcp import MpJoinSyn

    return mptcp_option(MpJoinSyn(address_id=address_id, token=token, nonce=nonce, backup=backup))


def mp_join_ack(hmac: bytes) -> tuple[int, bytes]:
    """The MP_JOIN option of the third ACK (RFC 8684 §3.2): the leftmost 160 bits (20 bytes) of the
    sender's HMAC. Raises ValueError for an HMAC of another length."""
    from lab.wire.mptcp import MpJoinAck

    return mptcp_option(MpJoinAck(hmac=bytes(hmac)))


def mptcp_from_packet(packet: Packet) -> list[Any]:
    """The MPTCP options of a Scapy packet, decoded (``lab.wire.mptcp`` objects); [] when it has none.
    Raises lab.errors.DecodeError for a malformed one."""
    from lab.wire.mptcp import MPTCP_KIND, pull_mptcp_option

    if TCP not in packet:
        return []
    tcp = packet[TCP]
    flags = int(tcp.flags)
    out = []
    for kind, value in tcp.options:
        if kind in (MPTCP_KIND, "MPTCP") and isinstance(value, (bytes, bytearray)):
            out.append(pull_mptcp_option(bytes(value), syn=bool(flags & 0x02), ack=bool(flags & 0x10)))
    return out
