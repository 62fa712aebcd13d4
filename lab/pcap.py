"""Classic pcap files of raw IP packets, one per captured interface.

The writer emits the classic libpcap format with nanosecond timestamps (magic
0xa1b23c4d) and link type LINKTYPE_RAW (101): each record is an IPv4 or IPv6
packet with no link-layer header, which Wireshark and tshark read as such.
See https://www.tcpdump.org/manpages/pcap-savefile.5.html and
https://www.tcpdump.org/linktypes.html.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, Self

from lab.errors import DecodeError

MAGIC_NANOSECONDS = 0xA1B23C4D  # timestamps are seconds + nanoseconds
MAGIC_MICROSECONDS = 0xA1B2C3D4  # timestamps are seconds + microseconds
VERSION_MAJOR = 2
VERSION_MINOR = 4
LINKTYPE_RAW = 101  # raw IPv4/IPv6, version read from the first nibble
DEFAULT_SNAPLEN = 65535

_FILE_HEADER = struct.Struct("<IHHiIII")  # magic, major, minor, thiszone, sigfigs, snaplen, linktype
_RECORD_HEADER = struct.Struct("<IIII")  # ts_sec, ts_frac, incl_len, orig_len
_NS_PER_S = 1_000_000_000
_BUFFER_BYTES = 1 << 16


class PcapWriter:
    """Writes raw IP packets with nanosecond timestamps to a classic pcap file.

    ``snaplen`` caps the bytes kept per packet (the record still states the
    original length). The header is written at once; records are buffered, and
    ``close()`` (or leaving a ``with`` block) flushes them. Opening raises ``OSError`` like ``open()``; a
    ``snaplen`` outside 1..2**32-1 raises ``ValueError``.
    """

    __slots__ = ("_file", "_pack", "packets_written", "path", "snaplen")

    def __init__(self, path: str | os.PathLike[str], *, snaplen: int = DEFAULT_SNAPLEN) -> None:
        if not 0 < snaplen <= 0xFFFFFFFF:
            raise ValueError(f"snaplen {snaplen} is outside 1..4294967295")
        self.path = path
        self.snaplen = snaplen
        self.packets_written = 0
        self._pack = _RECORD_HEADER.pack
        self._file: BinaryIO = open(path, "wb", buffering=_BUFFER_BYTES)  # noqa: SIM115 - closed by close()
        self._file.write(
            _FILE_HEADER.pack(MAGIC_NANOSECONDS, VERSION_MAJOR, VERSION_MINOR, 0, 0, snaplen, LINKTYPE_RAW)
        )
        self._file.flush()  # a file cut short (a killed run) still carries its header

    def write(self, now: float, packet: bytes) -> None:
        """Append ``packet`` (an IPv4 or IPv6 packet) captured at ``now`` seconds.

        Raises ``ValueError`` when ``now`` is negative, not finite or beyond
        2**32 seconds, or when the writer is closed.
        """
        if not 0.0 <= now < 4294967296.0:  # also rejects NaN
            raise ValueError(f"pcap timestamp {now!r} is outside 0..2**32 seconds")
        sec = int(now)
        nsec = round((now - sec) * _NS_PER_S)  # now - sec is exact, so no precision is lost
        if nsec == _NS_PER_S:
            sec, nsec = sec + 1, 0
        orig_len = len(packet)
        if orig_len > self.snaplen:
            packet = packet[: self.snaplen]
        self._file.write(self._pack(sec, nsec, len(packet), orig_len) + packet)
        self.packets_written += 1

    def flush(self) -> None:
        """Push buffered records to the file, so that a reader sees them now."""
        self._file.flush()

    def close(self) -> None:
        """Flush and close the file; closing twice is harmless."""
        self._file.close()

    @property
    def closed(self) -> bool:
        return self._file.closed

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_pcap(path: str | os.PathLike[str]) -> list[tuple[float, bytes]]:
    """Read a classic pcap file into ``(seconds, captured bytes)`` pairs.

    Reads either byte order and either timestamp resolution; the link type is
    not checked (``read_pcap_linktype`` tells it). Raises ``DecodeError``
    naming the field on a bad magic number or a truncated header or record,
    and ``OSError`` like ``open()``.
    """
    return read_pcap_linktype(path)[1]


def read_pcap_linktype(path: str | os.PathLike[str]) -> tuple[int, list[tuple[float, bytes]]]:
    """Like ``read_pcap``, also returning the file's link type (101 raw IP, 1 Ethernet,
    113 Linux cooked, 276 Linux cooked v2)."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < _FILE_HEADER.size:
        raise DecodeError(
            f"pcap file header needs {_FILE_HEADER.size} bytes, have {len(data)}", field="header", offset=len(data)
        )
    magic = int.from_bytes(data[:4], "little")
    if magic in (MAGIC_NANOSECONDS, MAGIC_MICROSECONDS):
        order = "<"
    else:
        order = ">"
        magic = int.from_bytes(data[:4], "big")
        if magic not in (MAGIC_NANOSECONDS, MAGIC_MICROSECONDS):
            raise DecodeError(f"magic number {data[:4].hex()} is not a classic pcap file's", field="magic", offset=0)
    divisor = _NS_PER_S if magic == MAGIC_NANOSECONDS else 1_000_000
    linktype = struct.unpack_from(order + "I", data, 20)[0]
    record = struct.Struct(order + "IIII")
    out: list[tuple[float, bytes]] = []
    pos = _FILE_HEADER.size
    end = len(data)
    while pos < end:
        if pos + record.size > end:
            raise DecodeError(f"record header needs {record.size} bytes, have {end - pos}", field="record", offset=pos)
        sec, frac, incl_len, _orig_len = record.unpack_from(data, pos)
        pos += record.size
        if pos + incl_len > end:
            raise DecodeError(
                f"record of {incl_len} bytes runs past the end of the file", field="incl_len", offset=pos - 8
            )
        out.append((sec + frac / divisor, data[pos : pos + incl_len]))
        pos += incl_len
    return linktype, out


ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100


def ip_packets(path: Path) -> list[bytes]:
    """The IP packets in a pcap file, whatever its link type: raw IP (the simulator's captures),
    Ethernet (Mininet's) or Linux cooked capture; other frames are skipped.
    Raises DecodeError for a malformed file, OSError like ``open()``."""
    linktype, frames = read_pcap_linktype(path)
    return [ip for _t, frame in frames if (ip := frame_ip(linktype, frame)) is not None]


LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
PACKET_OUTGOING = 4  # the cooked header's packet type for what the host sent


def frame_ip_direction(linktype: int, frame: bytes) -> tuple[bytes, bool | None] | None:
    """The IP packet inside a captured frame of ``linktype`` and whether the host sent it (None
    where the link type does not say: raw IP, Ethernet), or None for frames that carry no IP."""
    if linktype in (LINKTYPE_RAW, 12, 14):  # raw IP
        return frame, None
    outgoing = None
    if linktype == LINKTYPE_ETHERNET:
        offset, type_at = 14, 12
        while len(frame) >= offset and int.from_bytes(frame[type_at : type_at + 2], "big") == ETHERTYPE_VLAN:
            offset, type_at = offset + 4, type_at + 4
    elif linktype == LINKTYPE_LINUX_SLL:
        offset, type_at = 16, 14
        if len(frame) >= 2:
            outgoing = int.from_bytes(frame[0:2], "big") == PACKET_OUTGOING
    elif linktype == LINKTYPE_LINUX_SLL2:
        offset, type_at = 20, 0
        if len(frame) > 10:
            outgoing = frame[10] == PACKET_OUTGOING
    else:
        return None
    if len(frame) > offset and int.from_bytes(frame[type_at : type_at + 2], "big") in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
        return frame[offset:], outgoing
    return None


def frame_ip(linktype: int, frame: bytes) -> bytes | None:
    """The IP packet inside a captured frame of ``linktype``, or None for other frames."""
    found = frame_ip_direction(linktype, frame)
    return None if found is None else found[0]


def live_ip_packets(path: Path) -> list[bytes]:
    """The IP packets of a pcap file still being written (tcpdump -U during a Mininet run):
    like ``ip_packets``, but a missing or empty file gives [] and a record cut short at the end
    is left for the next read. Raises DecodeError for a file that is not a classic pcap."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    if len(data) < 24:
        return []
    if data[:4] in (bytes.fromhex("d4c3b2a1"), bytes.fromhex("4d3cb2a1")):
        order = "<"
    elif data[:4] in (bytes.fromhex("a1b2c3d4"), bytes.fromhex("a1b23c4d")):
        order = ">"
    else:
        raise DecodeError(f"magic number {data[:4].hex()} is not a classic pcap file's", field="magic", offset=0)
    linktype = struct.unpack_from(order + "I", data, 20)[0]
    out = []
    pos = 24
    while pos + 16 <= len(data):
        incl_len = struct.unpack_from(order + "I", data, pos + 8)[0]
        if pos + 16 + incl_len > len(data):
            break
        ip = frame_ip(linktype, data[pos + 16 : pos + 16 + incl_len])
        if ip is not None:
            out.append(ip)
        pos += 16 + incl_len
    return out
