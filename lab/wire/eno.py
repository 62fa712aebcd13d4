"""The TCP-ENO option (RFC 8547 §4): SYN-form suboptions, non-SYN form, transcript.

An ENO option is either the IANA kind 69 (RFC 8547 §4.1) or the pre-RFC
experimental encoding, kind 253 with ExID 0x454E (RFC 6994; RFC 8547 §11 says
"more recent implementations used" it and that hosts must migrate to 69).
``experimental=True`` selects the latter; everything after the ExID is the same.

A SYN-form option (:class:`SynEnoOption`) is a sequence of suboptions, each
starting with a byte ``v | glt`` (RFC 8547 Figure 4, Table 1):

=========  ===  ==================================================
glt        v    meaning
=========  ===  ==================================================
0x00-0x1f  0    global suboption (:class:`GlobalSuboption`)
0x00-0x1f  1    length byte ``100nnnnn``: the next suboption is a
                TEP with v = 1 and nnnnn + 1 bytes of data (§4.4)
0x20-0x7f  0    TEP identifier without data (:class:`TepSuboption`)
0x20-0x7f  1    TEP identifier with data; without a length byte
                the data runs to the end of the option
=========  ===  ==================================================

The length byte is not a suboption of its own here: it belongs to the
:class:`TepSuboption` it introduces. :func:`push_syn_eno_option` writes one
before every v = 1 suboption that is not last and never before the last one
(the canonical form); :func:`pull_syn_eno_option` also accepts a length byte
before the last suboption, which is legal but re-encodes without it. The
negotiation transcript is therefore built from the option bytes as they were
on the wire (:func:`negotiation_transcript`), never from re-encoded values.

A non-SYN-form option (:class:`NonSynEnoOption`) is an acknowledgment whose
contents ENO ignores (RFC 8547 §4.1); they must be empty unless a TEP says
otherwise.

Offsets in :class:`DecodeError` count from the option's kind byte (0) plus
the buffer's base offset.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from lab.errors import DecodeError
from lab.wire.buffer import Buffer
from lab.wire.tcp import TcpOption, UnknownOption


class Role(enum.Enum):
    """TCP-ENO's abstract roles (RFC 8547 §4.3): normally A = active opener, B = passive opener
    (the b bit of the global suboption asks for B). TEPs such as tcpcrypt key on them."""

    A = "A"
    B = "B"


ENO_KIND = 69  # RFC 8547 §11, Table 2
EXPERIMENTAL_KIND = 253  # RFC 6994 shared experimental option
ENO_EXID = 0x454E  # "EN"; RFC 8547 §11 (the pre-RFC encoding)
MAX_OPTION_LEN = 40  # the whole TCP options area (RFC 9293)

# RFC 8547 Figure 4 / Table 1
V_BIT = 0x80
GLT_MASK = 0x7F
TEP_ID_MIN = 0x20  # glt >= 0x20: TEP identifier (§3 "TEP identifier")
TEP_ID_MAX = 0x7F
LENGTH_BYTE_MAX_DATA = 32  # nnnnn + 1, nnnnn is 5 bits (§4.4)

# RFC 8547 Figure 5: global suboption bits
GLOBAL_B = 0x01  # passive role bit
GLOBAL_A = 0x02  # application-aware bit
GLOBAL_Z_SHIFT = 2  # z1 z2 z3: bits 4..2, reserved, send 0, ignore on receive
GLOBAL_Z_MASK = 0x1C

# RFC 8547 §11, Table 3 and RFC 8548 §7, Table 4
TEP_EXPERIMENTAL = 0x20
TEP_RESERVED_EXTENDED = range(0x70, 0x80)  # reserved for extended values


@dataclass(frozen=True, slots=True)
class GlobalSuboption:
    """A global suboption byte ``000 z1 z2 z3 a b`` (RFC 8547 §4.2).

    ``passive_role`` is the RFC's bit "b", ``application_aware`` its bit "a";
    ``reserved`` holds z1 z2 z3 as a 3-bit number (z1 most significant).
    """

    passive_role: bool = False
    application_aware: bool = False
    reserved: int = 0

    @property
    def byte(self) -> int:
        return (
            (self.reserved << GLOBAL_Z_SHIFT)
            | (GLOBAL_A if self.application_aware else 0)
            | (GLOBAL_B if self.passive_role else 0)
        )


IMPLICIT_GLOBAL = GlobalSuboption()  # a SYN without one has an implicit 0x00 (RFC 8547 §4.2)


@dataclass(frozen=True, slots=True)
class TepSuboption:
    """A TEP identifier suboption (RFC 8547 §4.1, §4.4).

    ``v`` is the RFC's variable-length bit; only with ``v`` may ``data`` be
    non-empty (and a last suboption with ``v`` may carry zero bytes).
    """

    tep_id: int
    v: bool = False
    data: bytes = b""

    @property
    def byte(self) -> int:
        """The suboption's first byte, ``v | glt``: what a session ID starts with (RFC 8547 §5.1)."""
        return (V_BIT if self.v else 0) | self.tep_id


EnoSuboption = GlobalSuboption | TepSuboption


@dataclass(frozen=True, slots=True)
class SynEnoOption:
    """A SYN-form ENO option: the suboptions in wire order (RFC 8547 Figure 2)."""

    suboptions: tuple[EnoSuboption, ...] = ()
    experimental: bool = False  # kind 253 + ExID 0x454E instead of kind 69

    @property
    def global_suboption(self) -> GlobalSuboption:
        """The first global suboption, or the implicit 0x00 (RFC 8547 §4.2: ignore all but the first)."""
        for sub in self.suboptions:
            if type(sub) is GlobalSuboption:
                return sub
        return IMPLICIT_GLOBAL

    @property
    def teps(self) -> tuple[TepSuboption, ...]:
        return tuple(sub for sub in self.suboptions if type(sub) is TepSuboption)

    @property
    def vacuous(self) -> bool:
        """No TEP identifier at all (RFC 8547 §4.6): the connection must fall back to plain TCP."""
        return not self.teps


@dataclass(frozen=True, slots=True)
class NonSynEnoOption:
    """A non-SYN-form ENO option (RFC 8547 Figure 3); ENO ignores ``contents``."""

    contents: bytes = b""
    experimental: bool = False


# --- suboptions -----------------------------------------------------------------


def pull_suboptions(buf: Buffer) -> tuple[EnoSuboption, ...]:
    """Read suboptions up to the end of ``buf`` (which holds exactly the option's suboptions).

    Raises DecodeError naming ``suboptions[i].length`` when a length byte's
    data would run past the option, and ``suboptions[i].tep_id`` when a length
    byte is not followed by a TEP identifier with v = 1 (RFC 8547 §4.4).
    """
    out: list[EnoSuboption] = []
    while not buf.eof():
        index = len(out)
        first = buf.pull_u8()
        glt = first & GLT_MASK
        if not first & V_BIT:
            if glt < TEP_ID_MIN:
                out.append(
                    GlobalSuboption(
                        passive_role=bool(first & GLOBAL_B),
                        application_aware=bool(first & GLOBAL_A),
                        reserved=(first & GLOBAL_Z_MASK) >> GLOBAL_Z_SHIFT,
                    )
                )
            else:
                out.append(TepSuboption(glt))
        elif glt >= TEP_ID_MIN:
            out.append(TepSuboption(glt, v=True, data=buf.pull_rest()))
        else:
            data_len = (first & 0x1F) + 1
            if buf.remaining() < 1 + data_len:
                raise DecodeError(
                    f"length byte announces a TEP with {data_len} data bytes, option has {buf.remaining()} left",
                    field=f"suboptions[{index}].length",
                    offset=buf.tell() - 1,
                )
            tep = buf.pull_u8()
            if tep < V_BIT | TEP_ID_MIN:
                raise DecodeError(
                    f"length byte followed by 0x{tep:02x}, not a TEP identifier with v = 1",
                    field=f"suboptions[{index}].tep_id",
                    offset=buf.tell() - 1,
                )
            out.append(TepSuboption(tep & GLT_MASK, v=True, data=buf.pull_bytes(data_len)))
    return tuple(out)


def push_suboptions(suboptions: Sequence[EnoSuboption]) -> bytes:
    """Encode suboptions, adding a length byte before every v = 1 suboption that is not last.

    Raises ValueError for values that have no encoding (a global suboption's
    reserved bits outside 0..7, a TEP identifier outside 0x20..0x7f, data
    without ``v``, more than 32 data bytes in a suboption that is not last).
    """
    out = bytearray()
    last = len(suboptions) - 1
    for i, sub in enumerate(suboptions):
        if type(sub) is GlobalSuboption:
            if not 0 <= sub.reserved <= 7:
                raise ValueError(f"global suboption reserved bits {sub.reserved} do not fit 3 bits")
            out.append(sub.byte)
        elif type(sub) is TepSuboption:
            if not TEP_ID_MIN <= sub.tep_id <= TEP_ID_MAX:
                raise ValueError(f"TEP identifier 0x{sub.tep_id:02x} outside 0x20..0x7f")
            if not sub.v:
                if sub.data:
                    raise ValueError(f"TEP 0x{sub.tep_id:02x} has data but v = 0")
                out.append(sub.tep_id)
            elif i == last:
                out.append(sub.byte)
                out += sub.data
            else:
                if not 1 <= len(sub.data) <= LENGTH_BYTE_MAX_DATA:
                    raise ValueError(
                        f"TEP 0x{sub.tep_id:02x} is not last, so its data needs 1..32 bytes, has {len(sub.data)}"
                    )
                out.append(V_BIT | (len(sub.data) - 1))
                out.append(sub.byte)
                out += sub.data
        else:
            raise TypeError(f"not an ENO suboption: {sub!r}")
    return bytes(out)


# --- the option -----------------------------------------------------------------


def _pull_header(buf: Buffer) -> tuple[bool, int]:
    """Kind, length and (experimental form) ExID; returns (experimental, end position)."""
    start = buf.tell()
    kind = buf.pull_u8("kind")
    if kind not in (ENO_KIND, EXPERIMENTAL_KIND):
        raise DecodeError(f"option kind {kind} is not ENO (69 or 253)", field="kind", offset=start)
    length = buf.pull_u8("length")
    experimental = kind == EXPERIMENTAL_KIND
    header_len = 4 if experimental else 2
    if length < header_len or length - 2 > buf.remaining():
        raise DecodeError(
            f"ENO option length {length} does not fit (header {header_len}, {buf.remaining() + 2} bytes)",
            field="length",
            offset=start + 1,
        )
    if experimental:
        exid = buf.pull_u16("exid")
        if exid != ENO_EXID:
            raise DecodeError(
                f"experimental option ExID 0x{exid:04x} is not ENO's 0x454e", field="exid", offset=start + 2
            )
    return experimental, start + length


def _push_header(experimental: bool, body: bytes) -> bytes:
    if experimental:
        total = 4 + len(body)
        head = bytes((EXPERIMENTAL_KIND, total, ENO_EXID >> 8, ENO_EXID & 0xFF))
    else:
        total = 2 + len(body)
        head = bytes((ENO_KIND, total))
    if total > MAX_OPTION_LEN:
        raise ValueError(f"ENO option takes {total} bytes, more than the {MAX_OPTION_LEN} of the options area")
    return head + body


def _body(buf: Buffer, end: int) -> Buffer:
    """The rest of the option as its own buffer, keeping absolute offsets."""
    start = buf.tell()
    return Buffer(buf.pull_bytes(end - start, "suboptions"), base_offset=start)


def pull_syn_eno_option(buf: Buffer) -> SynEnoOption:
    """Read a SYN-form ENO option starting at its kind byte.

    Raises DecodeError naming ``kind``, ``length``, ``exid`` or
    ``suboptions[i]...`` with the offset of the bad byte.
    """
    experimental, end = _pull_header(buf)
    suboptions = pull_suboptions(_body(buf, end))
    return SynEnoOption(suboptions=suboptions, experimental=experimental)


def push_syn_eno_option(option: SynEnoOption) -> bytes:
    """Encode a SYN-form ENO option, kind and length included.

    Raises ValueError if a suboption has no encoding or the option exceeds 40 bytes.
    """
    return _push_header(option.experimental, push_suboptions(option.suboptions))


def pull_non_syn_eno_option(buf: Buffer) -> NonSynEnoOption:
    """Read a non-SYN-form ENO option; raises DecodeError naming ``kind``, ``length`` or ``exid``."""
    experimental, end = _pull_header(buf)
    contents = buf.pull_bytes(end - buf.tell(), "contents")
    return NonSynEnoOption(contents=contents, experimental=experimental)


def push_non_syn_eno_option(option: NonSynEnoOption) -> bytes:
    """Encode a non-SYN-form ENO option; raises ValueError beyond 40 bytes."""
    return _push_header(option.experimental, option.contents)


def decode_syn_eno_option(data: bytes) -> SynEnoOption:
    """Decode one whole SYN-form option (``45 05 02 23 21``); raises DecodeError, also for trailing bytes."""
    buf = Buffer(data)
    option = pull_syn_eno_option(buf)
    if not buf.eof():
        raise DecodeError(f"{buf.remaining()} bytes after the ENO option", field="length", offset=1)
    return option


# --- inside a TCP segment -------------------------------------------------------------


def is_eno_option(option: TcpOption) -> bool:
    """Kind 69, or kind 253 whose data starts with ExID 0x454E (RFC 8547 §11)."""
    if type(option) is not UnknownOption:
        return False
    if option.kind == ENO_KIND:
        return True
    return option.kind == EXPERIMENTAL_KIND and option.data[:2] == b"\x45\x4e"


def option_bytes(option: UnknownOption) -> bytes:
    """The option exactly as on the wire, kind and length included (a transcript piece)."""
    return bytes((option.kind, 2 + len(option.data))) + option.data


def eno_options(options: Iterable[TcpOption]) -> list[UnknownOption]:
    """The ENO options of a segment, either encoding, in order."""
    return [opt for opt in options if isinstance(opt, UnknownOption) and is_eno_option(opt)]


def syn_eno_option(options: Iterable[TcpOption]) -> UnknownOption | None:
    """The one ENO option of a SYN segment, or None.

    RFC 8547 §4.1: a SYN with more than one ENO option (counting kind 69 and
    kind 253/0x454E alike, §11) is treated as carrying none.
    """
    found = eno_options(options)
    return found[0] if len(found) == 1 else None


def from_tcp_option(option: UnknownOption) -> SynEnoOption:
    """Parse the SYN-form ENO option carried in a decoded TCP option; raises DecodeError."""
    return decode_syn_eno_option(option_bytes(option))


def to_tcp_option(option: SynEnoOption | NonSynEnoOption) -> UnknownOption:
    """The TCP option that carries ``option`` (what ``lab.wire.tcp`` encodes); raises ValueError like push."""
    if isinstance(option, SynEnoOption):
        raw = push_syn_eno_option(option)
    else:
        raw = push_non_syn_eno_option(option)
    return UnknownOption(raw[0], raw[2:])


# --- the negotiation transcript ----------------------------------------------------------


def negotiation_transcript(option_a: bytes, option_b: bytes) -> bytes:
    """RFC 8547 §4.8: host A's SYN ENO option then host B's, each with kind and length bytes.

    Both arguments are the options exactly as they appeared in the TCP header
    (see :func:`option_bytes`), in whichever encoding was used. Raises
    ValueError if either does not start with a plausible kind and length.
    """
    for name, raw in (("option_a", option_a), ("option_b", option_b)):
        if len(raw) < 2 or raw[0] not in (ENO_KIND, EXPERIMENTAL_KIND) or raw[1] != len(raw):
            raise ValueError(f"{name} is not one whole ENO option: {raw.hex()}")
    return option_a + option_b
