"""An ESP security association with AES-GCM (RFC 4303 + RFC 4106) or AES-CBC with HMAC-SHA2 (RFC 3602 + RFC 4868), sans I/O.

::

    key | salt   = the SA's KEYMAT: 16, 24 or 32 key bytes then 4 salt bytes (RFC 4106 §8.1)
    nonce        = salt | IV                  (12 bytes, RFC 4106 §4)
    AAD          = SPI | Sequence Number      (8 bytes, RFC 4106 §5, no ESN)
    ciphertext   = GCM(payload | padding | Pad Length | Next Header), ICV = the GCM tag

With AES-CBC (RFC 3602) the SA has two keys, the AES key and the HMAC key::

    SPI | Sequence Number | IV (16) | CBC(payload | padding | Pad Length | Next Header) | ICV
    ICV = HMAC-SHA-256/384/512(integrity key, SPI | Seq | IV | ciphertext), truncated to 16/24/32 bytes

the plaintext is padded to the 16-byte block, the ICV is checked before
decryption, and the IV is E_K(sequence number), the "encrypt a nonce"
method of NIST SP 800-38A appendix C: unpredictable without the key, and
drawn without a random source.

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

import hmac
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lab.errors import DecodeError, LocalProtocolError, RemoteProtocolError
from lab.trace import NULL_TRACER, Tracer
from lab.wire.buffer import Buffer
from lab.wire.esp import (
    CBC_BLOCK_LEN,
    CBC_IV_LEN,
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
from lab.wire.ikev2 import (
    AUTH_HMAC_SHA1_96,
    AUTH_HMAC_SHA2_256_128,
    AUTH_HMAC_SHA2_384_192,
    AUTH_HMAC_SHA2_512_256,
    ENCR_AES_CBC,
    ENCR_AES_GCM_16,
    INTEG_NONE,
)

AES_KEY_LENS = (16, 24, 32)  # RFC 4106 §8.1 (128, 192, 256 bits; 192 is NOT RECOMMENDED, RFC 5282 §7.3)
DEFAULT_REPLAY_WINDOW_PACKETS = 64  # "a window size of 64 is preferred and SHOULD be employed as the default"
MIN_REPLAY_WINDOW_PACKETS = 32  # "A minimum window size of 32 packets MUST be supported" (RFC 4303 §3.4.3)
MAX_SEQ = 0xFFFF_FFFF  # 32-bit sequence numbers must not cycle (RFC 4303 §2.2)
# integrity transform ID -> (hash, key bytes, ICV bytes): RFC 4868 §2.1.1, §2.6; RFC 2404 for SHA-1
HMAC_INTEGRITY: dict[int, tuple[str, int, int]] = {
    AUTH_HMAC_SHA1_96: ("sha1", 20, 12),
    AUTH_HMAC_SHA2_256_128: ("sha256", 32, 16),
    AUTH_HMAC_SHA2_384_192: ("sha384", 48, 24),
    AUTH_HMAC_SHA2_512_256: ("sha512", 64, 32),
}

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


# --- AES-CBC and truncated HMAC (RFC 3602, RFC 4868) as ESP and IKEv2 use them ---------------------------


def hmac_icv(integ_id: int, key: bytes, data: bytes) -> bytes:
    """The truncated HMAC an integrity transform puts on the wire; raises ValueError for an unknown transform."""
    try:
        hash_name, _key_len, icv_len = HMAC_INTEGRITY[integ_id]
    except KeyError:
        raise ValueError(f"integrity transform {integ_id} is not supported") from None
    return hmac.new(key, data, hash_name).digest()[:icv_len]


def integ_icv_len(integ_id: int) -> int:
    """ICV bytes of an integrity transform (0 for none); raises ValueError for an unknown one."""
    if integ_id == INTEG_NONE:
        return 0
    try:
        return HMAC_INTEGRITY[integ_id][2]
    except KeyError:
        raise ValueError(f"integrity transform {integ_id} is not supported") from None


def aes_cbc_encrypt(key: bytes, iv: bytes, plaintext: bytes) -> bytes:
    """AES-CBC without padding of its own: raises ValueError unless ``plaintext`` fills whole blocks."""
    if len(iv) != CBC_IV_LEN or len(plaintext) % CBC_BLOCK_LEN:
        raise ValueError(f"AES-CBC needs a 16-byte IV and whole blocks, got {len(iv)} and {len(plaintext)} bytes")
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return encryptor.update(plaintext) + encryptor.finalize()


def aes_cbc_decrypt(key: bytes, iv: bytes, ciphertext: bytes) -> bytes:
    """The inverse of ``aes_cbc_encrypt``; raises ValueError for a partial block or a bad IV length."""
    if len(iv) != CBC_IV_LEN or len(ciphertext) % CBC_BLOCK_LEN:
        raise ValueError(f"AES-CBC needs a 16-byte IV and whole blocks, got {len(iv)} and {len(ciphertext)} bytes")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return decryptor.update(ciphertext) + decryptor.finalize()


def cbc_iv(key: bytes, counter: int) -> bytes:
    """``E_K(counter)``: an IV nobody without the key can predict (NIST SP 800-38A, appendix C)."""
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(counter.to_bytes(CBC_BLOCK_LEN, "big")) + encryptor.finalize()


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
    """One ESP SA: ``encrypt`` for the sending side, ``decrypt`` for the receiving side.

    ``keymat`` is the KEYMAT slice for this SA's cipher: AES-GCM key then
    salt, or the AES-CBC key (``encr_id=ENCR_AES_CBC``, with ``integ_id``
    and ``integ_key`` for the HMAC). A
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
        encr_id: int = ENCR_AES_GCM_16,
        integ_id: int = INTEG_NONE,
        integ_key: bytes = b"",
    ) -> None:
        if not 0 < spi <= 0xFFFF_FFFF:
            raise ValueError(f"SPI {spi} is not 1..2**32-1 (0 must not be sent, RFC 4303 §2.1)")
        if not 0 <= sent_seq <= MAX_SEQ:
            raise ValueError(f"sequence counter {sent_seq} does not fit 32 bits")
        self.spi = spi
        self.encr_id = encr_id
        self.integ_id = integ_id
        if encr_id == ENCR_AES_CBC:
            if len(keymat) not in AES_KEY_LENS:
                raise ValueError(f"AES-CBC key of {len(keymat)} bytes, expected 16, 24 or 32")
            if integ_id not in HMAC_INTEGRITY or len(integ_key) != HMAC_INTEGRITY[integ_id][1]:
                raise ValueError(f"AES-CBC needs an HMAC integrity transform and its key, got {integ_id}")
            self.icv_len = HMAC_INTEGRITY[integ_id][2]
            self._key, self._salt = keymat, b""
        else:
            if encr_id != ENCR_AES_GCM_16 or integ_id != INTEG_NONE:
                raise ValueError(f"ESP with ENCR {encr_id} and INTEG {integ_id} is not supported")
            if icv_len not in GCM_ICV_LENS:
                raise ValueError(f"ICV of {icv_len} bytes, expected 8, 12 or 16 (RFC 4106 §6)")
            self.icv_len = icv_len
            self._key, self._salt = split_keymat(keymat)
        self._integ_key = integ_key
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
        if self.encr_id == ENCR_AES_CBC:
            return self._encrypt_cbc(data, seq, next_header=next_header, iv=iv, padding=padding)
        if iv is None:
            iv = seq.to_bytes(GCM_IV_LEN, "big")
        if padding is None:
            padding = default_padding(minimum_pad_length(len(data)))
        plaintext = push_esp_plaintext(EspPlaintext(data, next_header, padding))
        aad = self.spi.to_bytes(4, "big") + seq.to_bytes(4, "big")
        sealed = aes_gcm_seal(self._key, self._salt, iv, plaintext, aad, icv_len=self.icv_len)
        self._sent_seq = seq
        return push_esp_packet(EspPacket(self.spi, seq, iv, sealed[: -self.icv_len], sealed[-self.icv_len :]))

    def _encrypt_cbc(
        self, data: bytes, seq: int, *, next_header: int, iv: bytes | None, padding: bytes | None
    ) -> bytes:
        if iv is None:
            iv = cbc_iv(self._key, seq)
        if padding is None:
            padding = default_padding(minimum_pad_length(len(data), iv_len=0, block=CBC_BLOCK_LEN))
        plaintext = push_esp_plaintext(EspPlaintext(data, next_header, padding))
        ciphertext = aes_cbc_encrypt(self._key, iv, plaintext)
        covered = self.spi.to_bytes(4, "big") + seq.to_bytes(4, "big") + iv + ciphertext
        icv = hmac_icv(self.integ_id, self._integ_key, covered)
        self._sent_seq = seq
        return covered + icv

    def decrypt(self, packet: bytes, *, now: float = 0.0) -> EspPlaintext:
        """Verify and decrypt one inbound packet; a dummy packet (Next Header 59) is returned, not dropped.

        Raises EspDropped (after recording ``segment_dropped``) for a
        malformed packet, another SA's SPI, a replay (duplicate or left of
        the window), a failed ICV, or padding other than 1, 2, 3, ...
        """
        cbc = self.encr_id == ENCR_AES_CBC
        try:
            esp = pull_esp_packet(Buffer(packet), iv_len=CBC_IV_LEN if cbc else GCM_IV_LEN, icv_len=self.icv_len)
            if cbc and len(esp.ciphertext) % CBC_BLOCK_LEN:
                raise DecodeError(
                    f"AES-CBC ciphertext of {len(esp.ciphertext)} bytes is not whole blocks",
                    field="ciphertext",
                    offset=8 + CBC_IV_LEN,
                )
        except DecodeError as exc:
            spi = int.from_bytes(packet[:4], "big") if len(packet) >= 4 else None
            raise self._drop(now, DROP_MALFORMED, spi, None, str(exc)) from None
        if esp.spi != self.spi:
            raise self._drop(now, DROP_WRONG_SPI, esp.spi, esp.seq, f"this SA is 0x{self.spi:08x}")
        window = self.replay_window
        if window is not None and (reason := window.check(esp.seq)) is not None:
            raise self._drop(now, reason, esp.spi, esp.seq, f"window right edge {window.highest}")
        if cbc:  # RFC 4303 §3.4.4: the ICV is verified before decryption
            expected = hmac_icv(self.integ_id, self._integ_key, packet[: len(packet) - self.icv_len])
            if not hmac.compare_digest(expected, esp.icv):
                raise self._drop(now, DROP_INTEGRITY, esp.spi, esp.seq)
            plaintext = aes_cbc_decrypt(self._key, esp.iv, esp.ciphertext)
        else:
            aad = packet[:8]
            try:
                plaintext = aes_gcm_open(
                    self._key, self._salt, esp.iv, esp.ciphertext + esp.icv, aad, icv_len=self.icv_len
                )
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
