"""The TCP header (RFC 9293) and its options.

Options known here: End of Option List and No-Operation (RFC 9293), MSS
(RFC 9293), Window Scale and Timestamps (RFC 7323), SACK-Permitted and SACK
(RFC 2018). Every other kind decodes to :class:`UnknownOption` and encodes
back to the same bytes; MPTCP (kind 30) and TCP-ENO (kind 69) are read by
their extensions from there.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from lab.errors import DecodeError
from lab.wire.checksum import mod_ffff, pseudo_header_sum, transport_checksum_ok

TCP_PROTOCOL = 6  # IANA protocol number

# Flags (RFC 9293 §3.1, RFC 3168 for ECE/CWR)
FIN = 0x01
SYN = 0x02
RST = 0x04
PSH = 0x08
ACK = 0x10
URG = 0x20
ECE = 0x40
CWR = 0x80
FLAG_NAMES = ((FIN, "F"), (SYN, "S"), (RST, "R"), (PSH, "P"), (ACK, "A"), (URG, "U"), (ECE, "E"), (CWR, "C"))

# Option kinds
KIND_EOL = 0  # RFC 9293
KIND_NOP = 1  # RFC 9293
KIND_MSS = 2  # RFC 9293
KIND_WSCALE = 3  # RFC 7323
KIND_SACK_PERMITTED = 4  # RFC 2018
KIND_SACK = 5  # RFC 2018
KIND_TIMESTAMPS = 8  # RFC 7323

HEADER_LEN = 20
MAX_OPTIONS_LEN = 40

_HEADER = struct.Struct("!HHIIBBHHH")
_TS_FAST = b"\x01\x01\x08\x0a"
_TS_STRUCT = struct.Struct("!II")
_from_bytes = int.from_bytes


def flags_text(flags: int) -> str:
    """``0x12`` -> ``"SA"``: the conventional one-letter flag names."""
    return "".join(name for bit, name in FLAG_NAMES if flags & bit) or "."


@dataclass(frozen=True, slots=True)
class NoOperation:
    kind = KIND_NOP


@dataclass(frozen=True, slots=True)
class MaxSegmentSize:
    value: int
    kind = KIND_MSS


@dataclass(frozen=True, slots=True)
class WindowScale:
    shift: int
    kind = KIND_WSCALE


@dataclass(frozen=True, slots=True)
class SackPermitted:
    kind = KIND_SACK_PERMITTED


@dataclass(frozen=True, slots=True)
class Sack:
    blocks: tuple[tuple[int, int], ...]  # (left edge, right edge) pairs
    kind = KIND_SACK


@dataclass(frozen=True, slots=True)
class Timestamps:
    tsval: int
    tsecr: int
    kind = KIND_TIMESTAMPS


@dataclass(frozen=True, slots=True)
class UnknownOption:
    """Any other option kind, kept byte for byte (``data`` excludes kind and length)."""

    kind: int
    data: bytes


TcpOption = NoOperation | MaxSegmentSize | WindowScale | SackPermitted | Sack | Timestamps | UnknownOption

_NOP = NoOperation()
_SACK_PERMITTED = SackPermitted()


@dataclass(frozen=True, slots=True)
class TcpSegment:
    """A TCP segment. ``flags`` is the bitmask of the constants above."""

    src_port: int
    dst_port: int
    seq: int
    ack: int
    flags: int
    window: int
    options: tuple[TcpOption, ...] = ()
    payload: bytes = b""
    urgent: int = 0
    reserved: int = 0  # the 4 bits between data offset and flags

    @property
    def seg_len(self) -> int:
        """Sequence space the segment occupies (payload plus SYN and FIN)."""
        return len(self.payload) + (1 if self.flags & SYN else 0) + (1 if self.flags & FIN else 0)

    def option(self, cls: type) -> TcpOption | None:
        """The first option of class ``cls``, or None."""
        for opt in self.options:
            if type(opt) is cls:
                return opt
        return None

    def options_of_kind(self, kind: int) -> list[TcpOption]:
        """Every option of ``kind`` in order (MPTCP may put several kind-30 options in one segment)."""
        return [opt for opt in self.options if opt.kind == kind]


# --- options ------------------------------------------------------------------


def push_option(opt: TcpOption) -> bytes:
    t = type(opt)
    if t is Timestamps:
        return b"\x08\x0a" + _TS_STRUCT.pack(opt.tsval, opt.tsecr)
    if t is NoOperation:
        return b"\x01"
    if t is Sack:
        out = bytearray((KIND_SACK, 2 + 8 * len(opt.blocks)))
        for left, right in opt.blocks:
            out += _TS_STRUCT.pack(left & 0xFFFFFFFF, right & 0xFFFFFFFF)
        return bytes(out)
    if t is MaxSegmentSize:
        return struct.pack("!BBH", KIND_MSS, 4, opt.value)
    if t is WindowScale:
        return bytes((KIND_WSCALE, 3, opt.shift))
    if t is SackPermitted:
        return b"\x04\x02"
    if t is UnknownOption:
        if len(opt.data) > 38:
            raise ValueError(f"option kind {opt.kind} data too long ({len(opt.data)} bytes)")
        return bytes((opt.kind, 2 + len(opt.data))) + opt.data
    raise TypeError(f"not a TCP option: {opt!r}")


def push_options(options: tuple[TcpOption, ...] | list[TcpOption]) -> bytes:
    """Encode options, padded with EOL (zero) bytes to a multiple of four."""
    raw = b"".join([push_option(o) for o in options])
    if len(raw) > MAX_OPTIONS_LEN:
        raise ValueError(f"TCP options take {len(raw)} bytes, more than {MAX_OPTIONS_LEN}")
    pad = -len(raw) % 4
    return raw + b"\x00" * pad if pad else raw


def pull_options(data: bytes, base_offset: int = HEADER_LEN) -> tuple[TcpOption, ...]:
    """Decode an options area; stops at End of Option List.

    Raises DecodeError naming ``options[i].length`` (or the option's field)
    and its offset when an option is malformed.
    """
    end = len(data)
    if end >= 12 and data.startswith(_TS_FAST):
        # NOP, NOP, Timestamps first: what nearly every segment carries (RFC 7323 appendix A)
        tsval, tsecr = _TS_STRUCT.unpack_from(data, 4)
        if end == 12:
            return (_NOP, _NOP, Timestamps(tsval, tsecr))
        out: list[TcpOption] = [_NOP, _NOP, Timestamps(tsval, tsecr)]
        pos = 12
    else:
        out = []
        pos = 0
    while pos < end:
        kind = data[pos]
        if kind == KIND_EOL:
            break
        if kind == KIND_NOP:
            out.append(_NOP)
            pos += 1
            continue
        index = len(out)
        if pos + 1 >= end:
            raise DecodeError(
                f"option kind {kind} has no length byte", field=f"options[{index}].length", offset=base_offset + pos + 1
            )
        length = data[pos + 1]
        if length < 2 or pos + length > end:
            raise DecodeError(
                f"option kind {kind} has bad length {length}",
                field=f"options[{index}].length",
                offset=base_offset + pos + 1,
            )
        body = data[pos + 2 : pos + length]
        if kind == KIND_TIMESTAMPS:
            if length != 10:
                raise DecodeError(
                    f"timestamps option length {length}, expected 10",
                    field=f"options[{index}].length",
                    offset=base_offset + pos + 1,
                )
            out.append(Timestamps(*_TS_STRUCT.unpack(body)))
        elif kind == KIND_SACK:
            if (length - 2) % 8 or length == 2:
                raise DecodeError(
                    f"SACK option length {length} is not 2 + 8n",
                    field=f"options[{index}].length",
                    offset=base_offset + pos + 1,
                )
            blocks = tuple(_TS_STRUCT.unpack_from(body, i) for i in range(0, len(body), 8))
            out.append(Sack(blocks))
        elif kind == KIND_MSS:
            if length != 4:
                raise DecodeError(
                    f"MSS option length {length}, expected 4",
                    field=f"options[{index}].length",
                    offset=base_offset + pos + 1,
                )
            out.append(MaxSegmentSize((body[0] << 8) | body[1]))
        elif kind == KIND_WSCALE:
            if length != 3:
                raise DecodeError(
                    f"window scale option length {length}, expected 3",
                    field=f"options[{index}].length",
                    offset=base_offset + pos + 1,
                )
            out.append(WindowScale(body[0]))
        elif kind == KIND_SACK_PERMITTED:
            if length != 2:
                raise DecodeError(
                    f"SACK-permitted option length {length}, expected 2",
                    field=f"options[{index}].length",
                    offset=base_offset + pos + 1,
                )
            out.append(_SACK_PERMITTED)
        else:
            out.append(UnknownOption(kind, body))
        pos += length
    return tuple(out)


# --- the segment -------------------------------------------------------------


def encode_segment(seg: TcpSegment, src: bytes, dst: bytes) -> bytes:
    """Encode ``seg`` with its checksum over the pseudo-header of packed ``src``/``dst``."""
    options = seg.options
    if not options:
        opts = b""
    elif (
        len(options) == 3
        and type(options[2]) is Timestamps
        and type(options[0]) is NoOperation
        and type(options[1]) is NoOperation
    ):
        opts = _TS_FAST + _TS_STRUCT.pack(options[2].tsval, options[2].tsecr)  # the common case
    else:
        opts = push_options(options)
    return encode_raw(
        seg.src_port,
        seg.dst_port,
        seg.seq,
        seg.ack,
        seg.flags,
        seg.window,
        opts,
        seg.payload,
        src,
        dst,
        seg.urgent,
        seg.reserved,
    )


def encode_raw(
    src_port: int,
    dst_port: int,
    seq: int,
    ack: int,
    flags: int,
    window: int,
    options: bytes,
    payload: bytes,
    src: bytes,
    dst: bytes,
    urgent: int = 0,
    reserved: int = 0,
    address_sum: int | None = None,
) -> bytes:
    """Encode from fields and already-encoded (padded) ``options``: the per-segment fast path.

    ``address_sum`` may carry the precomputed pseudo-header sum of the two
    addresses and the protocol (``pseudo_header_sum(src, dst, 6, 0)``).
    """
    offset_byte = ((HEADER_LEN + len(options)) >> 2) << 4 | (reserved & 0x0F)
    head = _HEADER.pack(src_port, dst_port, seq, ack, offset_byte, flags, window, 0, urgent) + options
    # one's-complement sums add across pieces of even length (the header always is)
    plen = len(payload)
    if address_sum is None:
        address_sum = pseudo_header_sum(src, dst, TCP_PROTOCOL, 0)
    total = address_sum + len(head) + plen + _from_bytes(head, "big")
    if plen:
        total += _from_bytes(payload + b"\x00" if plen & 1 else payload, "big")
    csum = ~(mod_ffff(total) or 0xFFFF) & 0xFFFF if total else 0xFFFF
    return b"".join((head[:16], csum.to_bytes(2, "big"), head[18:], payload))


def timestamps_option(tsval: int, tsecr: int) -> bytes:
    """NOP, NOP, Timestamps: the 12 option bytes most segments carry (RFC 7323 appendix A)."""
    return _TS_FAST + _TS_STRUCT.pack(tsval, tsecr)


def decode_segment(data: bytes, src: bytes | None = None, dst: bytes | None = None) -> TcpSegment:
    """Decode a TCP segment; verifies the checksum when ``src`` and ``dst`` are given.

    Raises DecodeError (field and offset named) on a short header, a bad data
    offset, malformed options or a checksum mismatch.
    """
    if len(data) < HEADER_LEN:
        raise DecodeError(f"TCP header needs 20 bytes, have {len(data)}", field="header", offset=len(data))
    sport, dport, seq, ack, offset_byte, flags, window, _csum, urgent = _HEADER.unpack_from(data)
    header_len = (offset_byte >> 4) * 4
    if header_len < HEADER_LEN or header_len > len(data):
        raise DecodeError(
            f"data offset {offset_byte >> 4} words does not fit {len(data)} bytes", field="data_offset", offset=12
        )
    if src is not None and dst is not None and not transport_checksum_ok(src, dst, TCP_PROTOCOL, data):
        raise DecodeError("TCP checksum mismatch", field="checksum", offset=16)
    options = pull_options(data[HEADER_LEN:header_len]) if header_len > HEADER_LEN else ()
    return TcpSegment(sport, dport, seq, ack, flags, window, options, data[header_len:], urgent, offset_byte & 0x0F)
