"""An ESP security association with AES-GCM (RFC 4303 + RFC 4106), sans I/O.

::

    key | salt   = the SA's KEYMAT: 16, 24 or 32 key bytes then 4 salt bytes (RFC 4106 §8.1)
    nonce        = salt | IV                  (12 bytes, RFC 4106 §4)
    AAD          = SPI | Sequence Number      (8 bytes, RFC 4106 §5, no ESN)
    ciphertext   = GCM(payload | padding | Pad Length | Next Header), ICV = the GCM tag

The sender's counter starts at 0, so the first packet carries sequence
number 1, and the SA refuses to send once 2**32 - 1 has been used (RFC 4303
§2.2, §3.3.3: rekey before it cycles). The default IV is that sequence
number as 8 bytes, unique under the key as RFC 4106 §3.1 requires.

The receiver runs the RFC 4303 §3.4.3 sliding window: a packet to the right
of the window or inside it and not yet seen goes on to the ICV check, which
for GCM happens with decryption; the window moves only once the ICV has
verified. Anything dropped (replay, failed ICV, malformed, bad padding) is
recorded as ``segment_dropped`` on layer ``esp`` and raised as
:class:`EspDropped`, which carries no plaintext. Extended sequence numbers
are not supported.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lab.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from lab.trace import NULL_TRACER, Tracer
from lab.wire.buffer import Buffer
from lab.wire.esp import (
    GCM_ICV_LENS,
    GCM_IV_LEN,
    GCM_SALT_LEN,
    EspPacket,
    EspPlaintext,
    default_padding,
    minimum_pad_length,
    pull_esp_packet,
    pull_esp_plaintext,
    push_esp_packet,
    push_esp_plaintext,
)

AES_KEY_LENS = (16, 24, 32)  # RFC 4106 §8.1 (128, 192, 256 bits; 192 is NOT RECOMMENDED, RFC 5282 §7.3)
DEFAULT_REPLAY_WINDOW_PACKETS = 64  # "a window size of 64 is preferred and SHOULD be employed as the default"
MIN_REPLAY_WINDOW_PACKETS = 32  # "A minimum window size of 32 packets MUST be supported" (RFC 4303 §3.4.3)
MAX_SEQ = 0xFFFF_FFFF  # 32-bit sequence numbers must not cycle (RFC 4303 §2.2)

# why a packet was dropped (EspDropped.reason, the trace record's "reason")
DROP_MALFORMED = "malformed"
DROP_WRONG_SPI = "wrong_spi"
DROP_DUPLICATE = "duplicate"  # inside the window and already received
DROP_TOO_OLD = "too_old"  # left of the window (sequence number 0 included)
DROP_INTEGRITY = "integrity"  # the ICV did not verify
DROP_BAD_PADDING = "bad_padding"  # not the RFC 4303 §2.4 default 1, 2, 3, ...


class EspDropped(RemoteProtocolError):
    """An inbound ESP packet was discarded; ``reason`` is one of the DROP_* values. No plaintext is kept."""

    def __init__(self, reason: str, *, spi: int | None, seq: int | None, detail: str = "") -> None:
        super().__init__(f"ESP packet dropped: {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason
        self.spi = spi
        self.seq = seq
        self.detail = detail


# --- AES-GCM as ESP and IKEv2 use it (RFC 4106 §4, RFC 5282 §4) ------------------------------------------


def aes_gcm_seal(key: bytes, salt: bytes, iv: bytes, plaintext: bytes, aad: bytes, *, icv_len: int = 16) -> bytes:
    """``ciphertext | ICV`` under nonce ``salt | iv``; raises ValueError for bad lengths."""
    nonce = _nonce(key, salt, iv, icv_len)
    if icv_len == 16:
        return AESGCM(key).encrypt(nonce, plaintext, aad)
    encryptor = Cipher(algorithms.AES(key), modes.GCM(nonce)).encryptor()
    encryptor.authenticate_additional_data(aad)
    ciphertext = encryptor.update(plaintext) + encryptor.finalize()
    return ciphertext + encryptor.tag[:icv_len]


def aes_gcm_open(key: bytes, salt: bytes, iv: bytes, sealed: bytes, aad: bytes, *, icv_len: int = 16) -> bytes:
    """The plaintext of ``ciphertext | ICV``.

    Raises ``cryptography.exceptions.InvalidTag`` when the ICV does not
    verify (or ``sealed`` is shorter than the ICV), ValueError for bad key,
    salt or IV lengths.
    """
    nonce = _nonce(key, salt, iv, icv_len)
    if len(sealed) < icv_len:
        raise InvalidTag
    if icv_len == 16:
        return AESGCM(key).decrypt(nonce, sealed, aad)
    ciphertext, tag = sealed[:-icv_len], sealed[-icv_len:]
    decryptor = Cipher(algorithms.AES(key), modes.GCM(nonce, tag, min_tag_length=icv_len)).decryptor()
    decryptor.authenticate_additional_data(aad)
    return decryptor.update(ciphertext) + decryptor.finalize()


def _nonce(key: bytes, salt: bytes, iv: bytes, icv_len: int) -> bytes:
    if len(key) not in AES_KEY_LENS:
        raise ValueError(f"AES key of {len(key)} bytes, expected 16, 24 or 32")
    if len(salt) != GCM_SALT_LEN or len(iv) != GCM_IV_LEN:
        raise ValueError(f"salt and IV must be {GCM_SALT_LEN} and {GCM_IV_LEN} bytes, got {len(salt)} and {len(iv)}")
    if icv_len not in GCM_ICV_LENS:
        raise ValueError(f"ICV of {icv_len} bytes, expected 8, 12 or 16 (RFC 4106 §6)")
    return salt + iv


def split_keymat(keymat: bytes) -> tuple[bytes, bytes]:
    """(AES key, salt) from 20, 28 or 36 bytes of KEYMAT (RFC 4106 §8.1); raises ValueError otherwise."""
    if len(keymat) - GCM_SALT_LEN not in AES_KEY_LENS:
        raise ValueError(f"AES-GCM KEYMAT of {len(keymat)} bytes, expected 20, 28 or 36 (key then 4-byte salt)")
    return keymat[:-GCM_SALT_LEN], keymat[-GCM_SALT_LEN:]


# --- the anti-replay window (RFC 4303 §3.4.3) -------------------------------------------------------------


class ReplayWindow:
    """The receiver's sliding window: ``highest`` is the right edge, bit i of the map is ``highest - i``."""

    __slots__ = ("_bitmap", "highest", "size_packets")

    def __init__(self, size_packets: int = DEFAULT_REPLAY_WINDOW_PACKETS) -> None:
        if size_packets < MIN_REPLAY_WINDOW_PACKETS:
            raise ValueError(f"replay window of {size_packets} packets, at least {MIN_REPLAY_WINDOW_PACKETS}")
        self.size_packets = size_packets
        self.highest = 0  # "the receive packet counter ... MUST be initialized to zero"
        self._bitmap = 0

    def check(self, seq: int) -> str | None:
        """None if ``seq`` may be accepted (pending its ICV), else DROP_TOO_OLD or DROP_DUPLICATE."""
        if seq == 0:
            return DROP_TOO_OLD  # never sent: the first packet carries 1 (RFC 4303 §3.3.3)
        if seq > self.highest:
            return None
        behind = self.highest - seq
        if behind >= self.size_packets:
            return DROP_TOO_OLD
        if self._bitmap >> behind & 1:
            return DROP_DUPLICATE
        return None

    def update(self, seq: int) -> None:
        """Mark ``seq`` received (call only after its ICV verified), sliding the window right if needed."""
        if seq > self.highest:
            shift = seq - self.highest
            self._bitmap = (
                (self._bitmap << shift | 1) & ((1 << self.size_packets) - 1) if shift < self.size_packets else 1
            )
            self.highest = seq
        else:
            self._bitmap |= 1 << (self.highest - seq)

    def received(self, seq: int) -> bool:
        """Whether ``seq`` is inside the window and marked received."""
        behind = self.highest - seq
        return 0 <= behind < self.size_packets and bool(self._bitmap >> behind & 1)


# --- the SA --------------------------------------------------------------------------------------------------


class EspSa:
    """One ESP SA with AES-GCM: ``encrypt`` for the sending side, ``decrypt`` for the receiving side.

    ``keymat`` is the KEYMAT slice for this SA (key then salt). A
    ``replay_window_packets`` of 0 turns anti-replay checking off; otherwise
    it must be at least 32. ``sent_seq`` is the sender's counter (0 for a new SA).
    """

    def __init__(
        self,
        *,
        spi: int,
        keymat: bytes,
        icv_len: int = 16,
        replay_window_packets: int = DEFAULT_REPLAY_WINDOW_PACKETS,
        sent_seq: int = 0,
        tracer: Tracer = NULL_TRACER,
    ) -> None:
        if not 0 < spi <= 0xFFFF_FFFF:
            raise ValueError(f"SPI {spi} is not 1..2**32-1 (0 must not be sent, RFC 4303 §2.1)")
        if icv_len not in GCM_ICV_LENS:
            raise ValueError(f"ICV of {icv_len} bytes, expected 8, 12 or 16 (RFC 4106 §6)")
        if not 0 <= sent_seq <= MAX_SEQ:
            raise ValueError(f"sequence counter {sent_seq} does not fit 32 bits")
        self.spi = spi
        self.icv_len = icv_len
        self._key, self._salt = split_keymat(keymat)
        self._sent_seq = sent_seq
        self.replay_window = ReplayWindow(replay_window_packets) if replay_window_packets else None
        self._tracer = tracer

    @property
    def sent_seq(self) -> int:
        """The sequence number of the last packet sent (0 before the first)."""
        return self._sent_seq

    def encrypt(
        self,
        data: bytes,
        *,
        next_header: int,
        iv: bytes | None = None,
        padding: bytes | None = None,
    ) -> bytes:
        """The next ESP packet carrying ``data``, as bytes starting with the SPI.

        ``iv`` defaults to the packet's sequence number (8 bytes), ``padding``
        to the RFC 4303 §2.4 default of the least length that aligns the
        trailer. Raises LocalProtocolError when the sequence number would
        cycle (establish a new SA) and ValueError for a bad IV, padding or
        Next Header; a refused call changes nothing.
        """
        if self._sent_seq >= MAX_SEQ:
            raise LocalProtocolError(f"ESP SA 0x{self.spi:08x} used sequence number 2**32-1: rekey (RFC 4303 §3.3.3)")
        seq = self._sent_seq + 1
        if iv is None:
            iv = seq.to_bytes(GCM_IV_LEN, "big")
        if padding is None:
            padding = default_padding(minimum_pad_length(len(data)))
        plaintext = push_esp_plaintext(EspPlaintext(data, next_header, padding))
        aad = self.spi.to_bytes(4, "big") + seq.to_bytes(4, "big")
        sealed = aes_gcm_seal(self._key, self._salt, iv, plaintext, aad, icv_len=self.icv_len)
        self._sent_seq = seq
        return push_esp_packet(EspPacket(self.spi, seq, iv, sealed[: -self.icv_len], sealed[-self.icv_len :]))

    def decrypt(self, packet: bytes, *, now: float = 0.0) -> EspPlaintext:
        """Verify and decrypt one inbound packet; a dummy packet (Next Header 59) is returned, not dropped.

        Raises EspDropped (after recording ``segment_dropped``) for a
        malformed packet, another SA's SPI, a replay (duplicate or left of
        the window), a failed ICV, or padding other than 1, 2, 3, ...
        """
        try:
            esp = pull_esp_packet(Buffer(packet), icv_len=self.icv_len)
        except DecodeError as exc:
            spi = int.from_bytes(packet[:4], "big") if len(packet) >= 4 else None
            raise self._drop(now, DROP_MALFORMED, spi, None, str(exc)) from None
        if esp.spi != self.spi:
            raise self._drop(now, DROP_WRONG_SPI, esp.spi, esp.seq, f"this SA is 0x{self.spi:08x}")
        window = self.replay_window
        if window is not None and (reason := window.check(esp.seq)) is not None:
            raise self._drop(now, reason, esp.spi, esp.seq, f"window right edge {window.highest}")
        aad = packet[:8]
        try:
            plaintext = aes_gcm_open(self._key, self._salt, esp.iv, esp.ciphertext + esp.icv, aad, icv_len=self.icv_len)
        except InvalidTag:
            raise self._drop(now, DROP_INTEGRITY, esp.spi, esp.seq) from None
        if window is not None:
            window.update(esp.seq)  # "The receive window is updated only if the integrity verification succeeds"
        try:
            result = pull_esp_plaintext(Buffer(plaintext))
        except DecodeError as exc:
            raise self._drop(now, DROP_MALFORMED, esp.spi, esp.seq, str(exc)) from None
        if result.padding != default_padding(result.pad_length):  # "the receiver SHOULD inspect the Padding field"
            raise self._drop(now, DROP_BAD_PADDING, esp.spi, esp.seq)
        return result

    def _drop(self, now: float, reason: str, spi: int | None, seq: int | None, detail: str = "") -> EspDropped:
        data: dict[str, Any] = {"reason": reason, "spi": spi, "seq": seq}
        if detail:
            data["detail"] = detail
        self._tracer.record(now, "esp", "segment_dropped", data)
        return EspDropped(reason, spi=spi, seq=seq, detail=detail)
