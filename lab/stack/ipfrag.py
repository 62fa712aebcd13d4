"""IPv4 and IPv6 fragmentation and reassembly (RFC 791 §3.2, RFC 8200 §4.5; RFC 815's bookkeeping reduced
to a sorted list).

IPv6 differs where RFC 8200 says so: only the source fragments (a Fragment
header, Next Header 44, after the IPv6 header; a router drops what does not
fit its next link), the identification is 32 bits, and reassembly gives up
after 60 s. Overlapping IPv6 fragments drop the datagram (RFC 5722).

A host fragments a datagram larger than its interface's MTU when the packet
may be fragmented (DF clear: UDP larger than the path, as Linux does for a
socket with the default ``IP_PMTUDISC_WANT``); a router fragments a packet
larger than its outgoing link's MTU the same way, or drops it when DF is set
(a real router would also send ICMP "fragmentation needed"; the simulator
records the drop). The receiving host reassembles with limits, as Linux
does (``ipfrag_time`` 30 s, ``ipfrag_high_thresh`` 4 MB):

* at most ``max_datagrams`` datagrams in reassembly and ``max_bytes`` held
  over all of them; a fragment beyond either is dropped (a flood cannot grow
  memory);
* at most ``max_fragments`` fragments per datagram;
* a datagram not complete ``timeout_s`` after its first fragment is dropped;
* overlapping fragments drop the whole datagram (Linux since 4.19, and
  RFC 5722 for IPv6): overlaps are how fragment attacks rewrite headers.
  An exact duplicate (the same offset and bytes) is ignored.

Sans-I/O: :class:`Ipv4Reassembler` takes packets and the time and returns
what it completed; it reports drops through ``on_drop(reason, detail)``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lab.errors import ConfigError
from lab.wire.checksum import internet_checksum, unpack_address

FLAG_DF = 0x4000
FLAG_MF = 0x2000
OFFSET_MASK = 0x1FFF
MIN_IPV4_MTU = 68  # RFC 791: every module must be able to forward a 68-octet datagram without fragmenting


@dataclass(frozen=True, slots=True)
class FragmentLimits:
    """Reassembly limits of one host (defaults: Linux's ``ipfrag_time`` and ``ipfrag_high_thresh``)."""

    max_datagrams: int = 64
    max_bytes: int = 4 * 1024 * 1024
    max_fragments: int = 64
    timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_datagrams", "max_bytes", "max_fragments"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"fragment limits: {name} must be a positive integer, got {value!r}")
        if not isinstance(self.timeout_s, (int, float)) or not self.timeout_s > 0:
            raise ConfigError(f"fragment limits: timeout_s must be positive, got {self.timeout_s!r}")


def is_fragment(packet: bytes) -> bool:
    """True for an IPv4 packet that is a fragment (MF set or a non-zero offset)."""
    return packet[0] >> 4 == 4 and bool(((packet[6] << 8) | packet[7]) & (FLAG_MF | OFFSET_MASK))


def _copied_options(options: bytes) -> bytes:
    """The options a non-first fragment carries: those with the copy flag (RFC 791), padded to 4 octets."""
    out = bytearray()
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:  # end of option list
            break
        if kind == 1:  # no-operation
            i += 1
            continue
        if i + 1 >= len(options):
            break
        length = options[i + 1]
        if length < 2 or i + length > len(options):
            break
        if kind & 0x80:
            out += options[i : i + length]
        i += length
    out += b"\x00" * (-len(out) % 4)
    return bytes(out)


def _header(first: bytes, total: int, frag: int) -> bytes:
    """``first`` (an IPv4 header) with total length and flags/offset replaced, checksum recomputed."""
    ihl = len(first) // 4
    h = bytearray(first)
    h[0] = 0x40 | ihl
    h[2:4] = total.to_bytes(2, "big")
    h[6:8] = frag.to_bytes(2, "big")
    h[10:12] = b"\x00\x00"
    h[10:12] = internet_checksum(bytes(h)).to_bytes(2, "big")
    return bytes(h)


def fragment_ipv4(packet: bytes, mtu: int) -> list[bytes]:
    """``packet`` as fragments of at most ``mtu`` octets each (itself alone when it fits).

    The caller checks DF. Raises ValueError when the MTU cannot carry the
    header and 8 octets of data.
    """
    if len(packet) <= mtu:
        return [packet]
    ihl = (packet[0] & 0x0F) * 4
    total = (packet[2] << 8) | packet[3]
    frag = (packet[6] << 8) | packet[7]
    base_offset = (frag & OFFSET_MASK) * 8
    last_mf = frag & FLAG_MF  # fragmenting a fragment: its last piece keeps MF
    flags = frag & ~(FLAG_MF | OFFSET_MASK)
    header = packet[:ihl]
    later = header[:20] + _copied_options(header[20:])
    data = packet[ihl:total]
    out = []
    pos = 0
    while pos < len(data):
        head = header if pos == 0 else later
        room = (mtu - len(head)) & ~7
        if room < 8:
            raise ValueError(f"an MTU of {mtu} cannot carry a {len(head)}-octet header and 8 octets of data")
        chunk = data[pos : pos + room]
        more = FLAG_MF if pos + len(chunk) < len(data) else last_mf
        word = flags | more | ((base_offset + pos) // 8)
        out.append(_header(head, len(head) + len(chunk), word) + chunk)
        pos += len(chunk)
    return out


class _Partial:
    __slots__ = ("first_seen", "header", "held", "pieces", "total")

    def __init__(self, now: float) -> None:
        self.first_seen = now
        self.header: bytes | None = None  # the first fragment's header, once it arrived
        self.pieces: list[tuple[int, bytes]] = []  # (offset in octets, data), sorted by offset
        self.total: int | None = None  # payload length, known once the last fragment arrived
        self.held = 0


class Ipv4Reassembler:
    """Reassembles IPv4 fragments under :class:`FragmentLimits`.

    ``on_drop(reason, detail)`` hears every fragment or datagram given up,
    with ``detail`` naming src, dst, id and how many octets went.
    """

    MAX_PAYLOAD = 0xFFFF - 20  # what a total length of 65,535 octets leaves after the header

    def __init__(self, limits: FragmentLimits | None = None, *, on_drop: Callable[[str, dict], None]) -> None:
        self.limits = limits or FragmentLimits()
        self._on_drop = on_drop
        self._partials: dict[tuple, _Partial] = {}  # insertion order: oldest first
        self.held = 0  # data octets held over all datagrams
        self.completed = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._partials)

    def next_expiry(self) -> float | None:
        """When the oldest datagram in reassembly times out, or None when none is."""
        for partial in self._partials.values():
            return partial.first_seen + self.limits.timeout_s
        return None

    def expire(self, now: float) -> None:
        """Drop every datagram whose first fragment came ``timeout_s`` or more ago."""
        timeout = self.limits.timeout_s
        while self._partials:
            key, partial = next(iter(self._partials.items()))
            if now - partial.first_seen < timeout:
                return
            self._give_up(key, "reassembly timeout", fragments=len(partial.pieces))

    def add(self, packet: bytes, now: float) -> bytes | None:
        """One fragment in (a checked IPv4 header, total length within the packet). Returns the
        reassembled packet (DF/MF and offset cleared) when this fragment completed it, else None."""
        ihl = (packet[0] & 0x0F) * 4
        total_len = (packet[2] << 8) | packet[3]
        frag = (packet[6] << 8) | packet[7]
        key = (packet[12:16], packet[16:20], packet[9], (packet[4] << 8) | packet[5])
        done = self._add(key, (frag & OFFSET_MASK) * 8, bool(frag & FLAG_MF), packet[ihl:total_len], packet[:ihl], now)
        if done is None:
            return None
        head, payload = done
        return _header(head, len(head) + len(payload), 0) + payload

    def _add(
        self, key: tuple, offset: int, more: bool, data: bytes, head: bytes, now: float
    ) -> tuple[bytes, bytes] | None:
        """The fragment of ``key`` at ``offset``: (the first fragment's header, the whole payload) when
        it completed the datagram, else None."""
        self.expire(now)
        limits = self.limits
        end = offset + len(data)
        if (more and len(data) % 8) or not data:
            self._drop_fragment(key, "fragment length not a multiple of 8" if data else "empty fragment", len(data))
            return None
        if end > self.MAX_PAYLOAD:
            self._drop_fragment(key, "fragment ends past 65,535 octets", len(data))
            return None
        partial = self._partials.get(key)
        if partial is None:
            if len(self._partials) >= limits.max_datagrams:
                self._drop_fragment(key, "too many datagrams in reassembly", len(data))
                return None
            partial = self._partials[key] = _Partial(now)
        if self.held + len(data) > limits.max_bytes:
            self._drop_fragment(key, "reassembly memory limit", len(data))
            return None
        if partial.total is not None and (end > partial.total or (not more and end != partial.total)):
            self._give_up(key, "fragment past the datagram's end", fragments=len(partial.pieces) + 1)
            return None
        if not more:
            if any(o + len(d) > end for o, d in partial.pieces):
                self._give_up(key, "fragment past the datagram's end", fragments=len(partial.pieces) + 1)
                return None
            partial.total = end
        pieces = partial.pieces
        i = 0
        while i < len(pieces) and pieces[i][0] < offset:
            i += 1
        if i < len(pieces) and pieces[i][0] == offset and pieces[i][1] == data:
            return None  # an exact duplicate
        prev_end = pieces[i - 1][0] + len(pieces[i - 1][1]) if i else 0
        if (i and prev_end > offset) or (i < len(pieces) and pieces[i][0] < end):
            self._give_up(key, "overlapping fragments", fragments=len(pieces) + 1)
            return None
        if len(pieces) >= limits.max_fragments:
            self._give_up(key, "too many fragments", fragments=len(pieces) + 1)
            return None
        pieces.insert(i, (offset, data))
        partial.held += len(data)
        self.held += len(data)
        if offset == 0:
            partial.header = head
        if partial.total is None or partial.header is None or partial.held != partial.total:
            return None
        del self._partials[key]
        self.held -= partial.held
        self.completed += 1
        return partial.header, b"".join(d for _o, d in pieces)

    def _drop_fragment(self, key: tuple, reason: str, octets: int) -> None:
        self.dropped += 1
        self._on_drop(reason, self._detail(key, fragments=1, octets=octets))

    def _give_up(self, key: tuple, reason: str, *, fragments: int) -> None:
        partial = self._partials.pop(key)
        self.held -= partial.held
        self.dropped += 1
        self._on_drop(reason, self._detail(key, fragments=fragments, octets=partial.held))

    @staticmethod
    def _detail(key: tuple, *, fragments: int, octets: int) -> dict:
        src, dst, proto, ident = key
        return {
            "src": unpack_address(src),
            "dst": unpack_address(dst),
            "protocol": proto,
            "id": ident,
            "fragments": fragments,
            "octets": octets,
        }


class Ipv6Reassembler(Ipv4Reassembler):
    """Reassembles IPv6 fragments (RFC 8200 §4.5: a Fragment header right after the IPv6 header;
    the lab's stacks send no other extension headers) under the same limits; RFC 8200 gives up
    after 60 s and RFC 5722 drops a datagram with overlapping fragments."""

    MAX_PAYLOAD = 0xFFFF

    def add(self, packet: bytes, now: float) -> bytes | None:
        """One packet whose Next Header is 44 (payload length checked). Returns the reassembled
        packet, its Next Header the fragmented one's, when this fragment completed it."""
        plen = (packet[4] << 8) | packet[5]
        if plen < 8 or len(packet) < 48:
            self.dropped += 1
            self._on_drop("fragment header truncated", {"octets": len(packet)})
            return None
        word = (packet[42] << 8) | packet[43]
        key = (packet[8:24], packet[24:40], packet[40], int.from_bytes(packet[44:48], "big"))
        head = packet[:40]
        done = self._add(key, word & 0xFFF8, bool(word & 1), packet[48 : 40 + plen], head, now)
        if done is None:
            return None
        head, payload = done
        return head[:4] + len(payload).to_bytes(2, "big") + bytes((key[2],)) + head[7:40] + payload


def fragment_ipv6(packet: bytes, mtu: int, identification: int) -> list[bytes]:
    """``packet`` (an IPv6 header and its payload, no extension headers) as RFC 8200 §4.5 fragments
    of at most ``mtu`` octets, each with a Fragment header (Next Header 44); itself alone when it fits.
    Raises ValueError when the MTU cannot carry the headers and 8 octets of data."""
    if len(packet) <= mtu:
        return [packet]
    room = (mtu - 48) & ~7
    if room < 8:
        raise ValueError(f"an MTU of {mtu} cannot carry the IPv6 and Fragment headers and 8 octets of data")
    next_header = packet[6]
    data = packet[40:]
    ident = identification.to_bytes(4, "big")
    out = []
    for pos in range(0, len(data), room):
        chunk = data[pos : pos + room]
        more = 1 if pos + len(chunk) < len(data) else 0
        header = packet[:4] + (8 + len(chunk)).to_bytes(2, "big") + b"\x2c" + packet[7:40]
        out.append(header + bytes((next_header, 0)) + (pos | more).to_bytes(2, "big") + ident + chunk)
    return out
