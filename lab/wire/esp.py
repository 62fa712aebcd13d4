"""ESP packets (RFC 4303 §2) as carried with AES-GCM (RFC 4106 §3) or AES-CBC (RFC 3602 §3).

On the wire::

    SPI (4) | Sequence Number (4) | IV (8 for AES-GCM, 16 for AES-CBC) | ciphertext | ICV (8-32)

and the ciphertext decrypts to the plaintext (RFC 4303 §2.4-§2.6, RFC 4106 §3.2)::

    payload data | padding (0-255) | Pad Length (1) | Next Header (1)

:class:`EspPacket` is the first, :class:`EspPlaintext` the second; the
cryptography between them is in ``lab.esp.sa``. The IV and ICV lengths are
properties of the SA, not of the packet, so ``pull_esp_packet`` takes them
as arguments (AES-GCM-16 by default).
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import DecodeError
from lab.wire.buffer import Buffer

ESP_HEADER_LEN = 8  # SPI + Sequence Number (RFC 4303 §2)
ESP_TRAILER_LEN = 2  # Pad Length + Next Header (RFC 4303 §2.5, §2.6)
MAX_PAD_LEN = 255  # "The range of valid values is 0 to 255" (RFC 4303 §2.5)
ALIGNMENT = 4  # Pad Length and Next Header right-aligned in a 4-byte word (RFC 4303 §2.4)
SPI_RESERVED_MAX = 255  # SPIs 1-255 are reserved by IANA, 0 "MUST NOT be sent on the wire" (RFC 4303 §2.1)

GCM_IV_LEN = 8  # "The AES-GCM-ESP IV field MUST be eight octets" (RFC 4106 §3.1)
GCM_SALT_LEN = 4  # RFC 4106 §4
GCM_ICV_LENS = (8, 12, 16)  # RFC 4106 §6: 16 MUST, 8 and 12 MAY
CBC_IV_LEN = 16  # "The IV field MUST be the same size as the block size" (RFC 3602 §3)
CBC_BLOCK_LEN = 16  # AES block; the ciphertext is a whole number of blocks (RFC 3602 §2.4)

NEXT_HEADER_IPV4 = 4  # IANA protocol numbers (RFC 4303 §2.6)
NEXT_HEADER_TCP = 6
NEXT_HEADER_UDP = 17
NEXT_HEADER_IPV6 = 41
NEXT_HEADER_NONE = 59  # a "dummy" packet, discarded without error (RFC 4303 §2.6)


@dataclass(frozen=True, slots=True)
class EspPacket:
    """An ESP packet as sent: ``ciphertext`` covers payload, padding, Pad Length and Next Header."""

    spi: int
    seq: int
    iv: bytes
    ciphertext: bytes
    icv: bytes


@dataclass(frozen=True, slots=True)
class EspPlaintext:
    """What the ciphertext decrypts to; ``len(padding)`` is the Pad Length."""

    data: bytes
    next_header: int
    padding: bytes = b""

    @property
    def pad_length(self) -> int:
        return len(self.padding)

    @property
    def is_dummy(self) -> bool:
        """Next Header 59: a traffic-flow-confidentiality dummy packet (RFC 4303 §2.6)."""
        return self.next_header == NEXT_HEADER_NONE


def pull_esp_packet(buf: Buffer, *, iv_len: int = GCM_IV_LEN, icv_len: int = 16) -> EspPacket:
    """Read the rest of ``buf`` as one packet.

    Raises DecodeError naming ``spi`` for SPI 0, and the field that runs out
    when the packet is too short for its header, IV and ICV.
    """
    start = buf.tell()
    spi = buf.pull_u32("spi")
    if spi == 0:
        raise DecodeError("SPI 0 must not be sent on the wire", field="spi", offset=start)
    seq = buf.pull_u32("seq")
    iv = buf.pull_bytes(iv_len, "iv")
    if buf.remaining() < icv_len:
        raise DecodeError(f"ICV needs {icv_len} bytes, have {buf.remaining()}", field="icv", offset=buf.tell())
    ciphertext = buf.pull_bytes(buf.remaining() - icv_len, "ciphertext")
    icv = buf.pull_bytes(icv_len, "icv")
    return EspPacket(spi, seq, iv, ciphertext, icv)


def push_esp_packet(packet: EspPacket) -> bytes:
    """Raises ValueError for SPI 0 or a field that does not fit."""
    if not 0 < packet.spi <= 0xFFFF_FFFF:
        raise ValueError(f"SPI {packet.spi} is not 1..2**32-1")
    if not 0 <= packet.seq <= 0xFFFF_FFFF:
        raise ValueError(f"sequence number {packet.seq} does not fit 32 bits")
    return packet.spi.to_bytes(4, "big") + packet.seq.to_bytes(4, "big") + packet.iv + packet.ciphertext + packet.icv


def decode_esp_packet(data: bytes, *, iv_len: int = GCM_IV_LEN, icv_len: int = 16) -> EspPacket:
    return pull_esp_packet(Buffer(data), iv_len=iv_len, icv_len=icv_len)


def pull_esp_plaintext(buf: Buffer) -> EspPlaintext:
    """Read the rest of ``buf`` as a decrypted ESP payload; the trailer is at the end.

    Raises DecodeError naming ``next_header`` when fewer than 2 bytes remain
    and ``pad_length`` when the Pad Length runs past the start.
    """
    start = buf.tell()
    rest = buf.pull_rest()
    if len(rest) < ESP_TRAILER_LEN:
        raise DecodeError(f"ESP trailer needs 2 bytes, have {len(rest)}", field="next_header", offset=start)
    pad_length = rest[-2]
    next_header = rest[-1]
    data_len = len(rest) - ESP_TRAILER_LEN - pad_length
    if data_len < 0:
        raise DecodeError(
            f"Pad Length {pad_length} exceeds the {len(rest) - ESP_TRAILER_LEN} bytes before it",
            field="pad_length",
            offset=start + len(rest) - 2,
        )
    return EspPlaintext(rest[:data_len], next_header, rest[data_len : data_len + pad_length])


def push_esp_plaintext(plaintext: EspPlaintext) -> bytes:
    """Raises ValueError for more than 255 bytes of padding or a Next Header beyond 255."""
    if len(plaintext.padding) > MAX_PAD_LEN:
        raise ValueError(f"{len(plaintext.padding)} bytes of padding, at most {MAX_PAD_LEN}")
    if not 0 <= plaintext.next_header <= 0xFF:
        raise ValueError(f"next header {plaintext.next_header} is not a byte")
    return plaintext.data + plaintext.padding + bytes((len(plaintext.padding), plaintext.next_header))


def default_padding(length: int) -> bytes:
    """The RFC 4303 §2.4 default padding: 1, 2, 3, ... ``length``."""
    if not 0 <= length <= MAX_PAD_LEN:
        raise ValueError(f"padding length {length} is outside 0..255")
    return bytes(range(1, length + 1))


def minimum_pad_length(data_len: int, *, iv_len: int = GCM_IV_LEN, block: int = ALIGNMENT) -> int:
    """The least padding that right-aligns Pad Length and Next Header in a 4-byte word (RFC 4303 §2.4).

    AES-GCM needs no block alignment (RFC 4106 §3.2: "less than four octets").
    The IV counts toward the alignment (it is part of the Payload Data field).
    AES-CBC pads the encrypted part to its 16-byte block: ``iv_len=0, block=16``.
    """
    return -(iv_len + data_len + ESP_TRAILER_LEN) % block
